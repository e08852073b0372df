"""GeoTIFF/COG inputs on real imagery (data/landsat_rgb.tif, see data/SOURCES.md): runs read back
with rioxarray and checked against numpy references on the raster read with rasterio."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")
rioxarray = pytest.importorskip("rioxarray")

import xarray as xr  # noqa: E402
from numpy.lib.stride_tricks import sliding_window_view  # noqa: E402
from rasterio.crs import CRS  # noqa: E402
from rasterio.transform import Affine  # noqa: E402

from pipeline.errors import InputError, OutputError  # noqa: E402
from pipeline.runner import runconfig  # noqa: E402
from pipeline.storage import sources  # noqa: E402
from pipeline.storage.sources.geotiff import GeoTiffSource  # noqa: E402

TIF = Path(__file__).resolve().parents[2] / "data" / "landsat_rgb.tif"


def _raster():
    with rasterio.open(TIF) as ds:
        return ds.read(), ds.crs, ds.transform, ds.nodata


def _window_sums(x: np.ndarray, w: int) -> np.ndarray:
    """Exact sums over every full w x w window of the last two axes (Python ints via int64)."""
    return sliding_window_view(x.astype(np.int64), (w, w), axis=(-2, -1)).sum(axis=(-2, -1))


def _run(tmp_path: Path, inputs: dict, op: str, **window) -> xr.DataArray:
    out = tmp_path / "out.zarr"
    runconfig.run({"inputs": inputs, "op": op, "window": window, "output": {"path": str(out)}})
    return xr.open_zarr(out, decode_coords="all")["result"].load()


def test_geotiff_band_run_round_trip_values_crs_and_shifted_transform(tmp_path):
    data, crs, transform, nodata = _raster()
    got = _run(tmp_path, {"g": {"path": str(TIF), "band": 2}}, "g", size=5, reduce="mean", boundary="valid")
    band = data[1]
    valid = band != nodata  # the file's nodata (0) is missing
    s = sliding_window_view(np.where(valid, band, 0).astype(np.int64), (5, 5)).sum(axis=(-2, -1))
    n = sliding_window_view(valid.astype(np.int64), (5, 5)).sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = np.where(n > 0, s / n, np.nan)
    assert got.dims == ("y", "x") and got.shape == (252, 316)
    np.testing.assert_allclose(got.values, ref, rtol=1e-12, equal_nan=True)
    assert (n == 0).any() and (n > 0).any()  # the scene's edge: empty windows and valid ones
    assert got.rio.crs == crs
    assert got.rio.transform() == transform @ Affine.translation(2, 2)
    assert np.allclose(got.x.values, (transform @ Affine.translation(2.5, 0))[2] + transform.a * np.arange(316))


def test_multiband_geotiff_has_a_band_axis_through_the_chunk_cache_and_dask(tmp_path):
    data, crs, transform, _ = _raster()
    src = sources.open_source(str(TIF), None, where="inputs.rgb")
    assert isinstance(src, GeoTiffSource) and isinstance(src, sources.InputSource)
    assert (src.shape, src.dims, src.chunks, src.dtype) == ((3, 256, 320), ("band", "y", "x"), (3, 128, 128), np.dtype("uint8"))
    got = _run(tmp_path / "cache", {"rgb": {"path": str(TIF), "nodata": None}}, "rgb", size=3, reduce="sum", boundary="valid")
    assert got.dims == ("band", "y", "x") and list(got.band.values) == [1, 2, 3]
    np.testing.assert_array_equal(got.values, _window_sums(data, 3))
    assert got.rio.crs == crs and got.rio.transform() == transform @ Affine.translation(1, 1)
    # wrap is built by dask from the storage chunks (not the chunk cache)
    wrapped = _run(tmp_path / "dask", {"rgb": {"path": str(TIF), "nodata": None}}, "rgb", size=3, reduce="sum", boundary="wrap")
    padded = np.pad(data, ((0, 0), (1, 1), (1, 1)), mode="wrap")
    np.testing.assert_array_equal(wrapped.values, _window_sums(padded, 3))


def test_reads_are_whole_tiles_each_read_once(tmp_path, monkeypatch):
    from pipeline.storage.sources import geotiff

    windows = []
    real = geotiff.open_dataset

    class Recording:
        def __init__(self, ds):
            self.ds = ds

        def __getattr__(self, name):
            return getattr(self.ds, name)

        def read(self, bands, window):
            windows.append((window.row_off, window.col_off, window.height, window.width))
            return self.ds.read(bands, window=window)

    def recording(path, storage_options=None):
        from contextlib import contextmanager

        @contextmanager
        def cm():
            with real(path, storage_options) as ds:
                yield Recording(ds)

        return cm()

    monkeypatch.setattr(geotiff, "open_dataset", recording)
    data, *_ = _raster()
    got = _run(tmp_path, {"rgb": {"path": str(TIF), "nodata": None}}, "rgb", size=3, reduce="sum", boundary="valid")
    np.testing.assert_array_equal(got.values, _window_sums(data, 3))
    tiles = {(r, c, min(128, 256 - r), min(128, 320 - c)) for r in (0, 128) for c in (0, 128, 256)}
    assert sorted(windows) == sorted(tiles)  # 6 tiles (the last column 64 wide), each read once


def test_geotiff_run_on_dask_distributed_workers(tmp_path):
    pytest.importorskip("distributed")
    data, *_ = _raster()
    out = tmp_path / "out.zarr"
    compute = {"scheduler": "local-cluster", "workers": 2, "threads_per_worker": 1, "memory_limit": "1GiB", "chunks": 128}
    cfg = {"inputs": {"rgb": {"path": str(TIF), "nodata": None}}, "op": "rgb", "window": {"size": 3, "boundary": "valid"},
           "output": {"path": str(out)}, "compute": compute}
    runconfig.run(cfg)
    got = xr.open_zarr(out)["result"].values
    np.testing.assert_array_equal(got, _window_sums(data, 3))


def test_source_reads_regions_pickles_and_names_a_bad_band(tmp_path):
    data, *_ = _raster()
    src = sources.open_source(str(TIF), None, where="inputs.b", band=3)
    assert (src.shape, src.dims, src.chunks) == ((256, 320), ("y", "x"), (128, 128))
    region = (slice(100, 140), slice(120, 300))
    np.testing.assert_array_equal(src.read(region), data[2][region])
    clone = pickle.loads(pickle.dumps(src))  # what a dask.distributed worker receives
    np.testing.assert_array_equal(clone.array[region], data[2][region])
    assert src.attrs["nodata"] == 0 and src.attrs["grid_mapping"] == "spatial_ref"
    with pytest.raises(InputError, match=r"inputs\.b\.band: band 4 is not in .* \(bands 1 to 3\)"):
        sources.open_source(str(TIF), None, where="inputs.b", band=4)
    with pytest.raises(InputError, match=r"inputs\.b\.array: .*is a GeoTIFF"):
        sources.open_source(str(TIF), "a", where="inputs.b")


def test_single_band_file_is_two_dimensional_and_its_identity_follows_the_file(tmp_path):
    data, crs, transform, _ = _raster()
    path = tmp_path / "red.tiff"
    with rasterio.open(path, "w", driver="GTiff", width=320, height=256, count=1, dtype="uint8", crs=crs,
                       transform=transform, tiled=True, blockxsize=64, blockysize=64) as dst:
        dst.write(data[0], 1)
    src = sources.open_source(str(path), None, where="inputs.r")
    assert (src.shape, src.dims, src.chunks) == ((256, 320), ("y", "x"), (64, 64))
    before = src.identity()
    os.utime(path, ns=(1, 1))
    assert src.identity() != before
    got = _run(tmp_path, {"r": {"path": str(path)}}, "r", size=3, reduce="sum", boundary="valid")
    np.testing.assert_array_equal(got.values, _window_sums(data[0], 3))
    cfg = {"inputs": {"r": {"path": str(path)}}, "op": "r", "window": {"size": 3, "reduce": "sum", "boundary": "valid"},
           "output": {"path": str(tmp_path / "out.zarr")}}
    assert runconfig.run(cfg).status == runconfig.UP_TO_DATE  # the same file: nothing to do
    os.utime(path, ns=(2, 2))
    with pytest.raises(OutputError, match="the data or metadata of input r changed"):  # touched: not up to date
        runconfig.run(cfg)


def _copy_with(tmp_path: Path, name: str, **changes) -> Path:
    data, crs, transform, nodata = _raster()
    path = tmp_path / name
    profile = {"driver": "GTiff", "width": 320, "height": 256, "count": 3, "dtype": "uint8", "crs": crs,
               "transform": transform, "nodata": nodata, **changes}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


@pytest.mark.parametrize(
    ("changes", "what"),
    [({"crs": CRS.from_epsg(32617)}, "CRS EPSG:32618 vs EPSG:32617"), ({"transform": Affine.translation(0, 300) @ _raster()[2]}, r"transform \(101985.0, .*\) vs \(101985.0, .*\)")],
)
def test_inputs_on_different_grids_are_refused_naming_both(tmp_path, changes, what):
    other = _copy_with(tmp_path, "other.tif", **changes)
    cfg = {"inputs": {"a": {"path": str(TIF), "band": 1}, "b": {"path": str(other), "band": 1}}, "op": "a - b",
           "window": {"size": 3}, "output": {"path": str(tmp_path / "out.zarr")}}
    with pytest.raises(InputError, match=rf"inputs\.a and inputs\.b are on different grids: {what}"):
        runconfig.run(cfg)
    same = _copy_with(tmp_path, "same.tif")
    cfg["inputs"]["b"]["path"] = str(same)
    runconfig.run(cfg)  # the same grid in another file: runs


def test_cog_on_s3_runs_like_the_local_file_and_identifies_by_etag(tmp_path, s3):
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3["endpoint_url"])
    fs.put(str(TIF), "pipeline-test/scenes/landsat_rgb.tif")
    url = "s3://pipeline-test/scenes/landsat_rgb.tif"
    opts = {"endpoint_url": s3["endpoint_url"]}
    src = sources.open_source(url, None, where="inputs.g", storage_options=opts, band=2)
    assert src.chunks == (128, 128) and src.identity()["file"]["by"] == "ETag"
    data, crs, transform, _ = _raster()
    got = _run(tmp_path, {"g": {"path": url, "band": 2, "storage_options": opts, "nodata": None}}, "g", size=3, reduce="sum", boundary="valid")
    np.testing.assert_array_equal(got.values, _window_sums(data[1], 3))
    assert got.rio.crs == crs and got.rio.transform() == transform @ Affine.translation(1, 1)


def test_a_missing_or_unreadable_file_is_a_user_error(tmp_path):
    with pytest.raises(InputError, match=r"inputs\.a: file .*none\.tif does not exist"):
        sources.open_source(str(tmp_path / "none.tif"), None, where="inputs.a")
    bad = tmp_path / "bad.tif"
    shutil.copyfile(TIF, bad)
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(InputError, match=r"inputs\.a: cannot open GeoTIFF"):
        sources.open_source(str(bad), None, where="inputs.a")


def test_a_plain_striped_tiff_is_an_image_without_georeferencing(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    data, *_ = _raster()
    path = tmp_path / "scan.tif"
    tifffile.imwrite(path, data[0], rowsperstrip=16)  # strips, no GeoTIFF tags
    src = sources.open_source(str(path), None, where="inputs.s")
    assert (src.chunks, src.dims, src.coords()) == ((16, 320), ("y", "x"), {}) and "grid_mapping" not in src.attrs
    got = _run(tmp_path, {"s": {"path": str(path)}}, "s", size=3, reduce="sum", boundary="valid")
    np.testing.assert_array_equal(got.values, _window_sums(data[0], 3))
    assert "spatial_ref" not in got.coords
