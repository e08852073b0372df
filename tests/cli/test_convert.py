"""``pipeline convert``: GeoTIFF (real imagery, data/landsat_rgb.tif), TIFF and PNG to Zarr v3,
read back with rioxarray, tifffile, imageio and zarr and compared with the file as those read it."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.storage import convert as conv

rasterio = pytest.importorskip("rasterio")
TIF = Path(__file__).resolve().parents[2] / "data" / "landsat_rgb.tif"
runner = CliRunner()


def _landsat():
    with rasterio.open(TIF) as ds:
        return ds.read(), ds.crs, ds.transform


def _convert(*args: str) -> None:
    res = runner.invoke(app, ["convert", *args])
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output


def test_geotiff_to_zarr_keeps_values_dims_crs_transform_and_nodata(tmp_path):
    xr = pytest.importorskip("xarray")
    pytest.importorskip("rioxarray")
    data, crs, transform = _landsat()
    _convert(str(TIF), str(tmp_path / "scene.zarr"))
    raw = zarr.open_array(tmp_path / "scene.zarr", path="data", mode="r")
    assert tuple(raw.metadata.dimension_names) == ("band", "y", "x") and raw.dtype == np.uint8
    np.testing.assert_array_equal(raw[...], data)
    assert raw.chunks[0] == 3 and all(c % 128 == 0 or c == n for c, n in zip(raw.chunks[1:], raw.shape[1:]))
    da = xr.open_zarr(tmp_path / "scene.zarr", decode_coords="all")["data"]
    assert da.rio.crs == crs and da.rio.transform() == transform and da.rio.encoded_nodata == 0
    # the pipeline reads the converted store like the GeoTIFF: same grid, same nodata
    from pipeline.runner.prepare import prepare

    prep = prepare({"inputs": {"a": {"path": str(tmp_path / "scene.zarr"), "array": "data"}}, "op": "a", "window": {"size": 3},
                    "output": {"path": str(tmp_path / "out.zarr")}})
    assert prep.specs["a"].dims == ("band", "y", "x") and prep.plan.nodata["a"] == 0


def test_a_large_geotiff_is_copied_chunk_by_chunk_in_bounded_memory(tmp_path):
    data, crs, transform = _landsat()
    big = np.tile(data[0], (16, 24))  # 4096 x 7680 uint8: 30 MiB, 30 chunks of 1 MiB
    path = tmp_path / "big.tif"
    with rasterio.open(path, "w", driver="GTiff", width=big.shape[1], height=big.shape[0], count=1, dtype="uint8", crs=crs,
                       transform=transform, tiled=True, blockxsize=256, blockysize=256) as dst:
        dst.write(big, 1)
    tracemalloc.start()
    try:
        conv.convert(str(path), str(tmp_path / "big.zarr"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    arr = zarr.open_array(tmp_path / "big.zarr", path="data", mode="r")
    assert arr.chunks == (1024, 1024)  # 4 x 4 tiles: 1 MiB
    np.testing.assert_array_equal(arr[...], big)
    assert peak < big.nbytes / 4, peak  # a few chunks in flight (4 MiB measured), not the image


def test_plain_tiff_through_tifffile_names_its_axes(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    data, *_ = _landsat()
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, data.astype(np.uint16) * 200, tile=(64, 64), metadata={"axes": "CYX"}, photometric="minisblack")
    _convert(str(path), str(tmp_path / "stack.zarr"), "--array", "img")
    arr = zarr.open_array(tmp_path / "stack.zarr", path="img", mode="r")
    assert tuple(arr.metadata.dimension_names) == ("c", "y", "x") and arr.chunks[1:] == (256, 320)
    np.testing.assert_array_equal(arr[...], tifffile.imread(path))


def test_png_to_zarr(tmp_path):
    iio = pytest.importorskip("imageio.v3")
    pil = pytest.importorskip("PIL.Image")
    data, *_ = _landsat()
    path = tmp_path / "rgb.png"
    pil.fromarray(np.moveaxis(data, 0, -1)).save(path)
    _convert(str(path), str(tmp_path / "rgb.zarr"))
    arr = zarr.open_array(tmp_path / "rgb.zarr", path="data", mode="r")
    assert tuple(arr.metadata.dimension_names) == ("y", "x", "c")
    np.testing.assert_array_equal(arr[...], iio.imread(path))


def test_chunks_follow_strips_and_tiles_within_bounds():
    strips = conv.choose_chunks((30000, 10000), (8, 10000), 2, (0, 1))  # 8-row strips of 20 kB
    assert strips[1] == 10000 and strips[0] % 8 == 0 and conv.LOW <= strips[0] * 10000 * 2 <= conv.HIGH
    assert conv.choose_chunks((3, 5000, 5000), (3, 512, 512), 1, (1, 2)) == (3, 1024, 512)  # 768 KiB -> 1.5 MiB, rows first on a tie
    assert conv.choose_chunks((100, 120), (32, 32), 8, (0, 1)) == (100, 120)  # the whole small image
    assert conv.choose_chunks((9000, 9000), (4096, 4096), 4, (0, 1)) == (4096, 4096)  # a big tile stays whole


@pytest.mark.parametrize(
    ("args", "message"),
    [(["missing.tif"], "IN: file .*missing.tif does not exist"), (["notes.txt"], "not a GeoTIFF, TIFF or PNG"), ([str(TIF)], "OUT: .* exists; pass --overwrite")],
)
def test_user_errors_are_one_line_and_exit_2(tmp_path, args, message):
    import re

    (tmp_path / "notes.txt").write_text("hello")
    if "exists" in message:
        (tmp_path / "out.zarr").mkdir()
    src = args[0] if Path(args[0]).is_absolute() else str(tmp_path / args[0])
    res = runner.invoke(app, ["convert", src, str(tmp_path / "out.zarr")])
    assert res.exit_code == 2, res.output
    assert re.search(message, res.output) and len(res.output.strip().splitlines()) == 1, res.output
