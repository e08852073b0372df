"""The Python API as an xarray/dask citizen (issue 15): alignment by coordinate, the result's
template, names and attrs, API argument errors, int64 inputs, Datasets, the accessor, scipy
aliases and a light ``import pipeline``.  Every result is checked against a brute-force loop or
scipy.ndimage on small arrays."""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing

import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi
import xarray as xr
from reference import brute_window

import pipeline


def same(got, ref):
    """``got`` equals the brute-force reference: exactly for integers, to 1e-9 for floats."""
    got = np.asarray(got)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    if got.dtype.kind == "f":
        r = np.array([np.nan if v is None else float(v) for v in ref.ravel()]).reshape(ref.shape)
        np.testing.assert_allclose(got, r, rtol=1e-9, atol=1e-9, equal_nan=True)
    else:
        assert np.array_equal(got.astype(object), ref)


def grid(ny=12, nx=10, shift=0.0):
    return {"lat": 50.0 - 0.25 * np.arange(ny), "lon": 5.0 + 0.25 * np.arange(nx) + shift}


@pytest.fixture
def rasters():
    """Like real data: a (time, lat, lon) temperature stack in K and a (lat, lon) land mask."""
    rng = np.random.default_rng(15)
    t = rng.integers(250, 320, size=(3, 12, 10)).astype(np.int16)
    mask = rng.random((12, 10)) < 0.8
    coords = grid()
    times = np.array(["2026-01-01", "2026-01-02", "2026-01-03"], dtype="datetime64[ns]")
    temp = xr.DataArray(t, dims=("time", "lat", "lon"), coords={"time": times, **coords}, name="t2m",
                        attrs={"units": "K", "long_name": "2 m temperature", "valid_range": [150, 350]})
    land = xr.DataArray(mask, dims=("lat", "lon"), coords=coords, name="land")
    return temp, land


# ------------------------------------------------------------------ 1. alignment by coordinate


def test_shifted_grid_is_an_error_naming_the_coordinate(rasters):
    temp, _ = rasters
    a = temp.isel(time=0)
    b = a.assign_coords(lon=a.lon + 0.5)
    with pytest.raises(ValueError, match=r"^inputs\['b'\]: coordinate 'lon' differs from inputs\['a'\] \(shifted by 0.5\)"):
        pipeline.window_reduce("a - b", {"a": a, "b": b}, size=3)
    c = a.isel(lat=slice(1, None))  # another length
    with pytest.raises(pipeline.InputError, match=r"inputs\['c'\]: dimension 'lat' has length 11"):
        pipeline.window_reduce("a - c", {"a": a, "c": c}, size=3)


def test_transposed_inputs_are_matched_by_name(rasters):
    temp, _ = rasters
    a = temp.isel(time=0)
    rng = np.random.default_rng(1)
    b = a.copy(data=rng.integers(0, 100, size=a.shape).astype(np.int16)).rename("b")
    got = pipeline.window_reduce("a - b", {"a": a, "b": b.transpose("lon", "lat")}, size=3)
    assert got.dims == ("lat", "lon")
    same(got.values, brute_window(a.values.astype(object) - b.values.astype(object), 3, "sum"))
    # the other way round: the result follows the first used input with the most dims
    got = pipeline.window_reduce("a - b", {"b": b.transpose("lon", "lat"), "a": a}, size={"lat": 3, "lon": 3})
    assert got.dims == ("lon", "lat")
    np.testing.assert_array_equal(got.lon.values, a.lon.values)


def test_only_used_inputs_are_aligned(rasters):
    temp, land = rasters
    shifted = land.assign_coords(lon=land.lon + 1.0)
    got = pipeline.window_reduce("t2m", {"elsewhere": shifted, "t2m": temp}, size={"lat": 3, "lon": 3}, reduce="max")
    same(got.values, brute_window(temp.values.astype(object), 3, "max"))


# ------------------------------------------------------------------ 2. template and attrs


def test_mask_listed_before_stack_broadcasts_by_name(rasters):
    temp, land = rasters
    got = pipeline.window_reduce("where(m, t, 0)", {"m": land, "t": temp}, size={"lat": 3, "lon": 3}, reduce="sum")
    assert got.dims == ("time", "lat", "lon")
    np.testing.assert_array_equal(got.time.values, temp.time.values)
    field = np.where(land.values, temp.values.astype(object), 0)
    same(got.values, brute_window(field, 3, "sum"))
    # a mask stored as (lon, lat) broadcasts just as well
    got2 = pipeline.window_reduce("where(m, t, 0)", {"m": land.T, "t": temp}, size={"lat": 3, "lon": 3})
    np.testing.assert_array_equal(got2.values, got.values)


def test_attrs_come_from_the_used_input_and_stay_true(rasters):
    temp, land = rasters
    other = land.astype(np.int16).assign_attrs(units="1", source="mask")
    got = pipeline.window_reduce("t", {"m": other, "t": temp}, size={"lat": 3, "lon": 3}, reduce=["mean", "var", "count", "max"])
    assert isinstance(got, xr.Dataset) and list(got.data_vars) == ["mean", "var", "count", "max"]
    assert got["mean"].attrs == {"units": "K", "long_name": "2 m temperature"}  # not valid_range: not true of means
    assert got["max"].attrs["units"] == "K"
    assert "units" not in got["var"].attrs and "units" not in got["count"].attrs
    for st in ("mean", "var", "count", "max"):
        same(got[st].values, brute_window(temp.values.astype(object), 3, st))
    # a sum of differences keeps shared units; a product does not
    a, b = temp.isel(time=0), temp.isel(time=1).drop_vars("time")
    assert pipeline.window_reduce("a - b", {"a": a.drop_vars("time"), "b": b}, size=3).attrs == {"units": "K"}
    assert pipeline.window_reduce("a * b", {"a": a.drop_vars("time"), "b": b}, size=3).attrs == {}


# ------------------------------------------------------------------ 4. nodata keys


def test_unknown_nodata_key_is_an_error():
    dem = np.array([[1, 2, -9999], [4, 5, 6]], np.int16)
    with pytest.raises(pipeline.ConfigError, match=r"^nodata: no input named 'dem' \(inputs: elevation\)"):
        pipeline.window_reduce("elevation", {"elevation": dem}, size=3, reduce="min", nodata={"dem": -9999})
    got = pipeline.window_reduce("elevation", {"elevation": dem}, size=3, reduce="min", nodata={"elevation": -9999})
    same(got, brute_window(dem.astype(object), 3, "min", missing=dem == -9999))


# ------------------------------------------------------------------ 5. library errors naming API arguments


def test_bad_arguments_raise_library_errors_naming_them(rasters):
    temp, _ = rasters
    a = np.ones((4, 4), np.uint8)
    with pytest.raises(TypeError, match=r"^size: must be an int.*got 3.5"):
        pipeline.window_reduce("a", {"a": a}, size=3.5)
    with pytest.raises(pipeline.ArgumentTypeError, match=r"^reduce: .*function mean; use reduce='mean'"):
        pipeline.window_reduce("a", {"a": a}, size=3, reduce=np.mean)
    with pytest.raises(ValueError, match=r"^inputs\['a'\]: is an xarray Dataset; pass one variable .*ds\['t2m'\]"):
        pipeline.window_reduce("a", {"a": temp.to_dataset()}, size=3)
    with pytest.raises(ValueError, match=r"^size: window sizes must be >= 1"):
        pipeline.window_reduce("a", {"a": a}, size=0)
    with pytest.raises(ValueError, match=r"^dtype: uint8 cannot hold the sum"):
        pipeline.window_reduce("a", {"a": a}, size=3, dtype="uint8")
    with pytest.raises(ValueError, match=r"^axes: no dimension named 'y'"):
        pipeline.window_reduce("a", {"a": a}, size=3, axes=["y", "x"])
    with pytest.raises(ValueError, match=r"^chunks: "):
        pipeline.window_reduce("a", {"a": a}, size=3, chunks="big")
    with pytest.raises(ValueError, match=r"^reduce: unknown reducer 'median'"):
        pipeline.window_reduce("a", {"a": a}, size=3, reduce="median")
    for kw, arg in ((dict(chunks=3.5), "chunks"), (dict(axes=3), "axes"), (dict(fill_value="x"), "fill_value")):
        with pytest.raises(pipeline.ArgumentTypeError, match=f"^{arg}: "):
            pipeline.window_reduce("a", {"a": a}, size=3, **kw)
    with pytest.raises(TypeError, match=r"^inputs: must be a mapping"):
        pipeline.window_reduce("a", [a], size=3)
    # every one is a PipelineError: the CLI's one-line handling is unchanged
    assert issubclass(pipeline.ArgumentTypeError, pipeline.PipelineError)


def test_cli_still_names_config_keys(tmp_path):
    import zarr
    from typer.testing import CliRunner

    from pipeline.cli.main import app

    zarr.create_array(str(tmp_path / "in.zarr"), shape=(4, 4), dtype="uint8", chunks=(4, 4))[...] = 1
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"inputs: {{a: {{path: {tmp_path / 'in.zarr'}}}}}\nop: a\nwindow: {{size: 3}}\n"
                   f"output: {{path: {tmp_path / 'out.zarr'}, dtype: uint8}}\n")
    r = CliRunner().invoke(app, ["validate", str(cfg)])
    assert r.exit_code == 2, r.output
    assert "output.dtype: uint8 cannot hold the sum" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        # the plan's "required key" and "window.shape: disk" are config wording
        (dict(), "size: is required unless weights or footprint is given"),
        (dict(weights=[[1, 2], [3, 4]], shape="disk"), 'weights: give either weights or shape="disk", not both'),
        (dict(footprint=[[1, 0], [0, 1]], shape="disk"), 'footprint: give either footprint or shape="disk", not both'),
        # keys inside a mapping argument are named as the caller wrote them
        (dict(size=3, reduce=["sum", "max"], dtype={"sum": "uint8"}), "dtype['sum']: uint8 cannot hold the sum results in [0, 2295]; use int32"),
        (dict(size=3, dtype={"median": "int32"}), "dtype: 'median' is not one of the reducers ['sum']"),
        (dict(size=3, nodata={"a": 999}), "nodata['a']: 999 is outside the range of uint8 [0, 255]"),
        (dict(size=3, nodata={"a": 0}, fill_value=1.5), "fill_value: 1.5 is not an integer; the sum output is integer"),
        (dict(weights=[[1, 2], [1, 1]], reduce="var"), "reduce: reducer 'var' is not available with weights (sum, mean, min, max, count are)"),
        (dict(size=3, chunks=[2, 2, 2]), "chunks: needs 2 values (one per window axis), got 3"),
        (dict(size=3, axes=[0, 0]), "axes: window axes must differ, got [0, 0]"),
        (dict(size=3, boundary="constant", cval="x"), "cval: must be a number, got 'x'"),
    ],
)
def test_plan_errors_name_api_arguments_not_config_keys(kw, message):
    a = np.arange(16, dtype=np.uint8).reshape(4, 4) % 5
    with pytest.raises(pipeline.ConfigError) as info:
        pipeline.window_reduce("a", {"a": a}, **kw)
    assert str(info.value) == message
    assert not any(key in str(info.value) for key in ("window.", "output.", "compute.", "inputs.", "required key"))


def test_config_errors_keep_config_keys_where_the_api_renames_them(tmp_path):
    import zarr

    from pipeline.config.load import load_config
    from pipeline.runner.runconfig import prepare

    zarr.create_array(str(tmp_path / "in.zarr"), shape=(4, 4), dtype="uint8", chunks=(4, 4))[...] = 1
    cfg = {"inputs": {"a": {"path": str(tmp_path / "in.zarr")}}, "op": "a", "output": {"path": str(tmp_path / "out.zarr")},
           "window": {"weights": [[1, 2], [3, 4]], "shape": "disk"}}
    with pytest.raises(pipeline.ConfigError) as info:
        prepare(load_config(cfg))
    assert str(info.value) == "window.weights: give either window.weights or window.shape: disk, not both"


# ------------------------------------------------------------------ 6. int64 inputs


def test_int64_arrays_are_accepted_using_their_range():
    a = np.arange(60).reshape(6, 10)  # int64, numpy's default
    assert a.dtype == np.int64
    got = pipeline.window_reduce("a", {"a": a}, size=3)
    assert got.dtype == np.int32
    same(got, brute_window(a.astype(object), 3, "sum"))
    b = np.arange(60)[::-1].reshape(6, 10)
    got = pipeline.window_reduce("a - b", {"a": a, "b": b}, size=(3, 5), reduce=["sum", "max"])
    for st in ("sum", "max"):
        assert got[st].dtype.kind == "i"  # exact integers, not float64
        same(got[st], brute_window(a.astype(object) - b.astype(object), (3, 5), st))
    # lists are int64 too; a small dask array is scanned
    got = pipeline.window_reduce("a", {"a": [[1, 2, 3], [4, 5, 6]]}, size=3)
    same(got, brute_window(np.array([[1, 2, 3], [4, 5, 6]], dtype=object), 3, "sum"))
    got = pipeline.window_reduce("a", {"a": da.from_array(a, chunks=4)}, size=3, chunks=4).compute()
    same(got, brute_window(a.astype(object), 3, "sum"))


def test_int64_range_from_attrs_and_refusal(monkeypatch):
    import pipeline.api.compute

    a = np.arange(60).reshape(6, 10) * 1000
    monkeypatch.setattr(pipeline.api.compute, "SCAN_BYTES", 0)  # as if too large to scan
    lazy = xr.DataArray(da.from_array(a, chunks=4), dims=("y", "x"))
    with pytest.raises(ValueError, match=r"^op: window sums can reach .*not known without reading them\); pass dtype='float64'"):
        pipeline.window_reduce("a", {"a": lazy}, size=3)
    got = pipeline.window_reduce("a", {"a": lazy.assign_attrs(valid_min=0, valid_max=60000)}, size=3)
    same(got.values, brute_window(a.astype(object), 3, "sum"))
    lying = lazy.assign_attrs(valid_min=0, valid_max=100)
    with pytest.raises(pipeline.InputError, match=r"^inputs\['a'\]: holds values outside its declared range \[0, 100\]"):
        pipeline.window_reduce("a", {"a": lying}, size=3).compute()
    got = pipeline.window_reduce("a", {"a": lazy.assign_attrs(actual_range=[0, 59000])}, size=(1, 3), reduce=["sum", "min"])
    same(got["sum"].values, brute_window(a.astype(object), (1, 3), "sum"))
    # an explicit float dtype is honoured
    got = pipeline.window_reduce("a", {"a": lazy}, size=3, dtype="float64")
    assert got.dtype == np.float64
    same(got.values, brute_window(a.astype(float), 3, "sum"))


# ------------------------------------------------------------------ 7. names, Datasets, chunks


def test_result_names_and_dataset_inputs(rasters):
    temp, land = rasters
    lazy = temp.chunk({"lat": 6, "lon": 5})
    got = pipeline.window_reduce("t2m", {"t2m": lazy}, size={"lat": 3, "lon": 3}, reduce="sum")
    assert got.name == "t2m_sum"
    assert got.chunks == lazy.chunks  # chunks at least as wide as the halo are kept
    same(got.values, brute_window(temp.values.astype(object), 3, "sum"))
    ds = xr.Dataset({"t2m": temp, "land": land})
    got = pipeline.window_reduce("where(land, t2m, 0)", ds, size={"lat": 3, "lon": 3}, reduce=["min", "max"])
    assert isinstance(got, xr.Dataset) and set(got.data_vars) == {"min", "max"}
    field = np.where(land.values, temp.values.astype(object), 0)
    for st in ("min", "max"):
        same(got[st].values, brute_window(field, 3, st))
    # numpy and dask keep returning a dict of statistics
    out = pipeline.window_reduce("a", {"a": temp.values}, size=3, reduce=["min", "max"], axes=[1, 2])
    assert isinstance(out, dict) and set(out) == {"min", "max"}


def test_narrow_chunks_are_widened_with_a_warning(rasters):
    temp, _ = rasters
    lazy = temp.chunk({"lat": 2, "lon": 2})
    with pytest.warns(UserWarning, match="narrower than the halo"):
        got = pipeline.window_reduce("t2m", {"t2m": lazy}, size={"lat": 7, "lon": 7}, reduce="max")
    same(got.values, brute_window(temp.values.astype(object), 7, "max"))


# ------------------------------------------------------------------ 8. accessor and scipy aliases


def test_accessor(rasters):
    temp, land = rasters
    got = temp.pipeline.window_reduce(size={"lat": 5, "lon": 3}, reduce="mean")
    assert got.name == "t2m_mean" and got.dims == temp.dims
    same(got.values, brute_window(temp.values.astype(object), (5, 3), "mean"))
    ds = xr.Dataset({"t2m": temp, "land": land})
    got = ds.pipeline.window_reduce("where(land, t2m, 0)", size={"lat": 3, "lon": 3}, reduce="max")
    same(got.values, brute_window(np.where(land.values, temp.values.astype(object), 0), 3, "max"))
    got = temp.pipeline.window_reduce("t2m - 273", size={"lat": 3, "lon": 3}, reduce="min")
    same(got.values, brute_window(temp.values.astype(object) - 273, 3, "min"))


@pytest.mark.parametrize("mode", ["reflect", "constant", "nearest", "mirror", "wrap", "grid-mirror", "grid-wrap", "grid-constant"])
def test_scipy_modes(mode):
    rng = np.random.default_rng(5)
    x = rng.integers(0, 100, size=(9, 11)).astype(np.int32)
    got = pipeline.window_reduce("a", {"a": x}, size=(3, 5), reduce="max", mode=mode, cval=7)
    np.testing.assert_array_equal(got, ndi.maximum_filter(x, size=(3, 5), mode=mode, cval=7))
    got = pipeline.window_reduce("a", {"a": x}, size=(3, 5), reduce="sum", mode=mode, cval=7)
    np.testing.assert_array_equal(got, ndi.correlate(x.astype(np.int64), np.ones((3, 5), np.int64), mode=mode, cval=7))


def test_scipy_footprint_and_nan_cval():
    rng = np.random.default_rng(6)
    x = rng.integers(0, 100, size=(8, 9)).astype(np.int16)
    fp = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)
    for st, fn in (("max", ndi.maximum_filter), ("min", ndi.minimum_filter)):
        got = pipeline.window_reduce("a", {"a": x}, footprint=fp, reduce=st, mode="nearest")
        np.testing.assert_array_equal(got, fn(x, footprint=fp, mode="nearest"))
    got = pipeline.window_reduce("a", {"a": x}, footprint=fp, reduce="sum", mode="mirror")
    np.testing.assert_array_equal(got, ndi.correlate(x.astype(np.int64), fp.astype(np.int64), mode="mirror"))
    # an all-True footprint is a plain window: var works
    got = pipeline.window_reduce("a", {"a": x}, footprint=np.ones((3, 3), bool), reduce="var", mode="reflect")
    same(got, brute_window(x.astype(object), 3, "var", boundary="reflect"))
    with pytest.raises(ValueError, match="^reduce: reducer 'std' is not available with footprint"):
        pipeline.window_reduce("a", {"a": x}, footprint=fp, reduce="std")
    # cval=NaN: outside pixels are missing, as NaN pixels are (the shrunk window)
    got = pipeline.window_reduce("a", {"a": x}, size=3, reduce="mean", mode="constant", cval=np.nan)
    same(got, brute_window(x.astype(object), 3, "mean"))
    with pytest.raises(ValueError, match="^mode: give either boundary or mode"):
        pipeline.window_reduce("a", {"a": x}, size=3, boundary="wrap", mode="wrap")


# ------------------------------------------------------------------ 9. light import, public API


def test_import_is_light_and_public_api_is_curated():
    code = ("import sys, pipeline; heavy = ('numba', 'zarr', 'pydantic', 'distributed', 'dask', 'xarray');"
            "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)));"
            "print(sorted(dir(pipeline)));"
            # xarray imported after pipeline: the accessor is there all the same
            "import xarray as xr; print(xr.DataArray([[1, 2, 3]], dims=('y', 'x'), name='v').pipeline"
            ".window_reduce(size=3).values.tolist())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "[]"
    assert out[2] == "[[3, 6, 5]]"
    assert out[1] == str(sorted(pipeline.__all__))
    assert "window_reduce" in pipeline.__all__ and "'version'" not in out[1]
    assert "'PackageNotFoundError'" not in out[1] and "'api'" not in out[1]


def test_signature_is_typed_and_documented():
    sig = inspect.signature(pipeline.window_reduce)
    import dask

    hints = typing.get_type_hints(pipeline.window_reduce, localns={"xarray": xr, "dask": dask})
    assert typing.get_args(hints["boundary"]) == ("shrink", "valid", "constant", "reflect", "mirror", "nearest", "wrap")
    assert "return" in hints
    doc = inspect.cleandoc(pipeline.window_reduce.__doc__)  # Python 3.13 dedents docstrings itself
    for name in sig.parameters:
        assert f"\n{name}\n" in doc, name


def test_readme_notebook_example(tmp_path, monkeypatch):
    """The README's notebook example, run on two small rasters written with xarray (the plot
    line is the one step left out: matplotlib is not a dependency)."""
    import re
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "api.md").read_text()
    block = re.search(r"## In a notebook.*?```python\n(.*?)```", text, re.S).group(1)
    rng = np.random.default_rng(8)
    coords = grid(10, 12)
    times = np.array(["2026-07-01", "2026-07-02"], dtype="datetime64[ns]")
    t = rng.integers(270, 310, size=(2, 10, 12)).astype(np.int16)
    z = rng.integers(0, 3000, size=(10, 12)).astype(np.int16)
    xr.Dataset({"t2m": (("time", "lat", "lon"), t, {"units": "K"})}, coords={"time": times, **coords}) \
        .chunk({"lat": 5, "lon": 6}).to_zarr(tmp_path / "t2m.zarr")
    xr.Dataset({"elevation": (("lat", "lon"), z, {"units": "m"})}, coords=coords).to_zarr(tmp_path / "dem.zarr")
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec("\n".join(line for line in block.splitlines() if ".plot(" not in line), ns)
    field = t.astype(float) + 0.0065 * z.astype(float)
    for st in ("mean", "std"):
        same(ns["sea"][st].values, brute_window(field, 5, st))
    assert ns["sea"]["mean"].dims == ("time", "lat", "lon")
    assert ns["hottest"].name == "t2m_max" and ns["hottest"].attrs == {"units": "K"}
    same(ns["hottest"].values, brute_window(t.astype(object), 3, "max"))


@pytest.mark.parametrize("order", [("time", "lat", "lon"), ("lat", "lon", "time"), ("lon", "time", "lat")])
def test_any_dim_order_gives_the_same_window(rasters, order):
    """The window follows the dim names (size as a mapping), whatever the storage order of the
    inputs, and a transposed second input is matched by name."""
    temp, land = rasters
    t = temp.transpose(*order)
    got = pipeline.window_reduce("where(m, t, 0)", {"t": t, "m": land.T}, size={"lat": 3, "lon": 5}, reduce="sum")
    assert got.dims == order
    ref = brute_window(np.where(land.values, temp.values.astype(object), 0), (3, 5), "sum")
    same(got.transpose("time", "lat", "lon").values, ref)
