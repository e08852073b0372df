"""Window expressions (corr, cov, z-scores, exact integer sums) against brute-force numpy over
every window: NaN and nodata, every boundary, windows wider than the chunks."""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import pytest

import pipeline
from tests.reference import _source_index

BOUNDARIES = ("shrink", "valid", "constant", "reflect", "mirror", "nearest", "wrap")
CVAL = 0.5


def windows(arrays, valid, W, boundary, cval=CVAL):
    """Per output pixel: the valid values of every array in its W x W window (joint validity),
    and the centre's values and validity; naive loops over scipy's index rules."""
    n0, n1 = valid.shape
    lo = W // 2
    rows = range(lo, n0 - (W - 1 - lo)) if boundary == "valid" else range(n0)
    cols = range(lo, n1 - (W - 1 - lo)) if boundary == "valid" else range(n1)
    for i in rows:
        for j in cols:
            vals = [[] for _ in arrays]
            for di in range(-lo, W - lo):
                for dj in range(-lo, W - lo):
                    si, sj = _source_index(i + di, n0, boundary), _source_index(j + dj, n1, boundary)
                    if si is None or sj is None:
                        if boundary == "constant":
                            for v in vals:
                                v.append(cval)
                        continue
                    if valid[si, sj]:
                        for v, a in zip(vals, arrays):
                            v.append(a[si, sj])
            yield (i - rows.start, j - cols.start), [np.array(v) for v in vals], [a[i, j] for a in arrays], valid[i, j]


def reference(kind, a, b, valid, W, boundary):
    """The formula over every window, each term's values gathered apart (boundary 'constant':
    every term's expression is ``cval`` outside the image, as for single statistics)."""
    fields = [a, b, a * b, a * a, b * b]
    rows = [(idx, vals, centre, ok) for idx, vals, centre, ok in windows(fields, valid, W, boundary)]
    shape = (rows[-1][0][0] + 1, rows[-1][0][1] + 1)
    out = np.full(shape, np.nan)
    for idx, (x, y, xy, xx, yy), (cx, *_), ok in rows:
        if len(x) == 0:
            continue
        mx, my = x.mean(), y.mean()
        cov = xy.mean() - mx * my
        if kind == "cov":
            out[idx] = cov
        elif kind == "corr":
            den = np.sqrt((xx.mean() - mx * mx) * (yy.mean() - my * my))
            out[idx] = cov / den if den > 0 else np.nan
        elif kind == "z":
            sd = x.std()
            out[idx] = (cx - mx) / sd if (ok and sd > 0) else np.nan
    return out


def data(seed, shape=(11, 13), nodata=-9.0):
    rng = np.random.default_rng(seed)
    a = rng.normal(3.0, 2.0, shape)
    b = 0.6 * a + rng.normal(0.0, 1.0, shape)
    a[rng.random(shape) < 0.12] = np.nan
    b[rng.random(shape) < 0.12] = nodata
    a[2:6, 3:8] = np.nan  # a hole wider than some windows: windows without a valid pixel
    valid = ~np.isnan(a) & (b != nodata)
    return a, b, valid


OPS = {"cov": "cov(a, b)", "corr": "corr(a, b)", "z": "(a - mean(a)) / std(a)"}


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize(("W", "chunks"), [(3, 5), (7, 4)])
def test_corr_cov_zscore_against_brute_force(boundary, W, chunks):
    a, b, valid = data(W)
    inputs = {"a": da.from_array(a, chunks=chunks), "b": da.from_array(b, chunks=chunks)}
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no division (or invalid value) warning
        got = pipeline.window_reduce(OPS, inputs, size=W, boundary=boundary, cval=CVAL, nodata={"b": -9.0})
        got = {k: np.asarray(v) for k, v in got.items()}
    assert set(got) == set(OPS)
    for kind in OPS:
        ref = reference(kind, a, b, valid, W, boundary)  # one mask for every term: a pixel missing in a or b
        assert got[kind].dtype == np.float64
        assert np.array_equal(np.isnan(got[kind]), np.isnan(ref)), kind
        assert np.allclose(got[kind], ref, rtol=1e-9, atol=1e-9, equal_nan=True), (kind, np.nanmax(np.abs(got[kind] - ref)))
        assert not np.isinf(got[kind]).any()


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_integer_window_expression_is_exact(boundary):
    rng = np.random.default_rng(5)
    a = rng.integers(0, 2**15, (9, 10), dtype=np.int16)
    b = rng.integers(-2**15, 0, (9, 10), dtype=np.int16)
    got = pipeline.window_reduce("sum(a * a) - 3 * sum(b) + count(a)", {"a": da.from_array(a, chunks=3), "b": da.from_array(b, chunks=4)},
                                 size=5, boundary=boundary, cval=7)
    got = np.asarray(got)
    assert got.dtype.kind == "i"
    ones = np.ones(a.shape)
    aa = a.astype(object) * a.astype(object)  # the term's expression (cval outside: boundary 'constant')
    for idx, (x, y, one), _, _ in windows([aa, b.astype(object), ones], np.ones(a.shape, bool), 5, boundary, cval=7):
        xs = [int(v) for v in x]
        ys = [int(v) for v in y]
        # every pixel a window sees counts (boundary 'constant': cval outside, as for count alone)
        assert got[idx] == sum(xs) - 3 * sum(ys) + len(one), idx
