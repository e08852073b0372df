"""Real-data metadata: output attributes true of the output, the inputs' declared nodata, the
CRS carried, and window axes that are never silently wrong (issue 12, items 1-3)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import yaml
import zarr
from reference import brute_window, check
from typer.testing import CliRunner

import pipeline
from pipeline.cli.main import app

cli = CliRunner()


def _open(path):
    import xarray as xr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # consolidated metadata is not in the v3 spec
        return xr.open_zarr(path)  # default decoding, as a user would


def _geotiff_like(tmp_path, *, nodata=255, encoded=False, extra_attrs=None):
    """A rioxarray-written uint8 band (EPSG:4326, 20 x 30) as `open_rasterio(...).to_zarr`
    gives it: ``_FillValue`` (or ``nodata``) declared, ``grid_mapping: spatial_ref``."""
    xr = pytest.importorskip("xarray")
    pytest.importorskip("rioxarray")
    rng = np.random.default_rng(12)
    a = rng.integers(0, 60, (20, 30)).astype(np.uint8)
    a[3, 4] = a[10, 10:13] = a[0:3, 27:30] = nodata  # a whole 3x3 window of nodata at a corner
    da = xr.DataArray(a, dims=("y", "x"), coords={"y": 50 - np.arange(20) * 0.1, "x": 10 + np.arange(30) * 0.1})
    da.attrs.update(extra_attrs or {})
    da = da.rio.write_crs("EPSG:4326").rio.write_nodata(nodata, encoded=encoded)
    da.rio.write_transform(inplace=True)
    path = tmp_path / "band.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        da.to_dataset(name="band").to_zarr(path, mode="w", zarr_format=3)
    return path, a, da


def _config(tmp_path, inputs, **window):
    cfg = {
        "inputs": inputs,
        "op": "a",
        "window": {"size": 3, **window},
        "output": {"path": str(tmp_path / "out.zarr"), "overwrite": True},
    }
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_rioxarray_input_output_opens_with_xarray_and_carries_crs(tmp_path):
    path, a, src = _geotiff_like(
        tmp_path, extra_attrs={"scale_factor": 1.0, "add_offset": 0.0, "STATISTICS_MAXIMUM": 59, "long_name": "red", "units": "dn",
                               "valid_range": [0, 254], "flag_meanings": "x"}
    )
    assert zarr.open_group(path, mode="r")["band"].attrs["_FillValue"] == 255
    cfg = _config(tmp_path, {"a": {"path": str(path), "array": "band"}}, reduce=["sum", "mean", "var", "count"])
    res = cli.invoke(app, ["run", str(cfg)])
    assert res.exit_code == 0, res.output
    ds = _open(tmp_path / "out.zarr")  # failed before: "Failed to decode fill_value"
    missing = a == 255
    for st in ("sum", "mean", "var", "count"):
        got = ds[f"result_{st}"]
        ref = brute_window(a.astype(object), 3, st, missing=missing)
        check(got.values if st in ("mean", "var") else np.where(np.isnan(got.values), -1, got.values).astype(np.int64), ref, fill=-1)
        attrs = zarr.open_group(tmp_path / "out.zarr", mode="r")[f"result_{st}"].attrs
        for key in ("scale_factor", "add_offset", "STATISTICS_MAXIMUM", "valid_range", "flag_meanings", "nodata"):
            assert key not in attrs, (st, key)
        assert attrs["long_name"] == "red"
        assert ("units" in attrs) == (st in ("sum", "mean")), st  # var: dn², count: no units
        # rioxarray reads the CRS and transform the input had
        assert got.rio.crs.to_epsg() == 4326
        assert got.rio.transform() == src.rio.transform()
    # the corner window wholly nodata: empty, so NaN after xarray's decoding of the output's own fill
    assert np.isnan(ds["result_sum"].values[1, 28]) and ds["result_count"].values[1, 28] == 0


def test_valid_boundary_shifts_the_transform(tmp_path):
    from affine import Affine

    path, a, src = _geotiff_like(tmp_path)
    cfg = _config(tmp_path, {"a": {"path": str(path), "array": "band"}}, size=[3, 5], boundary="valid")
    assert cli.invoke(app, ["run", str(cfg)]).exit_code == 0
    got = _open(tmp_path / "out.zarr")["result"]
    assert got.shape == (18, 26)
    assert got.rio.transform().almost_equals(src.rio.transform() @ Affine.translation(2, 1))
    np.testing.assert_allclose(got.x.values, src.x.values[2:-2])
    # the carried CRS variable's GeoTransform moved with the output's first pixel
    moved = [float(v) for v in _open(tmp_path / "out.zarr")["spatial_ref"].attrs["GeoTransform"].split()]
    np.testing.assert_allclose(moved, (src.rio.transform() @ Affine.translation(2, 1)).to_gdal())


def test_sum_equal_to_the_old_fill_value_stays_a_number(tmp_path):
    """Sums of 255 on an int32 output were NaN under the inherited ``_FillValue: 255``."""
    a = np.full((6, 6), 28, dtype=np.uint8)
    a[0, 0] = 255 - 3 * 28  # the corner's 2x2 window: 171 + 3 * 28 = 255
    g = zarr.open_group(tmp_path / "in.zarr", mode="w")
    attrs = {"_FillValue": 255}  # declared (as in the uint8 bands), but no pixel holds it
    g.create_array("a", shape=a.shape, dtype=a.dtype, chunks=(6, 6), dimension_names=("y", "x"), attributes=attrs)[...] = a
    ref = brute_window(a.astype(object), 3, "sum")
    assert ref[0, 0] == 255
    for nodata in ({}, {"nodata": None}):
        cfg = _config(tmp_path, {"a": {"path": str(tmp_path / "in.zarr"), "array": "a", **nodata}})
        assert cli.invoke(app, ["run", str(cfg)]).exit_code == 0
        got = _open(tmp_path / "out.zarr")["result"].values
        assert got[0, 0] == 255 and not np.isnan(got).any()
        check(got.astype(np.int64), ref)


@pytest.mark.parametrize("attr", ["_FillValue", "missing_value", "nodata"])
def test_nodata_declared_by_attributes_is_skipped(tmp_path, attr):
    rng = np.random.default_rng(5)
    a = rng.integers(0, 10, (9, 11)).astype(np.int16)
    a[rng.random(a.shape) < 0.2] = -9999
    g = zarr.open_group(tmp_path / "in.zarr", mode="w")
    g.create_array("a", shape=a.shape, dtype=a.dtype, chunks=(4, 4), dimension_names=("y", "x"), attributes={attr: -9999})[...] = a
    inp = {"path": str(tmp_path / "in.zarr"), "array": "a"}
    cfg = _config(tmp_path, {"a": inp}, reduce="max")
    val = cli.invoke(app, ["validate", str(cfg)])
    assert val.exit_code == 0 and f"nodata -9999 (attribute {attr})" in val.output, val.output
    pipeline.run(str(cfg))
    out = zarr.open_group(tmp_path / "out.zarr", mode="r")["result"]
    check(out[...], brute_window(a.astype(object), 3, "max", missing=a == -9999), fill=out.fill_value)
    # the config overrides the attribute, or switches it off
    for given, missing in ((3, a == 3), (None, None), ("none", None)):
        pipeline.run(str(_config(tmp_path, {"a": {**inp, "nodata": given}}, reduce="max")))
        out = zarr.open_group(tmp_path / "out.zarr", mode="r")["result"]
        check(out[...], brute_window(a.astype(object), 3, "max", missing=missing), fill=out.fill_value)


def test_declared_nodata_no_pixel_can_hold_is_ignored_and_said(tmp_path):
    a = np.arange(30, dtype=np.uint8).reshape(5, 6)
    g = zarr.open_group(tmp_path / "in.zarr", mode="w")
    g.create_array("a", shape=a.shape, dtype=a.dtype, chunks=(5, 6), dimension_names=("y", "x"), attributes={"nodata": -9999})[...] = a
    cfg = _config(tmp_path, {"a": {"path": str(tmp_path / "in.zarr"), "array": "a"}})
    res = cli.invoke(app, ["validate", str(cfg)])
    assert res.exit_code == 0 and "nodata none (attribute nodata = -9999 cannot occur in uint8)" in res.output, res.output
    pipeline.run(str(cfg))
    check(zarr.open_group(tmp_path / "out.zarr", mode="r")["result"][...], brute_window(a.astype(object), 3, "sum"))


def test_zarr_fill_value_is_not_a_nodata_declaration(tmp_path):
    a = np.arange(30, dtype=np.uint8).reshape(5, 6)
    g = zarr.open_group(tmp_path / "in.zarr", mode="w")
    g.create_array("a", shape=a.shape, dtype=a.dtype, chunks=(5, 6), fill_value=7, dimension_names=("y", "x"))[...] = a
    pipeline.run(str(_config(tmp_path, {"a": {"path": str(tmp_path / "in.zarr"), "array": "a"}})))
    check(zarr.open_group(tmp_path / "out.zarr", mode="r")["result"][...], brute_window(a.astype(object), 3, "sum"))


def test_float_declared_fill_in_xarray_base64(tmp_path):
    """xarray writes a float ``_FillValue`` of a Zarr v3 array as base64 text."""
    xr = pytest.importorskip("xarray")
    a = np.arange(30, dtype=np.float32).reshape(5, 6)
    a[2, 2] = -1.5
    da = xr.DataArray(a, dims=("y", "x"))
    da.encoding["_FillValue"] = -1.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        da.to_dataset(name="a").to_zarr(tmp_path / "in.zarr", mode="w", zarr_format=3)
    assert isinstance(zarr.open_group(tmp_path / "in.zarr", mode="r")["a"].attrs["_FillValue"], str)
    pipeline.run(str(_config(tmp_path, {"a": {"path": str(tmp_path / "in.zarr"), "array": "a"}}, reduce="mean")))
    got = _open(tmp_path / "out.zarr")["result"].values
    check(got, brute_window(a.astype(np.float64), 3, "mean", missing=a == -1.5))


# ------------------------------------------------------------------------------- window axes


def _rgb(tmp_path, dims=None):
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (9, 11, 3)).astype(np.uint8)
    g = zarr.open_group(tmp_path / "in.zarr", mode="w")
    g.create_array("a", shape=rgb.shape, dtype=rgb.dtype, chunks=(4, 4, 3), dimension_names=dims)[...] = rgb
    return rgb


def test_unnamed_rgb_never_gets_a_window_over_channels(tmp_path):
    rgb = _rgb(tmp_path)
    inp = {"a": {"path": str(tmp_path / "in.zarr"), "array": "a"}}
    for cmd in ("validate", "run"):
        res = cli.invoke(app, [cmd, str(_config(tmp_path, inp))])
        assert res.exit_code == 2, res.output
        assert res.output.count("\n") == 1 and "window.axes" in res.output and "3-D" in res.output, res.output
    assert not (tmp_path / "out.zarr").exists()
    # with window.axes: the window runs over rows and columns; the output's dims say so
    res = cli.invoke(app, ["run", str(_config(tmp_path, inp, axes=[0, 1]))])
    assert res.exit_code == 0, res.output
    out = zarr.open_group(tmp_path / "out.zarr", mode="r")["result"]
    check(out[...], brute_window(rgb.astype(object), 3, "sum", axes=(0, 1)))
    assert tuple(out.metadata.dimension_names) == ("y", "x", "dim_0")
    # the numpy API: the same rule, the error names its argument
    with pytest.raises(pipeline.ConfigError, match=r"^axes: .*3-D.*set axes"):
        pipeline.window_reduce("a", {"a": rgb}, size=3)
    check(pipeline.window_reduce("a", {"a": rgb}, size=3, axes=[0, 1]), brute_window(rgb.astype(object), 3, "sum", axes=(0, 1)))


@pytest.mark.parametrize("dims", [("lat", "lon", "band"), ("latitude", "longitude", "band"), ("row", "col", "c"), ("rows", "cols", "c"), ("Y", "X", "band")])
def test_spatial_names_pick_the_window_axes(tmp_path, dims):
    rgb = _rgb(tmp_path, dims)
    pipeline.run(str(_config(tmp_path, {"a": {"path": str(tmp_path / "in.zarr"), "array": "a"}})))
    out = zarr.open_group(tmp_path / "out.zarr", mode="r")["result"]
    check(out[...], brute_window(rgb.astype(object), 3, "sum", axes=(0, 1)))


def test_named_but_unrecognised_3d_needs_axes(tmp_path):
    _rgb(tmp_path, ("north", "east", "band"))
    res = cli.invoke(app, ["validate", str(_config(tmp_path, {"a": {"path": str(tmp_path / "in.zarr"), "array": "a"}}))])
    assert res.exit_code == 2 and "window.axes" in res.output and "'north', 'east', 'band'" in res.output, res.output


def test_api_xarray_result_attributes_are_true_of_it():
    xr = pytest.importorskip("xarray")
    a = np.arange(30, dtype=np.uint8).reshape(5, 6)
    attrs = {"_FillValue": 255, "scale_factor": 1.0, "STATISTICS_MEAN": 3.0, "units": "dn", "long_name": "red", "grid_mapping": "spatial_ref"}
    x = xr.DataArray(a, dims=("y", "x"), coords={"spatial_ref": 0}, attrs=attrs)
    out = pipeline.window_reduce("a", {"a": x}, size=3, reduce=["sum", "var"])
    for st, units in (("sum", True), ("var", False)):
        check(out[st].values, brute_window(a.astype(object) if st == "sum" else a.astype(np.float64), 3, st))
        got = out[st].attrs
        assert got.get("long_name") == "red" and got.get("grid_mapping") == "spatial_ref" and "spatial_ref" in out[st].coords
        assert not {"_FillValue", "scale_factor", "STATISTICS_MEAN"} & set(got), got
        assert ("units" in got) == units, (st, got)


def test_a_users_crs_variable_in_the_output_group_is_never_replaced(tmp_path):
    """The CRS variable the output carries is written like the coordinates: an array of that
    name the tool did not write stays untouched (exit 2), even with overwrite."""
    path, a, _ = _geotiff_like(tmp_path)
    g = zarr.open_group(tmp_path / "out.zarr", mode="w")
    mine = g.create_array("spatial_ref", shape=(), dtype="int64", attributes={"crs_wkt": "mine"})
    mine[()] = 7
    cfg = _config(tmp_path, {"a": {"path": str(path), "array": "band"}})
    res = cli.invoke(app, ["run", str(cfg)])
    assert res.exit_code == 2, res.output
    assert "spatial_ref" in res.output and "not written by pipeline" in res.output, res.output
    kept = zarr.open_group(tmp_path / "out.zarr", mode="r")["spatial_ref"]
    assert kept[()] == 7 and dict(kept.attrs) == {"crs_wkt": "mine"}
