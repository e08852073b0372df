"""Float window sums, means, variances that depend only on the pixels inside each window
(issue 21 item 2) and overflow to ±inf rather than to the "no valid pixel" NaN (issue 22 item 20).

References: ``reference.brute_window`` (``math.fsum`` per window; var from the fsum mean);
the tolerance is a few roundings of the window's *own* magnitude (its sum of ``|v|``, its mean
of ``v**2``), so that a value that has left the window cannot hide behind it.  Every test runs on
the compiled kernels and on the numpy reference path (``tests/kernel_paths.py``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from kernel_paths import each_kernel_path  # noqa: F401 - the fixture
from reference import brute_window

import pipeline

EPS = float(np.finfo(np.float64).eps)


@pytest.fixture
def kernel_path(each_kernel_path):  # noqa: F811 - the imported fixture, requested
    """The compiled kernels, then the numpy path (tests/kernel_paths.py)."""
    return each_kernel_path


def _floats(ref) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in ref.ravel()]).reshape(ref.shape)


def _own_scale(field, size, boundary, missing, reduce):
    """Per window: its sum of |v| (sum), mean of |v| (mean), mean of v**2 (var), sqrt of that
    (std), through the brute force over the same windows."""
    f = np.asarray(field, np.float64)
    if reduce in ("sum", "mean"):
        return _floats(brute_window(np.abs(f), size, reduce, boundary=boundary, missing=missing))
    ms = _floats(brute_window(f * f, size, "mean", boundary=boundary, missing=missing))
    return ms if reduce == "var" else np.sqrt(ms)


def _check(field, size, reduce, boundary, missing=None, roundings=None):
    got = pipeline.window_reduce("a", {"a": field}, size=size, reduce=reduce, boundary=boundary)
    ref = _floats(brute_window(np.asarray(field), size, reduce, boundary=boundary, missing=missing))
    scale = _own_scale(field, size, boundary, missing, reduce)
    k = roundings or 4 * sum(np.atleast_1d(size))
    err = np.abs(got - ref)
    tol = k * EPS * scale
    bad = ~(err <= tol) & ~(np.isnan(got) & np.isnan(ref))
    assert not bad.any(), (reduce, boundary, np.argwhere(bad)[:5], got[bad][:5], ref[bad][:5])


@pytest.mark.parametrize("mode", ["nearest", "shrink", "wrap"])
def test_the_sum_of_1_and_1_after_1e16_has_left_is_2(kernel_path, mode):
    x = np.array([1e16, 1, -1e16, 1, 1, 1, 1, 1])
    got = pipeline.window_reduce("a", {"a": x}, size=[2], reduce="sum", boundary=mode)
    ref = _floats(brute_window(x, [2], "sum", boundary=mode))  # fsum: 2.0 where the window holds 1 + 1
    assert got[4:].tolist() == ref[4:].tolist() == [2.0] * 4
    _check(x, [2], "sum", mode)


@pytest.mark.parametrize("reduce", ["sum", "mean", "var", "std"])
@pytest.mark.parametrize("boundary", ["shrink", "reflect", "constant"])
@pytest.mark.parametrize("nodata", [False, True])
def test_one_huge_pixel_spoils_only_the_windows_that_hold_it(kernel_path, reduce, boundary, nodata):
    rng = np.random.default_rng(7)
    img = (500 + rng.standard_normal((41, 37))).astype(np.float32)
    img[20, 18] = -3.4e38  # an undeclared float32 nodata
    missing = None
    if nodata:
        missing = rng.random(img.shape) < 0.05
        img[missing] = np.nan
    _check(img, [5, 5], reduce, boundary, missing)


@pytest.mark.parametrize("reduce", ["sum", "mean", "var", "std"])
@pytest.mark.parametrize("boundary", ["shrink", "nearest", "wrap"])
@pytest.mark.parametrize("size", [[3, 4], [1, 7], [6, 1], [2, 11]])
def test_adversarial_magnitudes_beside_ordinary_values(kernel_path, reduce, boundary, size):
    # rows of 61: windows up to 8 wide are summed directly along them, wider ones in blocks
    # (four at a time where the row holds four, one by one after)
    rng = np.random.default_rng(abs(hash((reduce, boundary, tuple(size)))) % 2**32)
    x = rng.standard_normal((23, 61)) * 3 + 10
    spots = rng.integers(0, x.size, 24)
    huge = 1e300 if reduce in ("sum", "mean") else 1e150  # (squares within float64)
    x.flat[spots] = rng.choice([1e16, -1e16, 3.4e38, -3.4e38, huge, 7.0e15], spots.size)
    _check(x, size, reduce, boundary)


def test_a_footprint_window_forgets_too(kernel_path):
    x = np.full((15, 16), 3.0)
    x[7, 2] = 1e300
    fp = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)
    got = pipeline.window_reduce("a", {"a": x}, footprint=fp, reduce="sum")
    ref = _floats(brute_window(x, 3, "sum", footprint=fp))
    near = np.zeros(x.shape, bool)
    near[6:9, 1:4] = True
    assert np.array_equal(got[~near], ref[~near])  # sums of 3s are exact
    assert np.allclose(got[near], ref[near], rtol=1e-15)


@pytest.mark.parametrize("boundary", ["shrink", "reflect"])
def test_window_sums_that_overflow_are_inf_with_their_sign(kernel_path, boundary):
    x = np.full((9, 10), 2.0)
    x[2, 2:5] = 1.5e308
    x[6, 5:8] = -1.5e308
    got = pipeline.window_reduce("a", {"a": x}, size=3, reduce=["sum", "mean", "var", "std"], boundary=boundary)
    vals = {}
    for i, j in np.ndindex(x.shape):
        rows = [min(max(r, 0), 8) if boundary == "reflect" else r for r in range(i - 1, i + 2)]
        cols = [min(max(c, 0), 9) if boundary == "reflect" else c for c in range(j - 1, j + 2)]
        vals[i, j] = [x[r, c] for r in rows for c in cols if 0 <= r < 9 and 0 <= c < 10]
    for (i, j), v in vals.items():
        scaled = [u * 2.0**-600 for u in v]  # exact: powers of two
        s = math.fsum(scaled)
        want_sum = s * 2.0**600 if abs(s) < 2.0**424 else math.copysign(math.inf, s)
        assert got["sum"][i, j] == pytest.approx(want_sum, rel=1e-14), (i, j)
        assert got["mean"][i, j] == pytest.approx(s / len(v) * 2.0**600, rel=1e-14), (i, j)
        m = s / len(v)
        var_s = math.fsum((u - m) ** 2 for u in scaled) / len(v)
        want_var = var_s * 2.0**600 * 2.0**600 if var_s < 2.0**-176 else math.inf
        assert got["var"][i, j] == pytest.approx(want_var, rel=1e-9, abs=1e-12), (i, j)
        assert got["std"][i, j] == pytest.approx(math.sqrt(var_s) * 2.0**600, rel=1e-9, abs=1e-6), (i, j)
