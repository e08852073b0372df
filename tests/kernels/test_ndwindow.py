"""Windows over three or more axes, and scipy's ``origin``: every reducer and boundary against a
brute force over every window (``sliding_window_view`` on an ``np.pad``-ed array for the padding
boundaries, explicit loops for ``shrink``/``valid``), for numpy, dask, xarray and the CLI."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import yaml
import zarr
from numpy.lib.stride_tricks import sliding_window_view
from typer.testing import CliRunner

import pipeline
from pipeline.cli.main import app
from pipeline.runner import runconfig

REDUCERS = ("sum", "mean", "var", "std", "min", "max", "count")
PADS = {"reflect": "symmetric", "mirror": "reflect", "nearest": "edge", "wrap": "wrap", "constant": "constant"}
BOUNDARIES = ("shrink", "valid", *PADS)


def _stat(values: list, reduce: str):
    """One window's statistic from its values: integers exactly (Python ints, one rounding for
    mean and var), floats with math.fsum; None for a window without values."""
    n = len(values)
    if reduce == "count":
        return n
    if n == 0:
        return None
    if reduce in ("min", "max"):
        return min(values) if reduce == "min" else max(values)
    exact = all(isinstance(v, int) for v in values)
    s = sum(values) if exact else math.fsum(values)
    if reduce == "sum":
        return s
    if reduce == "mean":
        return s / n  # int / int: one rounding
    if exact:
        var = (n * sum(v * v for v in values) - s * s) / (n * n)  # exact numerator, one rounding
    else:
        m = s / n
        var = math.fsum((v - m) ** 2 for v in values) / n
    return math.sqrt(var) if reduce == "std" else var


def reference(x, size, axes, reduce, boundary="shrink", cval=0, origin=0):
    """The statistic ``reduce`` of ``x`` over the window ``size`` on ``axes`` (each window's values
    gathered independently), as an object array (None: no valid value).  NaN pixels are skipped."""
    x = np.asarray(x)
    k = len(axes)
    origin = (origin,) * k if np.isscalar(origin) else tuple(origin)
    lo = [w // 2 + o for w, o in zip(size, origin)]
    hi = [w - 1 - l for w, l in zip(size, lo)]
    f = np.moveaxis(x, axes, range(x.ndim - k, x.ndim))
    lead, shape = f.shape[: x.ndim - k], f.shape[x.ndim - k :]
    pyval = int if f.dtype.kind in "iu" else float
    if boundary in PADS:
        pads = [(0, 0)] * len(lead) + list(zip(lo, hi))
        extra = {"constant_values": cval} if boundary == "constant" else {}
        p = np.pad(f.astype(np.float64) if boundary == "constant" and not float(cval).is_integer() else f, pads, mode=PADS[boundary], **extra)
        views = sliding_window_view(p, size, axis=range(x.ndim - k, x.ndim))
        out = np.empty(views.shape[: x.ndim], dtype=object)
        for idx in np.ndindex(out.shape):
            vals = [pyval(v) for v in views[idx].ravel() if v == v]
            out[idx] = _stat(vals, reduce)
    else:
        centres = [range(l, n - h) if boundary == "valid" else range(n) for n, l, h in zip(shape, lo, hi)]
        out = np.empty(lead + tuple(len(c) for c in centres), dtype=object)
        for li in np.ndindex(lead):
            for idx in np.ndindex(out.shape[len(lead) :]):
                c = [centres[i][j] for i, j in enumerate(idx)]
                window = f[li + tuple(slice(max(0, ci - l), ci + h + 1) for ci, l, h in zip(c, lo, hi))]
                out[li + idx] = _stat([pyval(v) for v in window.ravel() if v == v], reduce)
    return np.moveaxis(out, range(x.ndim - k, x.ndim), axes)


def same(got, want, exact: bool):
    got = np.asarray(got)
    assert got.shape == want.shape, (got.shape, want.shape)
    empty = np.vectorize(lambda v: v is None, otypes=[bool])(want)
    w = np.where(empty, 0, want)
    if exact:
        assert np.array_equal(got[~empty].astype(object), w[~empty]), (got, want)
    else:
        np.testing.assert_allclose(got[~empty].astype(np.float64), w[~empty].astype(np.float64), rtol=1e-11, atol=1e-9)
    if empty.any() and got.dtype.kind == "f":
        assert np.isnan(got[empty]).all()


def _exact(reduce: str, dtype) -> bool:
    return np.dtype(dtype).kind in "iu" or reduce in ("min", "max", "count")


def _call(x, size, axes, boundary, reduce=REDUCERS, **kw):
    mode = {"boundary": boundary} if boundary in ("shrink", "valid") else {"mode": boundary}
    return pipeline.window_reduce("a", {"a": x}, size=list(size), axes=list(axes), reduce=list(reduce), **mode, **kw)


# ---- the issue's reproductions


def test_issue_reproductions_3d():
    a = np.arange(60.0).reshape(3, 4, 5)
    got = pipeline.window_reduce("a", {"a": a}, size=[3, 3, 3], axes=[0, 1, 2], reduce="mean", mode="reflect")
    assert got.shape == (3, 4, 5)  # was (3, 3, 4)
    same(got, reference(a, (3, 3, 3), (0, 1, 2), "mean", "reflect"), exact=False)
    got = pipeline.window_reduce("a", {"a": a}, size=[1, 1, 1], axes=[0, 1, 2], reduce="mean", mode="reflect")
    assert np.array_equal(got, a)  # was a[:, :3, :4]
    import dask.array as da

    lazy = pipeline.window_reduce("a", {"a": da.from_array(a, chunks=2)}, size=[3, 3, 3], axes=[0, 1, 2], reduce="mean", mode="reflect")
    assert lazy.shape == (3, 4, 5)
    got = lazy.compute()
    assert got.shape == (3, 4, 5)  # was (5, 4, 6)
    same(got, reference(a, (3, 3, 3), (0, 1, 2), "mean", "reflect"), exact=False)


# ---- numpy: every reducer and boundary


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("dtype", ["int16", "float64"])
def test_numpy_3d_every_reducer(boundary, dtype):
    rng = np.random.default_rng(1)
    x = rng.integers(-50, 50, (4, 5, 6)).astype(dtype)
    if dtype == "float64":
        x += rng.random(x.shape)
    for size in ((3, 2, 4), (1, 3, 3), (6, 1, 2)):  # odd, even, one wider than its axis
        if boundary == "valid" and any(w > n for w, n in zip(size, x.shape)):
            continue
        got = _call(x, size, (0, 1, 2), boundary, cval=7)
        for st in REDUCERS:
            same(got[st], reference(x, size, (0, 1, 2), st, boundary, cval=7), _exact(st, dtype))


@pytest.mark.parametrize("boundary", ["shrink", "valid", "reflect", "wrap", "constant"])
def test_numpy_4d_input_3d_window_axes_in_any_order_with_origin(boundary):
    rng = np.random.default_rng(2)
    x = rng.integers(0, 200, (2, 5, 4, 6)).astype(np.uint8)
    axes, size, origin = (3, 1, 2), (4, 3, 2), (-2, 1, 0)
    got = _call(x, size, axes, boundary, origin=list(origin))
    for st in REDUCERS:
        same(got[st], reference(x, size, axes, st, boundary, origin=origin), True)


def test_float_missing_pixels_3d():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 4, 6))
    x[rng.random(x.shape) < 0.3] = np.nan
    for boundary in ("shrink", "nearest"):
        got = _call(x, (3, 3, 2), (0, 1, 2), boundary)
        for st in REDUCERS:
            same(got[st], reference(x, (3, 3, 2), (0, 1, 2), st, boundary), _exact(st, x.dtype))


def test_integer_mean_and_var_are_exact_in_3d():
    from fractions import Fraction

    x = np.full((3, 3, 3), 2**20 + 1, dtype=np.int64)
    x[1, 1, 1] = 3
    got = pipeline.window_reduce("a", {"a": x}, size=3, axes=[0, 1, 2], reduce=["sum", "var", "mean"], boundary="valid")
    vals = [int(v) for v in x.ravel()]
    assert got["sum"][0, 0, 0] == sum(vals)

    m = Fraction(sum(vals), 27)
    assert got["var"][0, 0, 0] == float(sum((v - m) ** 2 for v in vals) / 27)
    assert got["mean"][0, 0, 0] == float(m)


# ---- dask and xarray


@pytest.mark.parametrize("chunks", [(2, 3, 2), ((1, 3), (2, 3), (6,)), (4, 1, 6), ((3, 1), (4, 1), (1, 5))])
def test_dask_chunkings_match_numpy_reference(chunks):
    import dask.array as da

    rng = np.random.default_rng(4)
    x = rng.integers(0, 1000, (4, 5, 6)).astype(np.int32)
    lazy = da.from_array(x, chunks=chunks)
    for boundary in ("shrink", "valid", "wrap", "reflect"):
        size = (3, 4, 5)  # wider than most chunks
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # chunks narrower than the halo are widened (and said so)
            got = _call(lazy, size, (0, 1, 2), boundary, origin=[0, 1, -1])
        for st in REDUCERS:
            same(got[st].compute(), reference(x, size, (0, 1, 2), st, boundary, origin=(0, 1, -1)), True)


def test_dask_chunks_in_a_3d_window_give_identical_results():
    import dask.array as da

    rng = np.random.default_rng(5)
    x = rng.integers(-(2**20), 2**20, (7, 8, 9)).astype(np.int32)  # exact sums: bit-identical statistics
    want = _call(x, (3, 3, 5), (0, 1, 2), "mirror")
    for chunks in ((3, 4, 5), (7, 8, 9), ((3, 4), (5, 3), (4, 5))):
        got = _call(da.from_array(x, chunks=chunks), (3, 3, 5), (0, 1, 2), "mirror")
        for st in REDUCERS:
            assert np.array_equal(got[st].compute(), want[st]), (chunks, st)


def test_xarray_3d_window_by_dimension_names():
    xr = pytest.importorskip("xarray")
    rng = np.random.default_rng(6)
    x = rng.integers(0, 9, (3, 4, 5, 2)).astype(np.int16)
    da_ = xr.DataArray(x, dims=("time", "y", "x", "band"))
    got = pipeline.window_reduce("a", {"a": da_}, size={"time": 2, "y": 3, "x": 3}, reduce="var", boundary="valid")
    assert got.dims == da_.dims
    same(got.values, reference(x, (2, 3, 3), (0, 1, 2), "var", "valid"), True)


# ---- refusals


def test_nd_disk_and_weights_are_refused_with_a_clear_message():
    x = np.zeros((3, 4, 5))
    with pytest.raises(pipeline.PipelineError, match="^shape: a disk window needs two window axes, got 3"):
        pipeline.window_reduce("a", {"a": x}, size=3, axes=[0, 1, 2], shape="disk")
    with pytest.raises(pipeline.PipelineError, match="^axes: 3 axes for a 2-D weights matrix"):
        pipeline.window_reduce("a", {"a": x}, weights=[[1, 2], [3, 4]], axes=[0, 1, 2])


def test_origin_is_checked_as_scipy_checks_it():
    x = np.zeros((6, 6))
    with pytest.raises(pipeline.PipelineError, match=r"^origin: 2 is out of range for a window of size 3 .*-1 … 1"):
        pipeline.window_reduce("a", {"a": x}, size=3, origin=2)
    with pytest.raises(pipeline.PipelineError, match=r"^origin: 3 values for a 2-D window"):
        pipeline.window_reduce("a", {"a": x}, size=3, origin=[0, 0, 0])
    with pytest.raises(pipeline.PipelineError, match=r"^origin: must be an int or one int per window axis"):
        pipeline.window_reduce("a", {"a": x}, size=3, origin=0.5)


# ---- the CLI


def _zarr_input(tmp_path, x):
    g = zarr.open_group(tmp_path / "in.zarr", mode="w")
    g.create_array("a", shape=x.shape, dtype=x.dtype, chunks=(2, 3, 4), dimension_names=["z", "y", "x"])[...] = x


def test_cli_3d_window_matches_reference_and_resumes(tmp_path):
    rng = np.random.default_rng(7)
    x = rng.integers(0, 100, (5, 7, 9)).astype(np.int16)
    _zarr_input(tmp_path, x)
    for boundary in ("shrink", "valid", "wrap"):
        cfg = {
            "inputs": {"a": {"path": "in.zarr", "array": "a"}},
            "op": "a",
            "window": {"size": [3, 5, 5], "axes": ["z", "y", "x"], "reduce": list(REDUCERS), "boundary": boundary,
                       "origin": [1, 0, -2]},
            "output": {"path": f"out-{boundary}.zarr"},
            "compute": {"chunks": [2, 3, 4], "scheduler": "synchronous"},
        }
        path = tmp_path / f"{boundary}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        res = CliRunner().invoke(app, ["run", "-q", str(path)])
        assert res.exit_code == 0, res.output
        out = zarr.open_group(tmp_path / f"out-{boundary}.zarr", mode="r")
        for st in REDUCERS:
            same(out[f"result_{st}"][...], reference(x, (3, 5, 5), (0, 1, 2), st, boundary, origin=(1, 0, -2)), True)
    # a killed run lost a block: the resume recomputes that block only
    (tmp_path / "out-wrap.zarr" / "result_max" / "c" / "1" / "1" / "1").unlink()
    target = zarr.open_array(tmp_path / "out-wrap.zarr", path="result_max", mode="r+")
    target.update_attributes({"pipeline": dict(target.attrs["pipeline"], complete=False)})
    res = runconfig.run(str(tmp_path / "wrap.yaml"))
    assert res.computed == 1, res
    same(zarr.open_group(tmp_path / "out-wrap.zarr", mode="r")["result_max"][...],
         reference(x, (3, 5, 5), (0, 1, 2), "max", "wrap", origin=(1, 0, -2)), True)


def test_config_origin_errors_name_window_origin(tmp_path):
    x = np.zeros((5, 7, 9), np.int16)
    _zarr_input(tmp_path, x)
    cfg = {"inputs": {"a": {"path": "in.zarr", "array": "a"}}, "op": "a",
           "window": {"size": [3, 5, 5], "axes": ["z", "y", "x"], "origin": [0, 3, 0]}, "output": {"path": "o.zarr"}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(app, ["validate", str(path)])
    assert res.exit_code == 2 and "window.origin: 3 is out of range for a window of size 5" in res.output, res.output
    cfg["window"]["origin"] = "left"
    path.write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(app, ["validate", str(path)])
    assert res.exit_code == 2 and "window.origin" in res.output, res.output


# ---- dask chunks narrower than the halo


def test_dask_chunks_narrower_than_the_halo_are_widened_with_a_warning():
    import dask.array as da

    x = np.random.default_rng(8).integers(0, 9, (64, 64)).astype(np.int16)
    lazy = da.from_array(x, chunks=((1, 63), (64,)))  # the issue's chunks; halo 4
    with pytest.warns(UserWarning, match=r"'a' chunks \(1, 63\) on axis 0 include one narrower than the window's halo 4; widened to \(64,\)"):
        got = pipeline.window_reduce("a", {"a": lazy}, size=9, reduce="max", mode="reflect")
    same(got.compute(), reference(x, (9, 9), (0, 1), "max", "reflect"), True)


def test_plan_of_a_3d_window_names_unnamed_dimensions_and_shifts_its_arms():
    from pipeline.plan.planner import ArraySpec, make_plan

    p = make_plan("a", {"a": ArraySpec("a", (2, 5, 6, 7), np.dtype("int16"))}, size=[3, 3, 3], axes=[1, 2, 3], origin=[1, 0, -1])
    assert p.dims == ("dim_0", "z", "y", "x")
    assert (p.lo, p.hi) == ((2, 1, 0), (0, 1, 2))  # lo = W // 2 + origin (scipy's placement)
    assert "arms before/after (2, 1, 0)/(0, 1, 2)" in p.describe()
