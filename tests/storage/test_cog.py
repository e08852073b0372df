"""The COG output target (issue 24): a GeoTIFF-like input (written with rasterio, carried into
Zarr by rioxarray) -> run -> Cloud-Optimized GeoTIFF read back with rasterio: values against a
brute-force reference, CRS, transform, nodata, overviews, tiles, GDAL's COG layout and
rio-cogeo's validation; resume, up to date, one COG per statistic, bounded memory."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest
import zarr
from reference import brute_window, check

import pipeline
from pipeline.config.load import load_config
from pipeline.errors import OutputError
from pipeline.runner import dryrun, runconfig

rasterio = pytest.importorskip("rasterio")
pytest.importorskip("rioxarray")
from affine import Affine  # noqa: E402 - rasterio's dependency
from rasterio.transform import from_origin  # noqa: E402

TRANSFORM = from_origin(500000.0, 4600000.0, 30.0, 30.0)


def geotiff_zarr(tmp_path, a, *, nodata=None):
    """``a`` written as a GeoTIFF (UTM 33N, 30 m) with rasterio, then to Zarr by rioxarray."""
    import rioxarray

    tif = tmp_path / "band.tif"
    with rasterio.open(tif, "w", driver="GTiff", width=a.shape[1], height=a.shape[0], count=1, dtype=a.dtype.name,
                       crs="EPSG:32633", transform=TRANSFORM, nodata=nodata) as ds:
        ds.write(a, 1)
    da = rioxarray.open_rasterio(tif).squeeze("band", drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        da.to_dataset(name="band").to_zarr(tmp_path / "band.zarr", mode="w", zarr_format=3)
    return str(tmp_path / "band.zarr")


def config(src, out, **window):
    return {
        "inputs": {"a": {"path": src, "array": "band"}},
        "op": "a",
        "window": {"size": 3, **window},
        "output": {"path": str(out)},
        "compute": {"chunks": [16, 16]},
    }


def read(path):
    with rasterio.open(path) as ds:
        return ds.read(1), ds.profile, ds.overviews(1), ds.tags(ns="IMAGE_STRUCTURE")


def test_cog_per_statistic_exact_with_crs_transform_nodata(tmp_path):
    rng = np.random.default_rng(3)
    a = rng.integers(1, 200, (40, 50)).astype(np.uint8)
    a[5, 7] = a[20:23, 30:33] = 0
    src = geotiff_zarr(tmp_path, a, nodata=0)
    res = pipeline.run(config(src, tmp_path / "ndvi.tif", reduce=["sum", "mean", "max"]))
    assert res.status == "done"
    for st in ("sum", "mean", "max"):
        got, profile, _, layout = read(tmp_path / f"ndvi_{st}.tif")  # one COG per statistic, named <stem>_<stat>
        ref = brute_window(a, 3, st, missing=a == 0)
        fill = profile["nodata"]
        check(got, ref, fill=fill)
        assert profile["crs"].to_epsg() == 32633 and profile["transform"] == TRANSFORM
        assert profile["tiled"] and layout["LAYOUT"] == "COG" and layout["COMPRESSION"] == "DEFLATE"
        assert (np.isnan(fill) and np.isnan(got[21, 31])) if st == "mean" else got[21, 31] == fill
    assert not (tmp_path / "ndvi.tif").exists()
    assert not (tmp_path / "ndvi.tif.pipeline" / "cog-blocks.pipeline-new").exists()  # the blocks are gone
    cfg = config(src, tmp_path / "ndvi.tif", reduce=["sum", "mean", "max"])
    assert dryrun.preview(load_config(cfg)).verdict == "up-to-date"  # failed before: "new" (it looked for a Zarr store)
    assert pipeline.run(cfg).status == "up-to-date"  # the state kept in the COGs' PIPELINE tag


def test_cog_has_overviews_and_validates(tmp_path):
    from rio_cogeo.cogeo import cog_validate
    from scipy import ndimage

    a = np.random.default_rng(4).integers(0, 255, (1100, 1300)).astype(np.uint8)
    src = geotiff_zarr(tmp_path, a)
    cfg = config(src, tmp_path / "max.tif", reduce="max")
    cfg["compute"]["chunks"] = [512, 512]
    pipeline.run(cfg)
    got, profile, overviews, _ = read(tmp_path / "max.tif")
    np.testing.assert_array_equal(got, ndimage.maximum_filter(a, 3, mode="nearest"))  # shrink: max over the truncated window
    assert overviews == [2, 4] and (profile["blockxsize"], profile["blockysize"]) == (512, 512)
    valid, errors, _ = cog_validate(str(tmp_path / "max.tif"), quiet=True)
    assert valid and not errors


def test_valid_boundary_shifts_the_cog_transform(tmp_path):
    a = np.arange(30 * 40, dtype=np.int32).reshape(30, 40) % 97
    src = geotiff_zarr(tmp_path, a)
    pipeline.run(config(src, tmp_path / "v.tiff", size=[3, 5], boundary="valid", reduce="sum"))
    got, profile, _, _ = read(tmp_path / "v.tiff")
    check(got, brute_window(a, [3, 5], "sum", boundary="valid"))
    assert profile["transform"] == TRANSFORM @ Affine.translation(2, 1)


def test_cog_resumes_from_its_blocks(tmp_path):
    a = np.random.default_rng(5).integers(0, 50, (48, 48)).astype(np.int16)
    src = geotiff_zarr(tmp_path, a)
    cfg = config(src, tmp_path / "r.tif", reduce="sum")
    cfg["compute"]["scheduler"] = "synchronous"

    def stop(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runconfig.run(cfg, progress=stop)
    assert not (tmp_path / "r.tif").exists()
    res = pipeline.run(cfg)
    assert res.status == "done" and res.skipped >= 2 and res.computed == res.blocks - res.skipped
    check(read(tmp_path / "r.tif")[0], brute_window(a, 3, "sum"))


def test_format_cog_names_the_format_and_3d_is_refused(tmp_path):
    a = np.arange(20 * 20, dtype=np.uint8).reshape(20, 20)
    src = geotiff_zarr(tmp_path, a)
    cfg = config(src, tmp_path / "out.cog", reduce="min")
    cfg["output"]["format"] = "cog"
    pipeline.run(cfg)
    check(read(tmp_path / "out.cog")[0], brute_window(a, 3, "min"))
    with pytest.raises(OutputError, match="local path only"):
        pipeline.run({**cfg, "output": {"path": "s3://bucket/out.tif"}})


def test_cog_is_made_chunk_by_chunk(tmp_path):
    """Making the COG holds one chunk at a time in Python (GDAL's own cache is bounded by
    GDAL_CACHEMAX): the traced peak stays far below the 32 MiB image."""
    from pipeline.storage.targets.cog import write_cog

    group = zarr.open_group(tmp_path / "g.zarr", mode="w")
    arr = group.create_array("big", shape=(2048, 4096), chunks=(256, 256), dtype="float32", fill_value=np.nan,
                             attributes={"pipeline": {"complete": True}})
    values = np.random.default_rng(6).random((2048, 4096), dtype=np.float32)
    for r in range(0, 2048, 256):
        arr[r : r + 256] = values[r : r + 256]
    del values
    tracemalloc.start()
    write_cog(arr, group, tmp_path / "big.tif")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 * 2**20, peak  # the image is 32 MiB; a chunk is 256 KiB
    with rasterio.open(tmp_path / "big.tif") as ds:
        assert ds.read(1, window=((1000, 1010), (3000, 3010))).tolist() == arr[1000:1010, 3000:3010].tolist()
