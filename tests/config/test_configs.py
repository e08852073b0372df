"""The example configs in configs/, run through the CLI on the shipped samples, checked against
brute-force references; the sample data match their generating script; several statistics and
nodata through the runner and Zarr."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from reference import brute_window
from sample_data import samples
from typer.testing import CliRunner

import pipeline
from pipeline.cli.main import app
from pipeline.runner import runconfig

ROOT = Path(__file__).resolve().parents[2]




def _run(tree, name):
    result = CliRunner().invoke(app, ["run", "-q", str(tree / "configs" / name)])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["validate", str(tree / "configs" / name)])
    assert result.exit_code == 0, result.output
    return result.output


def test_shipped_samples_match_their_script():
    group = zarr.open_group(ROOT / "data" / "samples.zarr", mode="r")
    for name, data in samples().items():
        assert np.array_equal(group[name][...], data), name


def test_local_variance(tree):
    _run(tree, "local_variance.yaml")
    img = samples()["image"].astype(np.float64)
    out = zarr.open_group(tree / "out" / "local_variance.zarr", mode="r")
    ref = brute_window(img, 5, "var", boundary="reflect").astype(np.float64)
    np.testing.assert_allclose(out["local_var_var"][...], ref, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(out["local_var_std"][...], np.sqrt(ref), rtol=1e-9, atol=1e-9)
    assert out["local_var_var"].attrs["pipeline"]["statistic"] == "var"


def test_change_detection(tree):
    _run(tree, "change_detection.yaml")
    s = samples()
    field = (s["t1"].astype(object) - s["t0"].astype(object)) ** 2
    got = zarr.open_group(tree / "out" / "change.zarr", mode="r")["ssd"]
    assert got.dtype == np.int64
    assert np.array_equal(got[...].astype(object), brute_window(field, 7, "sum"))


def test_masked_mean(tree):
    out = _run(tree, "masked_mean.yaml")
    assert "fill nan" in out  # validate shows the fill value
    dem = samples()["dem"]
    g = zarr.open_group(tree / "out" / "masked_mean.zarr", mode="r")
    miss = dem == -9999
    ref = brute_window(dem.astype(object), 5, "mean", missing=miss)
    got = g["dem_mean"][...]
    empty = np.vectorize(lambda v: v is None, otypes=[bool])(ref)
    assert empty.any() and np.isnan(got[empty]).all()
    np.testing.assert_allclose(got[~empty], ref[~empty].astype(np.float64), rtol=1e-12)
    assert np.array_equal(g["dem_count"][...], brute_window(dem.astype(object), 5, "count", missing=miss).astype(np.int64))
    assert math.isnan(g["dem_mean"].fill_value) and g["dem_mean"].attrs["fill_value"] == "NaN"


def test_geotiff(tree):
    rasterio = pytest.importorskip("rasterio")
    pytest.importorskip("rioxarray")
    import xarray as xr
    from numpy.lib.stride_tricks import sliding_window_view

    shutil.copyfile(ROOT / "data" / "landsat_rgb.tif", tree / "data" / "landsat_rgb.tif")
    _run(tree, "geotiff.yaml")
    with rasterio.open(ROOT / "data" / "landsat_rgb.tif") as ds:
        green, crs, transform = ds.read(2), ds.crs, ds.transform
    ok = green != 0  # the file's nodata
    s = sliding_window_view(np.where(ok, green, 0).astype(np.int64), (5, 5)).sum(axis=(-2, -1))
    n = sliding_window_view(ok.astype(np.int64), (5, 5)).sum(axis=(-2, -1))
    got = xr.open_zarr(tree / "out" / "geotiff.zarr", decode_coords="all")["result"]
    with np.errstate(invalid="ignore", divide="ignore"):
        np.testing.assert_allclose(got.values, np.where(n > 0, s / n, np.nan), rtol=1e-12, equal_nan=True)
    assert got.rio.crs == crs and got.rio.transform() == transform @ rasterio.Affine.translation(2, 2)


def test_integer_fill_value_in_zarr_and_attributes(tmp_path):
    a = np.array([[1, 2, 0, 0], [3, 4, 0, 0], [5, 6, 7, 8]], dtype=np.uint8)
    g = zarr.open_group(tmp_path / "in.zarr", mode="w")
    g.create_array("a", shape=a.shape, dtype=a.dtype, chunks=(2, 2))[...] = a
    cfg = {
        "inputs": {"a": {"path": str(tmp_path / "in.zarr"), "array": "a", "nodata": 0}},
        "op": "a",
        "window": {"size": 1, "reduce": ["min", "sum"]},
        "output": {"path": str(tmp_path / "out.zarr"), "fill_value": -5, "dtype": {"sum": "int64"}},
        "compute": {"chunks": 2},
    }
    res = pipeline.run(cfg)
    assert res.array == "result_min, result_sum"
    out = zarr.open_group(tmp_path / "out.zarr", mode="r")
    expect = np.where(a == 0, -5, a.astype(np.int64))
    for name, dt in (("result_min", np.int16), ("result_sum", np.int64)):
        arr = out[name]
        assert arr.dtype == dt and arr.fill_value == -5 and arr.attrs["fill_value"] == -5
        assert np.array_equal(arr[...], expect)


def test_several_statistics_share_one_pass_and_hooks(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 100, size=(20, 30)).astype(np.int16)
    g = zarr.open_group(tmp_path / "in.zarr", mode="w")
    g.create_array("a", shape=a.shape, dtype=a.dtype, chunks=(10, 10))[...] = a
    cfg = {
        "inputs": {"a": {"path": str(tmp_path / "in.zarr"), "array": "a"}},
        "op": "a",
        "window": {"size": [3, 5], "reduce": ["mean", "std", "max"], "boundary": "nearest"},
        "output": {"path": str(tmp_path / "out.zarr"), "array": "r"},
        "compute": {"chunks": 10, "scheduler": "synchronous"},
    }
    prep = runconfig.prepare(cfg)
    plan = prep.plan
    # one map_overlap: a single layer computes every statistic
    import dask.array as da

    built = pipeline.kernels.ops.build_stats(plan, {"a": da.from_zarr(prep.arrays["a"])})
    assert len({k for k in built["mean"].dask.layers if k.startswith("window-")}) == 1
    targets = {st: zarr.open_group(tmp_path / "out.zarr", mode="a").create_array(
        f"r_{st}", shape=plan.out_shape, dtype=plan.out_dtypes[st], chunks=plan.storage_chunks) for st in plan.stats}
    done = []
    n, lo, hi = runconfig.execute(prep, targets, blocks=[(0, 1), (1, 2)], record=done.append)
    assert n == 2 and sorted(done) == [(0, 1), (1, 2)]
    for st in plan.stats:
        ref = brute_window(a.astype(object), (3, 5), st, boundary="nearest")
        got = targets[st][...]
        for (i, j) in done:
            sl = (slice(10 * i, 10 * i + 10), slice(10 * j, 10 * j + 10))
            np.testing.assert_allclose(got[sl].astype(np.float64), ref[sl].astype(np.float64), rtol=1e-12)
        assert (got[:10, :10] == 0).all()  # not asked for: not written


@pytest.mark.parametrize(
    "window,output,fragment",
    [
        ({"size": 3, "boundary": "bogus"}, {}, "window.boundary"),
        ({"size": 3, "reduce": ["mean", "mean"]}, {}, "window.reduce"),
        ({"size": 3, "reduce": "median"}, {}, "window.reduce"),
        ({"size": 3, "shape": "star"}, {}, "window.shape"),
        ({"weights": [[1, 2], [3]]}, {}, "window.weights"),
        ({"weights": [[1, 2]], "reduce": "var"}, {}, "window.reduce"),
        ({"size": 3, "weights": [[1, 2]]}, {}, "window.size"),
        ({"size": 3, "axes": ["band", "x"]}, {}, "window.axes"),
        ({"size": 3}, {"dtype": "uint8"}, "output.dtype: uint8 cannot hold the sum results in [0, 2295]; use int32"),
        ({"size": 3, "reduce": ["min", "max"]}, {"dtype": {"mean": "int8"}}, "output.dtype"),
        ({"size": 3, "cval": "x", "boundary": "constant"}, {}, "window.cval"),
    ],
)
def test_bad_new_keys_are_one_line_errors_and_nothing_is_written(tmp_path, window, output, fragment):
    import yaml

    cfg = {
        "inputs": {"a": {"path": str(ROOT / "data" / "seed.zarr"), "array": "a"}},
        "op": "a",
        "window": window,
        "output": {"path": str(tmp_path / "out.zarr"), **output},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 2, result.output
    lines = [l for l in result.output.splitlines() if l.strip()]
    assert len(lines) == 1 and fragment in lines[0], lines
    assert not (tmp_path / "out.zarr").exists()


def test_runner_band_stack_with_2d_mask(tmp_path):
    rng = np.random.default_rng(9)
    stack = rng.integers(0, 4000, size=(3, 14, 12)).astype(np.uint16)
    mask = (rng.random((14, 12)) < 0.7).astype(np.uint8)
    g = zarr.open_group(tmp_path / "in.zarr", mode="w")
    g.create_array("s", shape=stack.shape, dtype=stack.dtype, chunks=(1, 8, 8), dimension_names=("band", "y", "x"))[...] = stack
    g.create_array("m", shape=mask.shape, dtype=mask.dtype, chunks=(5, 5), dimension_names=("y", "x"))[...] = mask
    cfg = {
        "inputs": {"m": {"path": str(tmp_path / "in.zarr"), "array": "m", "nodata": 0},
                   "s": {"path": str(tmp_path / "in.zarr"), "array": "s"}},
        "op": "s * m",
        "window": {"size": 3, "reduce": ["mean", "max"], "boundary": "wrap"},
        "output": {"path": str(tmp_path / "out.zarr")},
        "compute": {"chunks": 5},
    }
    pipeline.run(cfg)
    out = zarr.open_group(tmp_path / "out.zarr", mode="r")
    miss = np.broadcast_to(mask == 0, stack.shape)
    for st in ("mean", "max"):
        arr = out[f"result_{st}"]
        assert arr.shape == stack.shape and tuple(arr.metadata.dimension_names) == ("band", "y", "x")
        ref = brute_window(stack.astype(object), 3, st, boundary="wrap", missing=miss)
        from reference import check

        check(arr[...], ref, fill=arr.fill_value)


def test_cog_output_config(tree):
    rasterio = pytest.importorskip("rasterio")
    _run(tree, "cog_output.yaml")
    s = samples()
    ref = brute_window(s["t1"].astype(np.int64) - s["t0"].astype(np.int64), 5, "mean").astype(np.float64)
    with rasterio.open(tree / "out" / "change_mean.tif") as ds:
        np.testing.assert_allclose(ds.read(1), ref, rtol=1e-12, atol=1e-12)
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"


def test_microscopy_pyramid_config(tree):
    from ome_zarr_models.v05.image import Image

    _run(tree, "microscopy_pyramid.yaml")
    group = zarr.open_group(tree / "out" / "microscopy.zarr", mode="r")
    assert len(Image.from_zarr(group).attributes.ome.multiscales) == 2
    full = brute_window(samples()["image"].astype(np.float64), 5, "max").astype(np.float64)
    level1 = full.reshape(24, 2, 32, 2).max(axis=(1, 3))
    np.testing.assert_array_equal(group["multiscale/img_max/1"][...], level1)
    np.testing.assert_array_equal(group["multiscale/img_max/2"][...], level1.reshape(12, 2, 16, 2).max(axis=(1, 3)))
    assert "multiscale/img_max/3" not in group  # 12 x 16 fits one 16 x 16 chunk
