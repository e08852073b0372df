"""Tests of pipeline.expr.intervals: every bound is checked against brute force over the interval."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.expr import fit
from pipeline.expr import intervals as iv

small = st.integers(-40, 40)


def interval():
    return st.tuples(small, small).map(sorted).map(tuple)


def brute(f, *intervals):
    values = [f(*xs) for xs in itertools.product(*(range(lo, hi + 1) for lo, hi in intervals))]
    return min(values), max(values)


def test_fit_is_the_smallest_holding_the_range():
    assert fit(0, 0) == np.dtype("int16")
    assert fit(-(2**15), 2**15 - 1) == np.dtype("int16")
    assert fit(0, 2**15) == np.dtype("int32")
    assert fit(-(2**31) - 1, 0) == np.dtype("int64")
    assert fit(0, 2**63) is None
    assert fit(-(2**63), 2**63 - 1) == np.dtype("int64")


def test_fit_over_other_dtypes():
    unsigned = tuple(np.dtype(t) for t in ("uint8", "uint16", "uint32", "uint64"))
    assert fit(0, 255, unsigned) == np.dtype("uint8")
    assert fit(0, 256, unsigned) == np.dtype("uint16")
    assert fit(-1, 0, unsigned) is None


@settings(max_examples=200, deadline=None)
@given(interval(), interval())
def test_binary_bounds_are_exact(a, b):
    assert iv.add_bounds(a, b) == brute(lambda x, y: x + y, a, b)
    assert iv.sub_bounds(a, b) == brute(lambda x, y: x - y, a, b)
    assert iv.mul_bounds(a, b) == brute(lambda x, y: x * y, a, b)
    assert iv.hull(a, b) == (min(a[0], b[0]), max(a[1], b[1]))


@settings(max_examples=200, deadline=None)
@given(interval(), st.integers(0, 5), st.integers(-7, 7).filter(bool))
def test_unary_bounds_are_exact(a, n, d):
    assert iv.neg_bounds(a) == brute(lambda x: -x, a)
    assert iv.abs_bounds(a) == brute(abs, a)
    assert iv.pow_bounds(*a, n) == brute(lambda x: x**n, a)
    assert iv.floordiv_bounds(*a, d) == brute(lambda x: x // d, a)
    lo, hi = iv.mod_bounds(*a, d)
    exact = brute(lambda x: x % d, a)
    assert lo <= exact[0] and exact[1] <= hi  # exact within one period, else the whole period
    if a[0] // d == a[1] // d:
        assert (lo, hi) == exact


@settings(max_examples=100, deadline=None)
@given(interval(), interval(), interval())
def test_clip_bounds_are_exact(x, lo, hi):
    assert iv.clip_bounds(x, lo, hi) == brute(lambda a, b, c: min(max(a, b), c), x, lo, hi)


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_pow_bounds_of_a_point(n):
    assert iv.pow_bounds(-3, -3, n) == ((-3) ** n, (-3) ** n)
