"""Integer variances carry one rounding (issue 21 item 4): the exact ``n*S2 - S1**2`` over the
exact ``n**2``, compared with ``fractions.Fraction`` per window on both kernel paths; standard
deviations are the square root of that variance (within one ulp of the correctly rounded one,
checked with ``decimal`` at 60 digits)."""

from __future__ import annotations

import decimal
import math
from fractions import Fraction

import numpy as np
import pytest
from kernel_paths import each_kernel_path  # noqa: F401 - the fixture

import pipeline


@pytest.fixture
def kernel_path(each_kernel_path):  # noqa: F811 - the imported fixture, requested
    """The compiled kernels, then the numpy path (tests/kernel_paths.py)."""
    return each_kernel_path


def _windows(x, w):
    h, wd = x.shape
    for i, j in np.ndindex(x.shape):
        yield (i, j), [int(v) for v in x[max(i - w // 2, 0) : min(i - w // 2 + w, h), max(j - w // 2, 0) : min(j - w // 2 + w, wd)].ravel()]


@pytest.mark.parametrize("dtype", ["uint8", "int16", "int32", "int64", "uint32"])
@pytest.mark.parametrize("boundary", ["shrink", "reflect"])
def test_integer_variance_is_the_exact_rational_rounded_once(kernel_path, dtype, boundary):
    rng = np.random.default_rng(21)
    x = rng.integers(0, 200, (45, 57)).astype(dtype)
    got = pipeline.window_reduce("a", {"a": x}, size=5, reduce=["var", "std"], boundary=boundary)
    xp = np.pad(x, 2, mode="symmetric") if boundary == "reflect" else x
    off = 2 if boundary == "reflect" else 0
    decimal.getcontext().prec = 60
    for (i, j), v in _windows(xp, 5):
        if not (off <= i < off + 45 and off <= j < off + 57):
            continue
        if boundary == "reflect":
            v = [int(u) for u in xp[i - 2 : i + 3, j - 2 : j + 3].ravel()]
        n = len(v)
        var = Fraction(n * sum(u * u for u in v) - sum(v) ** 2, n * n)
        assert got["var"][i - off, j - off] == float(var), (i, j)
        std = float((decimal.Decimal(var.numerator) / decimal.Decimal(var.denominator)).sqrt())
        assert abs(got["std"][i - off, j - off] - std) <= math.ulp(std), (i, j)
