"""The general operations against the brute-force reference (tests/reference.py): every reducer x
boundary x window shape x input dtype x chunking, missing pixels, several statistics."""

from __future__ import annotations

import os
import zlib

import dask.array as da
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kernel_paths import kernel_path
from reference import brute_window, check, disk_reference, readme_int_output

import pipeline

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


def _op_bounds(op, dtype):
    """``op``'s exact bounds and dtype over two inputs of integer ``dtype``: interval arithmetic
    by hand (products at the corners), the input's dtype for ``a``, else the narrowest of
    int16/int32/int64 (the README's exactness rule)."""
    info = np.iinfo(dtype)
    lo, hi = int(info.min), int(info.max)
    products = [x * y for x in (lo, hi) for y in (lo, hi)]
    bounds = {
        "a": (lo, hi), "a - b": (lo - hi, hi - lo), "a * b + 1": (min(products) + 1, max(products) + 1),
        "(a - b)**2": (0, (hi - lo) ** 2),
    }[op]
    if op == "a":
        return bounds, np.dtype(dtype)
    return bounds, next(np.dtype(t) for t in ("int16", "int32", "int64") if np.iinfo(t).min <= bounds[0] and bounds[1] <= np.iinfo(t).max)


def _readme_output(op, dtype, stat, kw, sizes, empty):
    """The README's integer output dtype and fill of the grid's case, None for float outputs."""
    if stat == "count":
        return np.dtype("int32"), None
    if np.dtype(dtype).kind == "f":
        return None
    bounds, op_dtype = _op_bounds(op, dtype)
    pixels = int(disk_reference(sizes).sum()) if kw.get("shape") == "disk" else sizes[0] * sizes[1]
    return readme_int_output(bounds, op_dtype, stat, boundary=kw["boundary"], cval=kw["cval"], pixels=pixels,
                             weights=kw.get("weights"), empty=empty)


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


@settings(max_examples=int(os.environ.get("PIPELINE_GRID_EXAMPLES", 300)), deadline=None, suppress_health_check=[HealthCheck.too_slow])
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
            a = np.where(miss, a.flat[0], a).astype(dtype)  # the nodata value where missing
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
    got = {stat: g.compute(scheduler="sync") for stat, g in (got_lazy.items() if isinstance(reduce, list) else [(reduce, got_lazy)])}
    whole = pipeline.window_reduce(op, {"a": a, "b": b}, reduce=reduce, **kw)
    whole = whole if isinstance(reduce, list) else {reduce: whole}
    for stat in stats:
        ref = brute_window(fvalue, sizes, stat, missing=miss, **ref_kw)
        expected = _readme_output(op, dtype, stat, kw, sizes, bool(missing))
        fill = expected[1] if expected else None
        atol = None
        if stat in ("var", "std"):
            # var/std in float64 after a per-block shift: rounding ~eps * (block range)**2
            # (integer fields are exact while area * range**2 < 2**63, e.g. not for squared uint16)
            fscale = np.nanmax(np.abs(np.asarray(fvalue, np.float64)), initial=1.0) + abs(cval)
            atol = 1e-9 * fscale**2 if stat == "var" else 1e-7 * fscale
        check(got[stat], ref, fill, atol)
        assert got[stat].dtype == expected[0] if expected else got[stat].dtype.kind == "f", (stat, got[stat].dtype, expected)
        if got[stat].dtype.kind == "f":
            tol = 1e-9 * np.nanmax(np.abs(got[stat]), initial=1) if atol is None else atol
            np.testing.assert_allclose(whole[stat], got[stat], rtol=1e-9, atol=tol, equal_nan=True)
        else:
            assert np.array_equal(whole[stat], got[stat])


@settings(max_examples=int(os.environ.get("PIPELINE_GRID_EXAMPLES", 300)) // 3, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(grid_cases())
def test_grid_matches_brute_force_on_the_numpy_path(case):
    with kernel_path("numpy"):
        test_grid_matches_brute_force.hypothesis.inner_test(case)


# ------------------------------------------------------------------ scipy.ndimage as a second reference

SCIPY_MODES = ["constant", "reflect", "mirror", "nearest", "wrap"]


@pytest.mark.parametrize("mode", SCIPY_MODES)
@pytest.mark.parametrize("shape,size", [((7, 9), (3, 4)), ((5, 3), (8, 11)), ((1, 6), (3, 3)), ((4, 4), (1, 5))])
def test_reference_and_pipeline_match_scipy(mode, shape, size):
    from scipy import ndimage

    rng = np.random.default_rng(sum(shape) + sum(size))
    x = rng.integers(-50, 50, size=shape).astype(np.float64)
    fp = disk_reference(size)
    for reduce, fn in [("mean", np.mean), ("min", np.min), ("max", np.max), ("var", np.var), ("sum", np.sum)]:
        for foot in (None, fp):
            kw = dict(mode=mode, cval=2.5)
            if foot is None:
                sp = ndimage.generic_filter(x, fn, size=size, **kw)
            else:
                sp = ndimage.generic_filter(x, fn, footprint=foot, **kw)
            ref = brute_window(x, size, reduce, boundary=mode, cval=2.5, footprint=foot)
            np.testing.assert_allclose(ref.astype(np.float64), sp, rtol=1e-12, atol=1e-9)
            got = pipeline.window_reduce("a", {"a": x}, size=size, reduce=reduce, boundary=mode, cval=2.5,
                                         shape="rect" if foot is None else "disk")
            np.testing.assert_allclose(got, sp, rtol=1e-9, atol=1e-9)
    # weights: the cv2.filter2D / scipy correlate case
    w = rng.integers(-3, 4, size=size)
    got = pipeline.window_reduce("a", {"a": x.astype(np.int16)}, weights=w.tolist(), boundary=mode, cval=2)
    sp = ndimage.correlate(x, w.astype(np.float64), mode=mode, cval=2)
    assert got.dtype.kind == "i"
    np.testing.assert_array_equal(got, sp)


def test_uniform_filter_and_min_filter_on_a_big_window():
    from scipy import ndimage

    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 50))
    for mode in SCIPY_MODES:
        got = pipeline.window_reduce("a", {"a": da.from_array(x, chunks=(13, 17))}, size=(21, 30), reduce="mean",
                                     boundary=mode).compute()
        np.testing.assert_allclose(got, ndimage.uniform_filter(x, size=(21, 30), mode=mode), rtol=1e-10, atol=1e-12)
        got = pipeline.window_reduce("a", {"a": da.from_array(x, chunks=(13, 17))}, size=(21, 30), reduce="min",
                                     boundary=mode).compute()
        np.testing.assert_array_equal(got, ndimage.minimum_filter(x, size=(21, 30), mode=mode))


@pytest.mark.parametrize("op", ["m", "m * v", "where(m, v, 0) - m"])
def test_bool_inputs_count_as_0_and_1(op):
    rng = np.random.default_rng(zlib.crc32(op.encode()))
    m = rng.random((11, 13)) < 0.4
    v = rng.integers(-9, 9, (11, 13)).astype(np.int16)
    mi, vi = m.astype(object).astype(int), v.astype(object)
    field = {"m": mi, "m * v": mi * vi, "where(m, v, 0) - m": np.where(m, vi, 0) - mi}[op]
    for stat in REDUCERS:
        got = pipeline.window_reduce(op, {"m": m, "v": v}, size=(3, 4), reduce=stat, boundary="reflect")
        check(got, brute_window(field, (3, 4), stat, boundary="reflect"))
        if op == "m" and stat in ("min", "max"):
            assert got.dtype == np.bool_


def test_disk_footprint_definition():
    fp = pipeline.plan.planner.disk_footprint((5, 5))
    assert fp.sum() == 21 and not fp[0, 0] and fp[0, 1] and fp[2].all()
    assert pipeline.plan.planner.disk_footprint((3, 3)).all() and pipeline.plan.planner.disk_footprint((2, 2)).all()
    for size in [(1, 1), (4, 4), (7, 3), (6, 9), (11, 11)]:
        np.testing.assert_array_equal(pipeline.plan.planner.disk_footprint(size), disk_reference(size))


# ------------------------------------------------------------------------------------- stability


@pytest.mark.parametrize("reduce", ["var", "std"])
def test_variance_is_stable_on_a_large_mean(reduce):
    rng = np.random.default_rng(5)
    x = 1e4 + rng.standard_normal((60, 70))
    x[10:20, 10:20] = 1e4 + 0.5  # constant windows: exactly 0
    ref = np.lib.stride_tricks.sliding_window_view(x, (7, 7)).var(axis=(-2, -1))  # two-pass float64
    if reduce == "std":
        ref = np.sqrt(ref)
    for chunks in [(60, 70), (9, 11), (25, 7)]:
        got = pipeline.window_reduce("a", {"a": da.from_array(x, chunks=chunks)}, size=7, reduce=reduce,
                                     boundary="valid", chunks=chunks).compute()
        assert (got >= 0).all()
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=0)
        assert (got[11:13, 11:13] == 0).all()
    # integers: exact sums, var = (n*S2 - S1**2) / n**2
    xi = (10000 + rng.integers(-3, 4, size=(30, 30))).astype(np.int32)
    got = pipeline.window_reduce("a", {"a": xi}, size=5, reduce=reduce, boundary="valid")
    ref = np.lib.stride_tricks.sliding_window_view(xi.astype(np.float64), (5, 5)).var(axis=(-2, -1))
    np.testing.assert_allclose(got, np.sqrt(ref) if reduce == "std" else ref, rtol=1e-12, atol=0)


def test_min_max_exact_for_int64_beyond_2_53():
    big = np.array([[2**62 + 1, 2**62 + 3, -(2**62) - 1], [2**62 + 2, 5, 2**62]], dtype=np.int64)
    out = pipeline.window_reduce("a", {"a": big}, size=(1, 2), reduce=["min", "max"], boundary="valid")
    assert out["max"].dtype == np.int64
    assert out["max"].tolist() == [[2**62 + 3, 2**62 + 3], [2**62 + 2, 2**62]]
    assert out["min"].tolist() == [[2**62 + 1, -(2**62) - 1], [5, 5]]


# ------------------------------------------------------------------------------------- nodata


def test_all_missing_windows_float_and_int():
    x = np.arange(48, dtype=np.float64).reshape(6, 8)
    x[:3, :4] = np.nan  # a 3x4 hole: 3x3 windows centred at (0..1, 0..2) see only missing pixels
    for chunks in [(6, 8), (2, 3), (4, 5)]:
        out = pipeline.window_reduce("a", {"a": da.from_array(x, chunks=chunks)}, size=3,
                                     reduce=["mean", "count", "min", "sum", "std"], chunks=chunks)
        out = {k: v.compute() for k, v in out.items()}
        miss = np.isnan(x)
        for stat in out:
            check(out[stat], brute_window(x, 3, stat, missing=miss))
        assert np.isnan(out["mean"][:2, :3]).all() and (out["count"][:2, :3] == 0).all()
        assert out["count"].dtype == np.int32
    xi = np.nan_to_num(x, nan=255).astype(np.uint8)
    got = pipeline.window_reduce("a", {"a": xi}, size=3, reduce=["sum", "max"], nodata={"a": 255}, fill_value=-1)
    for stat in ("sum", "max"):
        check(got[stat], brute_window(xi.astype(object), 3, stat, missing=xi == 255), fill=-1)
        assert (got[stat][:2, :3] == -1).all()
    assert got["max"].dtype == np.int16  # uint8 maxima and the fill -1
    # default fill: the lowest value of a dtype no result can reach
    got = pipeline.window_reduce("a", {"a": xi}, size=3, reduce="max", nodata={"a": 255})
    assert got.dtype == np.int16 and (got[:2, :3] == np.iinfo(np.int16).min).all()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.sampled_from(REDUCERS), st.sampled_from(BOUNDARIES))
def test_missing_at_borders_and_across_chunk_seams(seed, reduce, boundary):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 20, size=(11, 13)).astype(np.int16)
    b = rng.standard_normal((11, 13))
    a[0, :] = -1  # a missing border row
    a[:, 5] = -1  # a missing column on a chunk seam (chunks of 5)
    b[6, 3:9] = np.nan  # NaN in the other input, across a seam
    miss = (a == -1) | np.isnan(b)
    field = a.astype(np.float64) * 2 + b
    ref = brute_window(field, (3, 4), reduce, boundary=boundary, missing=miss, cval=1)
    got = pipeline.window_reduce("a * 2 + b", {"a": da.from_array(a, chunks=5), "b": da.from_array(b, chunks=(4, 6))},
                                 size=(3, 4), reduce=reduce, boundary=boundary, cval=1, nodata={"a": -1}, chunks=5)
    check(got.compute(), ref, atol=1e-6 if reduce in ("var", "std") else None)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.sampled_from(REDUCERS), st.sampled_from(BOUNDARIES))
def test_missing_at_borders_and_across_chunk_seams_on_the_numpy_path(seed, reduce, boundary):
    with kernel_path("numpy"):
        test_missing_at_borders_and_across_chunk_seams.hypothesis.inner_test(seed, reduce, boundary)


def test_nodata_config_errors():
    # the API names its own arguments (nodata['a'], fill_value), not the config keys
    a = np.zeros((4, 4), np.uint8)
    with pytest.raises(pipeline.ConfigError, match=r"^nodata\['a'\]: .*outside"):
        pipeline.window_reduce("a", {"a": a}, size=3, nodata={"a": 300})
    with pytest.raises(pipeline.ConfigError, match=r"^nodata\['a'\]: .*not an integer"):
        pipeline.window_reduce("a", {"a": a}, size=3, nodata={"a": 1.5})
    with pytest.raises(pipeline.ConfigError, match="^fill_value: "):
        pipeline.window_reduce("a", {"a": a}, size=3, nodata={"a": 0}, fill_value=0.5)


# ------------------------------------------------------------------------------ more dimensions


def test_band_stack_with_broadcast_mask():
    import xarray as xr

    rng = np.random.default_rng(3)
    stack = rng.integers(0, 1000, size=(4, 12, 10)).astype(np.uint16)
    mask = rng.random((12, 10)) < 0.8
    out = pipeline.window_reduce("where(m, s, 0)", {"s": da.from_array(stack, chunks=(1, 5, 4)), "m": mask},
                                 size=3, reduce=["sum", "max"], chunks=5, axes=[1, 2])
    field = np.where(mask, stack.astype(object), 0)
    for stat in ("sum", "max"):
        got = out[stat].compute()
        assert got.shape == (4, 12, 10)
        check(got, brute_window(field, 3, stat))
        for band in range(4):  # bands are independent
            check(got[band], brute_window(field[band], 3, stat))
    # xarray with named dims: the window runs on y/x wherever they are
    xs = xr.DataArray(stack.transpose(1, 2, 0), dims=("y", "x", "band"), coords={"band": list("rgbn")})
    got = pipeline.window_reduce("s", {"s": xs}, size=(3, 5), reduce="mean")
    assert got.dims == ("y", "x", "band") and list(got.band.values) == list("rgbn")
    check(got.values, brute_window(stack.transpose(1, 2, 0).astype(object), (3, 5), "mean", axes=(0, 1)))


def test_channel_last_with_window_axes():
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, size=(9, 11, 3)).astype(np.uint8)
    ref = brute_window(rgb.astype(object), (3, 5), "min", axes=(0, 1), boundary="mirror")
    for axes in ([0, 1], [-3, -2]):
        got = pipeline.window_reduce("a", {"a": da.from_array(rgb, chunks=(4, 4, 3))}, size=(3, 5), reduce="min",
                                     axes=axes, boundary="mirror", chunks=4).compute()
        assert got.dtype == np.uint8
        check(got, ref)
    # axes given in reverse order: size follows the axes
    got = pipeline.window_reduce("a", {"a": rgb}, size=(5, 3), reduce="min", axes=[1, 0], boundary="mirror")
    check(got, ref)
    with pytest.raises(pipeline.ConfigError, match="^axes: "):
        pipeline.window_reduce("a", {"a": rgb}, size=3, axes=["y", "x"])
    with pytest.raises(pipeline.ConfigError, match="^axes: "):
        pipeline.window_reduce("a", {"a": rgb}, size=3, axes=[0, 0])


def test_shapes_that_do_not_broadcast_are_refused():
    with pytest.raises(pipeline.InputError, match="does not broadcast"):
        pipeline.window_reduce("a + b", {"a": np.zeros((3, 4, 5)), "b": np.zeros((4, 4))}, size=3)


# -------------------------------------------------------------------------------- output dtype


def test_output_dtype_rules():
    a = np.full((5, 5), 255, np.uint8)
    spec = {"a": pipeline.plan.planner.ArraySpec("a", (5, 5), np.dtype(np.uint8))}
    plan = pipeline.plan.planner.make_plan("a", spec, size=3, reduce=["sum", "mean", "var", "std", "min", "max", "count"])
    assert {k: str(v) for k, v in plan.out_dtypes.items()} == {
        "sum": "int32", "mean": "float64", "var": "float64", "std": "float64", "min": "uint8", "max": "uint8",
        "count": "int32"}
    # a user dtype that holds the range is used; one that cannot is refused, naming the one that would
    out = pipeline.window_reduce("a", {"a": a}, size=3, dtype="int16")
    assert out.dtype == np.int16 and out[2, 2] == 255 * 9
    out = pipeline.window_reduce("a", {"a": a}, size=3, dtype="float32")
    assert out.dtype == np.float32 and out[2, 2] == 255 * 9
    with pytest.raises(pipeline.ConfigError, match="^dtype: uint8 cannot hold the sum.*use int32"):
        pipeline.window_reduce("a", {"a": a}, size=3, dtype="uint8")
    with pytest.raises(pipeline.ConfigError, match="int32 cannot hold the mean.*use float64"):
        pipeline.window_reduce("a", {"a": a}, size=3, reduce="mean", dtype="int32")
    with pytest.raises(pipeline.ConfigError, match=r"^dtype\['sum'\]: .*use int64"):
        pipeline.window_reduce("a**3", {"a": a.astype(np.uint16)}, size=50, reduce=["sum", "max"],
                               dtype={"sum": "int32"})
    with pytest.raises(pipeline.ConfigError, match="unknown dtype"):
        pipeline.window_reduce("a", {"a": a}, size=3, dtype="int33")


@pytest.mark.parametrize("boundary", ["shrink", "reflect", "wrap", "constant"])
@pytest.mark.parametrize("reduce", ["sum", "max", "var", "count"])
def test_one_window_axis(boundary, reduce):
    rng = np.random.default_rng(2)
    x = rng.integers(0, 50, size=(7, 9)).astype(np.int16)
    x[3, 4] = -1
    got = pipeline.window_reduce("a", {"a": da.from_array(x, chunks=(3, 4))}, size=4, axes=[0], reduce=reduce,
                                 boundary=boundary, chunks=3, nodata={"a": -1}, cval=7).compute()
    ref = brute_window(x.astype(object), (4,), reduce, axes=(0,), boundary=boundary, missing=x == -1, cval=7)
    check(got, ref)
    # 1-D data
    v = x[:, 0]
    got = pipeline.window_reduce("a", {"a": v}, size=3, reduce=reduce, boundary=boundary, cval=7)
    check(got, brute_window(v.astype(object), 3, reduce, boundary=boundary, cval=7))
