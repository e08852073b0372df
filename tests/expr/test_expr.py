"""Tests of pipeline.expr: every value is checked against an independent reference.

Integer results are compared exactly with Python-int arithmetic on object arrays; float results
with plain numpy in float64.  (The references use ``eval`` on the tests' own, trusted strings.)
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.errors import ConfigError
from pipeline.expr import Expr, parse_expression

INT_TYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "int64", "bool"]


def extremes(dtype, n=12, seed=0, moderate_int64=True):
    """A 1-d array holding the extremes of ``dtype``, 0, +-1 and random values."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    if dtype.kind == "b":
        return np.array([False, True] * (n // 2), dtype)
    info = np.iinfo(dtype)
    lo, hi = int(info.min), int(info.max)
    if dtype == np.int64 and moderate_int64:
        lo, hi = -(2**40), 2**40
    special = [lo, hi, 0, 1, lo + 1, hi - 1] + ([-1] if lo < 0 else [])
    rest = rng.integers(lo, hi, size=n - len(special), endpoint=True, dtype=np.int64)
    return np.array(special + [int(v) for v in rest], dtype)


def _clip(x, lo, hi):
    return np.minimum(np.maximum(x, lo), hi)


def ref_exact(text, arrays):
    """Python-int evaluation of ``text`` on object arrays (exact, no overflow possible)."""
    ns = {k: np.array(v.tolist(), dtype=object) for k, v in arrays.items()}
    ns.update(
        abs=np.abs, minimum=np.minimum, maximum=np.maximum, where=_ref_where, clip=_clip
    )
    return np.asarray(eval(text, {"__builtins__": {}}, ns), dtype=object)


def _ref_where(c, x, y):
    c = np.asarray(c, dtype=object)
    return np.where(np.array([bool(v) for v in c.ravel()]).reshape(c.shape), x, y)


def ref_float(text, arrays):
    ns = {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}
    for name in [
        "abs", "sqrt", "exp", "log", "log1p", "sin", "cos", "tan", "arctan2", "minimum",
        "maximum", "where", "isnan", "floor", "ceil",
    ]:
        ns[name] = getattr(np, name)
    ns.update(clip=_clip, nan=np.nan, inf=np.inf, pi=np.pi, e=np.e)
    with np.errstate(all="ignore"):
        return np.asarray(eval(text, {"__builtins__": {}}, ns), dtype=np.float64)


def check_int_result(expr: Expr, result: np.ndarray, reference: np.ndarray) -> None:
    """Exact equality, dtype is exactly expr.dtype, bounds hold the values, dtype holds bounds."""
    assert result.dtype == expr.dtype
    assert result.shape == reference.shape
    assert [int(v) for v in result.ravel()] == [int(v) for v in reference.ravel()]
    lo, hi = expr.bounds
    assert lo <= hi
    if result.size:
        assert lo <= int(result.min()) and int(result.max()) <= hi
    if expr.dtype.kind == "b":
        assert expr.bounds == (0, 1)
    else:
        info = np.iinfo(expr.dtype)
        assert info.min <= lo and hi <= info.max


def evaluate_quietly(expr, arrays):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return expr.evaluate(arrays)


# ------------------------------------------------------------------------------------ seed case


def test_seed_case_uint8_squares():
    u8 = np.dtype(np.uint8)
    expr = parse_expression("a**2 - b**2", {"a": u8, "b": u8})
    assert expr.dtype == np.int32
    assert expr.bounds == (-65025, 65025)
    assert expr.names == ("a", "b")
    a = np.array([0, 255, 255, 0, 17], u8)
    b = np.array([255, 0, 255, 0, 3], u8)
    result = expr.evaluate({"a": a, "b": b})
    assert result.dtype == np.int32
    assert result.tolist() == [-65025, 65025, 0, 0, 289 - 9]
    # the inputs are untouched
    assert a.tolist() == [0, 255, 255, 0, 17] and b.tolist() == [255, 0, 255, 0, 3]


# ---------------------------------------------------------------------------- integer exactness

INT_EXPRESSIONS = [
    "a",
    "a + b",
    "a - b",
    "a * b",
    "-a",
    "+a",
    "-a - b",
    "a**0",
    "a**1",
    "a**2",
    "a**3",
    "-a**2",
    "(a - b)**2",
    "2*a + 3*b - 5",
    "a*b - b*a + 1",
    "abs(a)",
    "abs(a - b)",
    "minimum(a, b)",
    "maximum(a, -b)",
    "clip(a, 3, 100)",
    "clip(a, b, 200)",
    "clip(a - b, -7, 7)",
    "where(a > b, a, -b)",
    "where(a, b, 0)",
    "where(a == b, 1, a * 2)",
    "a // 7",
    "a % 7",
    "a // -3",
    "a % -3",
    "a // 1",
    "a % 1",
    "a // -1",
    "(a + b) % 1000",
    "(a < b) + (a == b)",
    "a < b",
    "a >= b",
    "a != -b",
    "(a < b) & (b <= 5) | (a == 0)",
    "~(a > b)",
    "True + a",
]


@pytest.mark.parametrize("text", INT_EXPRESSIONS)
@pytest.mark.parametrize("dtypes", [("uint8", "uint8"), ("int16", "uint16"), ("int8", "int32"),
                                    ("uint32", "int16"), ("int64", "uint8"), ("bool", "int16"),
                                    ("bool", "bool"), ("int32", "int32")])
def test_integer_expressions_are_exact(text, dtypes):
    da, db = map(np.dtype, dtypes)
    arrays = {"a": extremes(da, seed=1), "b": extremes(db, seed=2)[::-1].copy()}
    try:
        expr = parse_expression(text, {"a": da, "b": db, "c": np.dtype(np.float32)})
    except ConfigError as exc:
        # & / | / ~ are refused on non-bool operands
        assert da.kind != "b" or db.kind != "b"
        assert "'&'" in str(exc) or "'|'" in str(exc) or "'~'" in str(exc)
        return
    before = {k: v.copy() for k, v in arrays.items()}
    result = evaluate_quietly(expr, arrays)
    for k in arrays:
        np.testing.assert_array_equal(arrays[k], before[k])  # inputs never modified
    if "~" in text:
        reference = ~ref_float(text.replace("~", ""), arrays).astype(bool)
        reference = reference.astype(object)
    else:
        reference = ref_exact(text, arrays)
    if expr.dtype.kind == "f":
        assert expr.bounds is None
        # only when int64 bounds would be exceeded; values here stay below 2**64
        np.testing.assert_allclose(result, reference.astype(np.float64), rtol=1e-12)
    else:
        check_int_result(expr, result, reference)
        if text != "a" and expr.dtype.kind != "b":
            assert expr.dtype in (np.int16, np.int32, np.int64)


def test_int_dtype_is_the_smallest_holding_the_bounds():
    u8, i16, i32, i64 = (np.dtype(t) for t in ("uint8", "int16", "int32", "int64"))
    cases = {
        ("a + b", u8): (np.int16, (0, 510)),
        ("a * b", u8): (np.int32, (0, 65025)),
        ("a * b", i16): (np.int32, (-32768 * 32767, 32768**2)),
        ("a * b", i32): (np.int64, (-(2**31) * (2**31 - 1), 2**62)),
        ("-a", i16): (np.int32, (-32767, 32768)),
        ("abs(a)", i16): (np.int32, (0, 32768)),
        ("a // -1", i16): (np.int32, (-32767, 32768)),
        ("a % 7", i64): (np.int16, (0, 6)),
        ("a % -7", i64): (np.int16, (-6, 0)),
        ("(a % 7) // 2", u8): (np.int16, (0, 3)),
        ("a**2", i16): (np.int32, (0, 2**30)),
        ("a**3", u8): (np.int32, (0, 255**3)),
        ("a**0", i64): (np.int16, (1, 1)),
        ("a * 0", i64): (np.int16, (0, 0)),
        ("a - 2**62", u8): (np.int64, (-(2**62), 255 - 2**62)),
        ("minimum(a, 3)", i64): (np.int64, (-(2**63), 3)),
        ("clip(a, -5, 5)", i64): (np.int16, (-5, 5)),
        ("where(a > 0, 1, 2)", i64): (np.int16, (1, 2)),
        ("a", u8): (np.uint8, (0, 255)),
        ("a", i64): (np.int64, (-(2**63), 2**63 - 1)),
        ("a > b", i64): (np.bool_, (0, 1)),
    }
    for (text, dt), (want_dtype, want_bounds) in cases.items():
        expr = parse_expression(text, {"a": dt, "b": dt})
        assert (expr.dtype, expr.bounds) == (np.dtype(want_dtype), want_bounds), text


def test_int64_operations_that_could_overflow_become_float64():
    i64, u64 = np.dtype(np.int64), np.dtype(np.uint64)
    for text, dts in [("a + b", (i64, i64)), ("a * 2", (i64, i64)), ("-a", (i64, i64)),
                      ("a + 1", (u64, u64)), ("a**2", (np.dtype(np.uint32), i64))]:
        expr = parse_expression(text, {"a": dts[0], "b": dts[1]})
        assert expr.dtype == np.float64 and expr.bounds is None, text
    expr = parse_expression("a + b", {"a": i64, "b": i64})
    big = np.array([2**63 - 1, -(2**63)], i64)
    result = expr.evaluate({"a": big, "b": big})
    np.testing.assert_allclose(result, [2.0**64, -(2.0**64)])  # no wrap-around


def test_int64_extremes_exact_where_result_fits():
    i64 = np.dtype(np.int64)
    a = extremes(i64, moderate_int64=False, seed=5)
    b = extremes(i64, moderate_int64=False, seed=6)
    for text in ["a", "minimum(a, b)", "maximum(a, b)", "clip(a, b, 5)", "a < b", "a == b",
                 "where(a < b, a, b)", "a % 1000", "a // 1000", "a // 2**40", "a * 0 + 3",
                 "abs(a % -9)"]:
        expr = parse_expression(text, {"a": i64, "b": i64})
        assert expr.dtype.kind in "ib", text
        check_int_result(expr, evaluate_quietly(expr, {"a": a, "b": b}), ref_exact(text, {"a": a, "b": b}))


def test_uint64_comparisons_and_bare_name():
    u64 = np.dtype(np.uint64)
    a = np.array([0, 2**64 - 1, 2**63, 5], u64)
    b = np.array([2**64 - 1, 2**64 - 2, 2**63, 4], u64)
    expr = parse_expression("a < b", {"a": u64, "b": u64})
    assert evaluate_quietly(expr, {"a": a, "b": b}).tolist() == [True, False, False, False]
    expr = parse_expression("a", {"a": u64})
    assert expr.dtype == u64 and expr.bounds == (0, 2**64 - 1)
    assert expr.evaluate({"a": a}) is a or np.array_equal(expr.evaluate({"a": a}), a)
    expr = parse_expression("maximum(a, 1)", {"a": u64})
    assert expr.dtype == np.float64  # beyond int64: float64, never wrapped
    np.testing.assert_allclose(expr.evaluate({"a": a}), np.maximum(a.astype(float), 1))


def test_mixed_signed_unsigned_comparison_is_exact():
    i64, u32, i8 = np.dtype(np.int64), np.dtype(np.uint32), np.dtype(np.int8)
    a = np.array([-(2**63), -1, 0, 2**32 - 1, 2**63 - 1], i64)
    b = np.array([2**32 - 1, 2**32 - 1, 0, 2**32 - 1, 0], u32)
    for text in ["a < b", "a <= b", "a == b", "a != b", "a > b", "a >= b", "b > -1", "a < 2**62"]:
        expr = parse_expression(text, {"a": i64, "b": u32})
        check_int_result(expr, evaluate_quietly(expr, {"a": a, "b": b}), ref_exact(text, {"a": a, "b": b}))
    c = np.array([-128, 127, 0, -1, 5], i8)
    expr = parse_expression("c < 200", {"c": i8})
    assert expr.evaluate({"c": c}).tolist() == [True] * 5


# ---------------------------------------------------------------------------- float functions

FLOAT_CASES = [
    "abs(x)", "sqrt(x)", "exp(x)", "log(x)", "log1p(x)", "sin(x)", "cos(x)", "tan(x)",
    "arctan2(x, y)", "minimum(x, y)", "maximum(x, y)", "where(x > y, x, y)", "clip(x, -1, 2)",
    "floor(x)", "ceil(x)", "x / y", "x // y", "x % y", "x**2", "x**3", "x**0.5", "x**-2",
    "x**0", "x**7", "-x", "+x", "x * 2.5 - y", "x + pi + e", "where(isnan(x), 0, x)",
    "where(x, 1.0, 2)", "x ** -1.5", "clip(x, y, 1)", "arctan2(y, 3)",
]


@pytest.mark.parametrize("text", FLOAT_CASES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_float_functions_match_numpy(text, dtype):
    x = np.array([-2.5, -1.0, -0.0, 0.0, 0.3, 1.0, 2.0, 7.5, 100.0, np.nan, np.inf, -np.inf], dtype)
    y = np.array([1.0, -3.0, 2.0, 0.0, 0.3, -1.0, 0.5, 2.0, -100.0, 1.0, 2.0, np.nan], dtype)
    expr = parse_expression(text, {"x": np.dtype(dtype), "y": np.dtype(dtype)})
    assert expr.dtype == np.float64 and expr.bounds is None
    result = evaluate_quietly(expr, {"x": x, "y": y})  # no RuntimeWarning escapes
    assert result.dtype == np.float64
    np.testing.assert_allclose(result, ref_float(text, {"x": x, "y": y}), rtol=1e-15, equal_nan=True)


@pytest.mark.parametrize(
    "text", ["sqrt(a)", "log(a)", "exp(a / 100)", "floor(a)", "ceil(a / 3)", "a / b",
             "arctan2(a, b)", "a**-1", "a**0.5", "a // b", "a % b", "a // 0", "a % 0",
             "a + 0.5", "minimum(a, 2.5)", "where(a > 0, a, 0.5)", "sin(a) * cos(b) - tan(a)",
             "log1p(a)"]
)
def test_integer_inputs_to_float_operations(text):
    i16 = np.dtype(np.int16)
    a, b = extremes(i16, seed=3), extremes(i16, seed=4)
    expr = parse_expression(text, {"a": i16, "b": i16})
    assert expr.dtype == np.float64 and expr.bounds is None
    result = evaluate_quietly(expr, {"a": a, "b": b})
    np.testing.assert_allclose(result, ref_float(text, {"a": a, "b": b}), rtol=1e-14, equal_nan=True)


def test_isnan():
    f32, u8 = np.dtype(np.float32), np.dtype(np.uint8)
    x = np.array([[1.0, np.nan], [np.inf, 0.0]], f32)
    expr = parse_expression("isnan(x)", {"x": f32})
    assert expr.dtype == np.bool_ and expr.bounds == (0, 1)
    assert expr.evaluate({"x": x}).tolist() == [[False, True], [False, False]]
    expr = parse_expression("isnan(a + b)", {"a": u8, "b": u8})
    a, b = np.zeros((2, 1), u8), np.zeros((1, 3), u8)
    result = expr.evaluate({"a": a, "b": b})
    assert result.dtype == np.bool_ and result.shape == (2, 3) and not result.any()
    expr = parse_expression("isnan(sqrt(a - 1))", {"a": u8})
    assert expr.evaluate({"a": np.array([0, 1, 2], u8)}).tolist() == [True, False, False]


def test_where_on_float_condition_with_integer_branches_is_integer():
    f32 = np.dtype(np.float32)
    x = np.array([0.0, -0.0, np.nan, 2.5, -1.0], f32)
    expr = parse_expression("where(x, 1, 2)", {"x": f32})
    assert expr.dtype == np.int16 and expr.bounds == (1, 2)
    assert expr.evaluate({"x": x}).tolist() == [2, 2, 1, 1, 1]  # nan is true, like Python


def test_float32_inputs_are_computed_in_float64():
    f32 = np.dtype(np.float32)
    x = np.array([1e-8, 3.0, 16777217.0, -5.5], f32)
    y = np.array([1.0, 1e-8, 1.0, 2.0], f32)
    expr = parse_expression("x * y + 1", {"x": f32, "y": f32})
    assert expr.dtype == np.float64
    want = x.astype(np.float64) * y.astype(np.float64) + 1
    np.testing.assert_array_equal(expr.evaluate({"x": x, "y": y}), want)
    expr = parse_expression("x", {"x": f32})  # bare name keeps its dtype
    assert expr.dtype == f32 and expr.bounds is None
    assert expr.evaluate({"x": x}).dtype == f32


def test_comparisons_and_logic():
    u8, f32, b_ = np.dtype(np.uint8), np.dtype(np.float32), np.dtype(bool)
    a = np.array([0, 5, 10, 255, 7], u8)
    x = np.array([0.0, np.nan, 10.0, -1.0, 7.5], f32)
    m = np.array([True, False, True, False, True])
    arrays = {"a": a, "x": x, "m": m}
    inputs = {"a": u8, "x": f32, "m": b_}
    cases = {
        "a < x": a < x.astype(np.float64),
        "a <= x": a <= x.astype(np.float64),
        "a == x": a == x,
        "a != x": a != x,
        "(a > 4) & (x < 9)": (a > 4) & (x < 9),
        "(a > 4) | m": (a > 4) | m,
        "~m": ~m,
        "~(a >= 10) & m": ~(a >= 10) & m,
        "m & m | ~m": m & m | ~m,
        "0 < a < 255": (0 < a) & (a < 255),
        "0 <= a <= x < 20": (0 <= a) & (a <= x) & (x < 20),
        "(a > 4) == m": (a > 4) == m,
        "isnan(x) | m": np.isnan(x) | m,
        "m": m,
        "where(m, a, x)": None,
        "m * 3 - 1": None,
    }
    for text, want in cases.items():
        expr = parse_expression(text, inputs)
        result = evaluate_quietly(expr, arrays)
        if want is None:
            continue
        assert expr.dtype == np.bool_ and expr.bounds == (0, 1), text
        assert result.dtype == np.bool_
        assert result.tolist() == want.tolist(), text
    expr = parse_expression("m * 3 - 1", inputs)
    check_int_result(expr, expr.evaluate(arrays), ref_exact("m * 3 - 1", arrays))
    expr = parse_expression("where(m, a, x)", inputs)
    np.testing.assert_array_equal(expr.evaluate(arrays), np.where(m, a, x.astype(np.float64)))
    for text, token in [("a & m", "&"), ("a | 1", "|"), ("~a", "~"), ("a > 1 & m", "&")]:
        with pytest.raises(ConfigError, match=f"'\\{token}'"):
            parse_expression(text, inputs)


def test_bool_minimum_maximum_where_clip_stay_bool():
    b_ = np.dtype(bool)
    m = np.array([True, False, True, False])
    n = np.array([True, True, False, False])
    for text, want in [("minimum(m, n)", m & n), ("maximum(m, n)", m | n),
                       ("where(m, n, False)", m & n), ("clip(m, n, True)", m | n)]:
        expr = parse_expression(text, {"m": b_, "n": b_})
        assert expr.dtype == np.bool_ and expr.bounds == (0, 1)
        assert expr.evaluate({"m": m, "n": n}).tolist() == want.tolist()


def test_three_or_more_inputs_and_broadcasting():
    u8, i16, f32, u16 = (np.dtype(t) for t in ("uint8", "int16", "float32", "uint16"))
    rng = np.random.default_rng(7)
    a = np.array([[0], [255], [3]], u8)  # (3, 1)
    b = np.array([[-32768, 32767, 0, -1]], i16)  # (1, 4)
    c = rng.integers(0, 65535, size=(3, 4), endpoint=True).astype(u16)
    x = rng.normal(size=(3, 4)).astype(f32)
    arrays = {"a": a, "b": b, "c": c, "x": x}
    inputs = {"a": u8, "b": i16, "c": u16, "x": f32, "unused": np.dtype(np.int8)}
    for text in ["a * b - c", "(a + 1) * b + c**2", "clip(b, a, c)", "maximum(a * b, c) - a",
                 "where(a > b, c, a + b * c)", "a * b * c", "(a - b) // 3 + c % 10"]:
        expr = parse_expression(text, inputs)
        result = evaluate_quietly(expr, arrays)
        assert result.shape == (3, 4)
        check_int_result(expr, result, ref_exact(text, arrays))
    expr = parse_expression("where(a > b, x, a + b * c) / 2", inputs)
    assert expr.names == ("a", "b", "c", "x")
    result = evaluate_quietly(expr, arrays)
    np.testing.assert_allclose(result, ref_float("where(a > b, x, a + b * c) / 2", arrays), rtol=1e-15)


def test_zero_dimensional_inputs_give_arrays_of_the_dtype():
    u8 = np.dtype(np.uint8)
    expr = parse_expression("a**2 - b", {"a": u8, "b": u8})
    result = expr.evaluate({"a": np.array(255, u8), "b": np.array(0, u8)})
    assert isinstance(result, np.ndarray) and result.dtype == expr.dtype and result.shape == ()
    assert int(result) == 65025


def test_constants_and_literals():
    u8 = np.dtype(np.uint8)
    a = np.array([0, 1, 255], u8)
    expr = parse_expression("a * 2**3 + 1_000 - 0x10", {"a": u8})
    check_int_result(expr, expr.evaluate({"a": a}), ref_exact("a * 2**3 + 1_000 - 0x10", {"a": a}))
    expr = parse_expression("where(a > 0, a, nan) + inf * 0", {"a": u8})
    assert np.isnan(expr.evaluate({"a": a})).all()
    # an input shadows a constant of the same name
    expr = parse_expression("e + 1", {"e": u8})
    assert expr.names == ("e",) and expr.evaluate({"e": a}).tolist() == [1, 2, 256]
    expr = parse_expression("a - 2**62 + 2**62", {"a": u8})
    check_int_result(expr, expr.evaluate({"a": a}), np.array([0, 1, 255], object))
    assert expr.dtype == np.int16  # computed in int64, returned in the dtype of its bounds


def test_powers():
    i16 = np.dtype(np.int16)
    a = extremes(i16, seed=9) // 64
    for n in range(0, 9):
        text = f"a**{n}"
        expr = parse_expression(text, {"a": i16})
        result = evaluate_quietly(expr, {"a": a})
        reference = ref_exact(text, {"a": a})
        if expr.dtype.kind == "f":
            np.testing.assert_allclose(result, reference.astype(float), rtol=1e-14)
        else:
            check_int_result(expr, result, reference)
    expr = parse_expression("a**-1", {"a": i16})
    assert expr.dtype == np.float64
    assert parse_expression("(-a)**+2", {"a": i16}).bounds == (0, 2**30)
    assert parse_expression("a**2", {"a": i16}).bounds == (0, 2**30)
    assert parse_expression("(a - 40000)**2", {"a": i16}).bounds == ((32767 - 40000) ** 2, 72768**2)


def test_dtype_arguments_may_be_strings_or_types_and_names_sorted_unique():
    expr = parse_expression("b * a + a - b", {"b": "uint8", "a": np.int16})
    assert expr.names == ("a", "b")
    assert expr.text == "b * a + a - b"


def test_input_of_wider_dtype_than_declared_is_refused():
    expr = parse_expression("a + 1", {"a": np.dtype(np.uint8)})
    with pytest.raises(TypeError):
        expr.evaluate({"a": np.array([300], np.int32)})
    # a dtype that casts safely is accepted
    assert expr.evaluate({"a": np.array([True])}).tolist() == [2]


# --------------------------------------------------------------------------- property testing

PROP_TYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "int64", "bool"]


class _Ref:
    """An expression text with a Python-int reference evaluator."""

    def __init__(self, text, fn, is_bool=False):
        self.text, self.fn, self.is_bool = text, fn, is_bool


def _leaf(draw):
    choice = draw(st.integers(0, 4))
    if choice == 0:
        v = draw(st.integers(-300, 300))
        return _Ref(f"({v})", lambda env, v=v: v)
    name = "a" if choice in (1, 2) else "b"
    return _Ref(name, lambda env, n=name: env[n])


@st.composite
def int_trees(draw, depth=3):
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        return _leaf(draw)
    kind = draw(st.sampled_from(["bin", "bin", "neg", "abs", "pow", "minmax", "clip", "where",
                                 "floordiv", "mod", "cmp"]))
    sub = lambda: draw(int_trees(depth=depth - 1))  # noqa: E731
    if kind == "bin":
        x, y = sub(), sub()
        op = draw(st.sampled_from(["+", "-", "*"]))
        f = {"+": lambda p, q: p + q, "-": lambda p, q: p - q, "*": lambda p, q: p * q}[op]
        return _Ref(f"({x.text} {op} {y.text})", lambda env: f(x.fn(env), y.fn(env)))
    if kind == "neg":
        x = sub()
        return _Ref(f"(-{x.text})", lambda env: -x.fn(env))
    if kind == "abs":
        x = sub()
        return _Ref(f"abs({x.text})", lambda env: abs(x.fn(env)))
    if kind == "pow":
        x, n = sub(), draw(st.integers(0, 3))
        return _Ref(f"({x.text})**{n}", lambda env: x.fn(env) ** n)
    if kind == "minmax":
        x, y = sub(), sub()
        name = draw(st.sampled_from(["minimum", "maximum"]))
        f = min if name == "minimum" else max
        return _Ref(f"{name}({x.text}, {y.text})", lambda env: f(x.fn(env), y.fn(env)))
    if kind == "clip":
        x, lo, hi = sub(), sub(), sub()
        return _Ref(f"clip({x.text}, {lo.text}, {hi.text})",
                    lambda env: min(max(x.fn(env), lo.fn(env)), hi.fn(env)))
    if kind == "where":
        c, x, y = sub(), sub(), sub()
        return _Ref(f"where({c.text}, {x.text}, {y.text})",
                    lambda env: x.fn(env) if c.fn(env) else y.fn(env))
    if kind in ("floordiv", "mod"):
        x = sub()
        d = draw(st.integers(-20, 20).filter(lambda v: v != 0))
        if kind == "floordiv":
            return _Ref(f"({x.text} // ({d}))", lambda env: x.fn(env) // d)
        return _Ref(f"({x.text} % ({d}))", lambda env: x.fn(env) % d)
    x, y = sub(), sub()
    op = draw(st.sampled_from(["<", "<=", ">", ">=", "==", "!="]))
    f = {"<": lambda p, q: p < q, "<=": lambda p, q: p <= q, ">": lambda p, q: p > q,
         ">=": lambda p, q: p >= q, "==": lambda p, q: p == q, "!=": lambda p, q: p != q}[op]
    return _Ref(f"({x.text} {op} {y.text})", lambda env: f(x.fn(env), y.fn(env)), is_bool=True)


@st.composite
def int_arrays(draw, dtype, size):
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return np.array(draw(st.lists(st.booleans(), min_size=size, max_size=size)), dtype)
    info = np.iinfo(dtype)
    lo, hi = int(info.min), int(info.max)
    value = st.one_of(st.sampled_from([lo, hi, 0, 1, -1 if lo < 0 else 2, lo + 1, hi - 1]),
                      st.integers(lo, hi))
    return np.array(draw(st.lists(value, min_size=size, max_size=size)), dtype)


@st.composite
def cases(draw):
    da, db = draw(st.sampled_from(PROP_TYPES)), draw(st.sampled_from(PROP_TYPES))
    size = draw(st.integers(1, 6))
    return draw(int_trees()), np.dtype(da), np.dtype(db), draw(int_arrays(da, size)), draw(int_arrays(db, size))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_property_random_integer_expressions(case):
    tree, da, db, a, b = case
    try:
        expr = parse_expression(tree.text, {"a": da, "b": db})
    except ConfigError as exc:  # only a tree of literals is refused
        assert "uses no input" in str(exc)
        return
    result = evaluate_quietly(expr, {"a": a, "b": b})
    envs = [{"a": int(x), "b": int(y)} for x, y in zip(a.tolist(), b.tolist())]
    reference = [tree.fn(env) for env in envs]
    assert result.dtype == expr.dtype
    assert result.shape == a.shape
    inputs = {"a": da, "b": db}
    values = [float(v) if expr.dtype.kind == "f" else int(v) for v in result]
    if not _has_float_subexpression(tree.text, inputs):
        assert values == [int(v) for v in reference], tree.text  # exact, whatever the magnitudes
    elif _max_intermediate(tree.text, envs) < 2**52:
        # float64 is used where int64 bounds could be exceeded; it is exact on small values
        assert values == [float(v) for v in reference], tree.text
    if expr.dtype.kind == "f":
        assert expr.bounds is None
        return
    lo, hi = expr.bounds
    assert all(lo <= int(v) <= hi for v in result)
    if expr.dtype.kind == "b":
        assert expr.bounds == (0, 1)
    else:
        info = np.iinfo(expr.dtype)
        assert info.min <= lo <= hi <= info.max


def _has_float_subexpression(text, inputs):
    """Whether any subexpression of ``text`` is typed float64 (i.e. may be inexact)."""
    import ast

    for node in ast.walk(ast.parse(text, mode="eval").body):
        if not isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Call, ast.Compare)):
            continue
        try:
            sub = parse_expression(ast.get_source_segment(text, node), inputs)
        except ConfigError:  # literals only
            continue
        if sub.dtype.kind == "f":
            return True
    return False


def _max_intermediate(text, envs):
    """Largest magnitude of any subexpression value (via Python ints), to know float exactness."""
    import ast

    tree = ast.parse(text, mode="eval")
    biggest = 0
    for node in ast.walk(tree.body):
        if isinstance(node, (ast.operator, ast.cmpop, ast.expr_context, ast.unaryop)):
            continue
        sub = ast.Expression(node)
        code = compile(ast.fix_missing_locations(sub), "<ref>", "eval")
        for env in envs:
            ns = dict(env, abs=abs, minimum=min, maximum=max,
                      clip=lambda x, lo, hi: min(max(x, lo), hi),
                      where=lambda c, x, y: x if c else y)
            value = eval(code, {"__builtins__": {}}, ns)
            if not callable(value):
                biggest = max(biggest, abs(int(value)))
    return biggest
