"""The general operations against the brute-force reference (tests/reference.py): every reducer x
boundary x window shape x input dtype x chunking, missing pixels, several statistics."""

from __future__ import annotations

import math

import dask.array as da
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pipeline
from reference import brute_window, disk_reference

REDUCERS = ["sum", "mean", "min", "max", "var", "std", "count"]
BOUNDARIES = ["shrink", "valid", "constant", "reflect", "mirror", "nearest", "wrap"]
OPS = {
    "a": lambda a, b: a,
    "a - b": lambda a, b: a - b,
    "a * b + 1": lambda a, b: a * b + 1,
    "(a - b)**2": lambda a, b: (a - b) ** 2,
}


def _random(rng, shape, dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return (rng.standard_normal(shape) * 50).astype(dtype)
    info = np.iinfo(dtype)
    x = rng.integers(max(info.min, -300), min(info.max, 300), size=shape, endpoint=True)
    pick = rng.random(shape)
    x = np.where(pick < 0.08, info.max, np.where(pick > 0.92, info.min, x))
    return x.astype(dtype)


def _field(op, a, b):
    if a.dtype.kind == "f":
        return OPS[op](a.astype(np.float64), b.astype(np.float64))
    return OPS[op](a.astype(object), b.astype(object))


def check(got, ref, fill=None, atol=None):
    """``got`` (numpy) equals the reference: exactly for integers, to 1e-9 for floats; windows
    without a valid pixel hold NaN (float) or ``fill`` (integer)."""
    assert got.shape == ref.shape, (got.shape, ref.shape)
    none = np.vectorize(lambda v: v is None, otypes=[bool])(ref) if ref.size else np.zeros(ref.shape, bool)
    if got.dtype.kind == "f":
        assert np.isnan(got[none]).all()
        r = np.array([np.nan if v is None else float(v) for v in ref.ravel()]).reshape(ref.shape)
        scale = np.nanmax(np.abs(r), initial=1.0)
        np.testing.assert_allclose(got, r, rtol=1e-9, atol=1e-9 * scale if atol is None else atol, equal_nan=True)
    else:
        if none.any():
            assert (got[none] == fill).all(), (got[none], fill)
        g = got.astype(object)
        assert all(int(x) == int(y) for x, y in zip(g[~none].ravel(), ref[~none].ravel())), (got, ref)


@st.composite
def grid_cases(draw):
    rows = draw(st.integers(1, 9))
    cols = draw(st.integers(1, 9))
    shape = draw(st.sampled_from(["rect", "rect", "disk", "weights"]))
    size = draw(st.one_of(st.integers(1, 7), st.tuples(st.integers(1, 7), st.integers(1, 11))))
    sizes = (size, size) if isinstance(size, int) else size
    boundary = draw(st.sampled_from(BOUNDARIES))
    if boundary == "valid" and (sizes[0] > rows or sizes[1] > cols):
        boundary = "shrink"
    reducers = REDUCERS if shape != "weights" else ["sum", "mean", "min", "max", "count"]
    reduce = draw(st.one_of(st.sampled_from(reducers), st.lists(st.sampled_from(reducers), min_size=2, max_size=3, unique=True)))
    dtype = draw(st.sampled_from([np.uint8, np.int16, np.uint16, np.float32, np.float64]))
    op = draw(st.sampled_from(sorted(OPS)))
    chunks = (draw(st.integers(1, rows)), draw(st.integers(1, cols)))
    missing = draw(st.sampled_from([0.0, 0.0, 0.2, 0.7]))
    cval = draw(st.sampled_from([0, 3, -2.5]))
    seed = draw(st.integers(0, 2**32 - 1))
    return rows, cols, shape, sizes, boundary, reduce, dtype, op, chunks, missing, cval, seed


@settings(max_examples=160, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grid_cases())
def test_grid_matches_brute_force(case):
    rows, cols, shape, sizes, boundary, reduce, dtype, op, chunks, missing, cval, seed = case
    rng = np.random.default_rng(seed)
    a = _random(rng, (rows, cols), dtype)
    b = _random(rng, (rows, cols), dtype)
    kw = dict(boundary=boundary, cval=cval)
    ref_kw = dict(boundary=boundary, cval=cval)
    nodata = None
    miss = None
    if missing:
        miss = rng.random((rows, cols)) < missing
        if np.dtype(dtype).kind == "f":
            a = np.where(miss, np.nan, a).astype(dtype)
        else:
            nodata = {"a": int(a.flat[0])}
            miss = a == a.flat[0]
        kw["nodata"] = nodata
    if shape == "disk":
        kw.update(size=sizes, shape="disk")
        ref_kw["footprint"] = disk_reference(sizes)
    elif shape == "weights":
        w = rng.integers(-2, 4, size=sizes)
        if "mean" in (reduce if isinstance(reduce, list) else [reduce]):
            w = np.abs(w) + 1
        w[sizes[0] // 2, sizes[1] // 2] = 1
        kw["weights"] = w.tolist()
        ref_kw["weights"] = w.tolist()
    else:
        kw["size"] = sizes
    fvalue = _field(op, a, b)
    if np.dtype(dtype).kind == "f" and miss is not None:
        miss = miss | np.isnan(fvalue)
    try:
        got_lazy = pipeline.window_reduce(op, {"a": da.from_array(a, chunks=chunks), "b": b}, reduce=reduce, chunks=chunks, **kw)
    except pipeline.ConfigError as e:
        # the one refusal the grid can meet: a sum whose bounds exceed int64 does not happen here
        raise AssertionError(e)
    stats = reduce if isinstance(reduce, list) else [reduce]
    got = {st: g.compute(scheduler="sync") for st, g in (got_lazy.items() if isinstance(reduce, list) else [(reduce, got_lazy)])}
    whole = pipeline.window_reduce(op, {"a": a, "b": b}, reduce=reduce, **kw)
    whole = whole if isinstance(reduce, list) else {reduce: whole}
    plan = pipeline.plan.make_plan(op, {n: pipeline.plan.ArraySpec(n, (rows, cols), np.dtype(dtype)) for n in "ab"},
                                   reduce=reduce, **{k: v for k, v in kw.items()})
    for st in stats:
        ref = brute_window(fvalue, sizes, st, missing=miss, **ref_kw)
        fill = plan.fill_values.get(st)
        atol = None
        if np.asarray(fvalue).dtype.kind == "f" and st in ("var", "std"):
            # float var/std: a per-block shift leaves ~eps * shift**2 of rounding
            fscale = np.nanmax(np.abs(np.asarray(fvalue, np.float64)), initial=1.0) + abs(cval)
            atol = 1e-9 * fscale**2 if st == "var" else 1e-7 * fscale
        check(got[st], ref, fill, atol)
        assert got[st].dtype == plan.out_dtypes[st]
        if got[st].dtype.kind == "f":
            np.testing.assert_allclose(whole[st], got[st], rtol=1e-9, atol=1e-9 * np.nanmax(np.abs(got[st]), initial=1), equal_nan=True)
        else:
            assert np.array_equal(whole[st], got[st])
