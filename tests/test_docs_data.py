"""The README's "Getting your data into Zarr" snippets, run as written on small files of each
kind; the stores they make are then run through `pipeline` and checked against numpy."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr
from reference import brute_window, check

import pipeline

DOC = Path(__file__).resolve().parent.parent / "docs" / "data.md"


def _snippets() -> list[str]:
    section = DOC.read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_has_the_four_sources():
    found = _snippets()
    assert len(found) == 4
    for needle in ("rioxarray.open_rasterio", "tifffile.imread", "iio.imread", "np.load", "xr.open_dataset"):
        assert any(needle in s for s in found), needle


def _inputs(tmp_path: Path) -> dict[str, np.ndarray]:
    """red.tif (a GeoTIFF, EPSG:4326, nodata 255), scan.tif, photo.png, dem.npy, t2m.nc."""
    rasterio = pytest.importorskip("rasterio")
    pytest.importorskip("rioxarray")
    tifffile = pytest.importorskip("tifffile")
    iio = pytest.importorskip("imageio.v3")
    import xarray as xr
    from rasterio.transform import from_origin

    rng = np.random.default_rng(8)
    red = rng.integers(0, 250, (12, 17)).astype(np.uint8)
    red[2:5, 3] = 255
    with rasterio.open(
        tmp_path / "red.tif", "w", driver="GTiff", height=12, width=17, count=1, dtype="uint8",
        crs="EPSG:4326", transform=from_origin(10, 50, 0.1, 0.1), nodata=255,
    ) as f:
        f.write(red, 1)
    scan = rng.integers(0, 4096, (9, 8)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "scan.tif", scan)
    photo = rng.integers(0, 256, (7, 10, 3)).astype(np.uint8)
    iio.imwrite(tmp_path / "photo.png", photo)
    dem = rng.integers(-50, 3000, (11, 6)).astype(np.int16)
    dem[0, :2] = -9999
    np.save(tmp_path / "dem.npy", dem)
    t2m = rng.normal(280, 5, (3, 8, 9))
    xr.Dataset(
        {"t2m": (("time", "lat", "lon"), t2m)},
        coords={"lat": np.linspace(40, 47, 8), "lon": np.linspace(0, 8, 9)},
    ).to_netcdf(tmp_path / "t2m.nc", engine="scipy")
    return {"red": red, "scan": scan, "photo": photo, "dem": dem, "t2m": t2m}


def test_readme_snippets_make_stores_pipeline_reads(tmp_path):
    data = _inputs(tmp_path)
    for code in _snippets():
        proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (code, proc.stderr)

    def run(path, array, op="a", **window):
        cfg = {
            "inputs": {"a": {"path": str(tmp_path / path), "array": array}},
            "op": op,
            "window": {"size": 3, **window},
            "output": {"path": str(tmp_path / "out.zarr"), "overwrite": True},
        }
        res = pipeline.run(cfg)
        return zarr.open_group(tmp_path / "out.zarr", mode="r")["result"], res

    # GeoTIFF: nodata 255 from the file, skipped; the CRS reaches the output
    out, _ = run("red.zarr", "red", reduce="max")
    red = data["red"]
    check(out[...], brute_window(red.astype(object), 3, "max", missing=red == 255), fill=out.fill_value)
    import xarray as xr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert xr.open_zarr(tmp_path / "out.zarr")["result"].rio.crs.to_epsg() == 4326
    # TIFF, PNG: windows over rows and columns (the PNG's channels kept apart)
    out, _ = run("images.zarr", "scan")
    check(out[...], brute_window(data["scan"].astype(object), 3, "sum"))
    out, _ = run("images.zarr", "photo", reduce="min")
    check(out[...], brute_window(data["photo"].astype(object), 3, "min", axes=(0, 1)))
    # numpy: nodata from the attribute
    out, _ = run("dem.zarr", "dem", reduce="mean")
    dem = data["dem"]
    check(out[...], brute_window(dem.astype(np.float64), 3, "mean", missing=dem == -9999))
    # xarray: (time, lat, lon), the window over lat/lon
    out, _ = run("t2m.zarr", "t2m", reduce="mean")
    check(out[...], brute_window(data["t2m"], 3, "mean", axes=(1, 2)))
