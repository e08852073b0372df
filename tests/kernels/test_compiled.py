"""The compiled evaluation of integer expressions against Python integers evaluated pixel by pixel
(exact, never wrapping) and against numpy's (``Expr.evaluate``): same values, same dtype, on
extreme inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.expr import parse_expression
from pipeline.kernels import compiled, fastsum

pytestmark = pytest.mark.skipif(not fastsum.AVAILABLE, reason="numba not installed: numpy evaluates")

DTYPES = {"a": np.dtype("uint8"), "b": np.dtype("int16"), "m": np.dtype("bool"), "c": np.dtype("int32")}

EXPRESSIONS = [
    "a**2 - b**2",
    "a",
    "a**0 + b**1 + a**3",
    "-a + +b",
    "abs(b) - abs(a - 300)",
    "minimum(a, b) * maximum(a, -b)",
    "clip(b, -5, a)",
    "where(a > b, a - b, b // 7)",
    "b // 7 + b % -7 + b // -3 + b % 5",
    "(a < b) & (b <= 3) | ~m",
    "0 < a <= b < 200",
    "a + m * 2 - (b == a)",
    "where(m, a, b) + minimum(m, a > 3)",
    "c * c - b**4",
    "a**7",  # 255**7 still fits int64
    "isnan(a)",
]


def _extremes(dtype, n, rng):
    if dtype == np.bool_:
        return rng.integers(0, 2, n).astype(bool)
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max, n, dtype=dtype, endpoint=True)
    x[:4] = [info.min, info.max, 0, info.min + 1 if info.min else 1]
    return x


class _Bool(int):
    """A bool input's pixel as a Python int 0/1 whose ``~`` is logical not (as numpy's on bools)."""

    def __invert__(self):
        return _Bool(not self)


_PYTHON = {
    "abs": abs, "minimum": min, "maximum": max, "clip": lambda x, lo, hi: min(max(x, lo), hi),
    "where": lambda c, x, y: x if c else y, "isnan": lambda x: False,
}


def python_ints(text, arrays):
    """``text`` evaluated pixel by pixel on Python ints (bools as 0/1): exact, Python's floor
    ``//`` and ``%``."""
    code = compile(text, "<expression>", "eval")
    names = sorted(arrays)
    columns = [[_Bool(v) if arrays[n].dtype == bool else int(v) for v in arrays[n].ravel()] for n in names]
    return [int(eval(code, {"__builtins__": {}}, {**_PYTHON, **dict(zip(names, px))})) for px in zip(*columns)]  # noqa: S307


@pytest.mark.parametrize("text", EXPRESSIONS)
def test_compiled_matches_python_ints_and_numpy(text):
    expr = parse_expression(text, DTYPES)
    fn = compiled.pointwise(expr)
    assert fn is not None, text
    rng = np.random.default_rng(len(text))
    arrays = {n: _extremes(DTYPES[n], 997, rng).reshape(997, 1) for n in expr.names}
    got, want = fn(arrays), expr.evaluate(arrays)
    assert [int(v) for v in got.ravel()] == python_ints(text, arrays)
    assert got.dtype == want.dtype == expr.dtype
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "text,dtypes",
    [
        ("a / 2", {"a": "uint8"}),  # float result
        ("sqrt(a) > 2", {"a": "uint8"}),  # float inside
        ("a + 1", {"a": "uint64"}),  # beyond int64: numpy computes in float64
        ("a", {"a": "uint64"}),
        ("a**10", {"a": "uint8"}),  # 255**10 is beyond int64
        ("a * 2.5 > 1", {"a": "int16"}),
        ("x < y", {"x": "uint64", "y": "int8"}),  # compared in float64
    ],
)
def test_compiled_declines_what_numpy_must_do(text, dtypes):
    assert compiled.pointwise(parse_expression(text, {k: np.dtype(v) for k, v in dtypes.items()})) is None


def test_generated_source_holds_no_user_text():
    expr = parse_expression("import_ + os * 2", {"import_": np.dtype("uint8"), "os": np.dtype("uint8")})
    text = compiled.source(expr)
    assert "import_" not in text and "os *" not in text and "x0" in text and "x1" in text


def test_compiled_without_a_writable_cache(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("PIPELINE_CACHE_DIR", str(blocked))
    monkeypatch.setattr(compiled, "_loaded", {})
    expr = parse_expression("a * 3 - b", DTYPES)
    arrays = {"a": np.arange(256, dtype=np.uint8), "b": np.arange(-128, 128, dtype=np.int16)}
    np.testing.assert_array_equal(compiled.pointwise(expr)(arrays), expr.evaluate(arrays))


def test_compiled_cache_file_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(compiled, "_loaded", {})
    expr = parse_expression("a * 5 - b * b", DTYPES)
    arrays = {"a": np.arange(256, dtype=np.uint8), "b": np.arange(-128, 128, dtype=np.int16)}
    np.testing.assert_array_equal(compiled.pointwise(expr)(arrays), expr.evaluate(arrays))
    files = list((tmp_path / "kernels").glob("expr_*.py"))
    assert len(files) == 1 and files[0].read_text() == compiled.source(expr)


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(["+", "-", "*"]),
    st.sampled_from(["+", "-", "*"]),
    st.integers(-1000, 1000),
    st.integers(1, 40).map(lambda d: d if d % 2 else -d),
    st.integers(0, 4),
)
def test_compiled_random_integer_expressions(op1, op2, k, d, p):
    text = f"(a {op1} b) {op2} (c // {d}) + {k} * (b % {d}) + a**{p}"
    expr = parse_expression(text, DTYPES)
    fn = compiled.pointwise(expr)
    assert fn is not None
    rng = np.random.default_rng(abs(k) + p)
    arrays = {n: _extremes(DTYPES[n], 301, rng) for n in expr.names}
    got, want = fn(arrays), expr.evaluate(arrays)
    assert [int(v) for v in got] == python_ints(text, arrays)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
