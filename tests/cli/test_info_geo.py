"""``pipeline info`` shows the CRS as EPSG, the bounds and the resolution of a georeferenced
Zarr array and of a COG output (issue 24); the references are rasterio's and pyproj's."""

from __future__ import annotations

import re

import numpy as np
import pytest
from typer.testing import CliRunner

import pipeline
from pipeline.cli.main import app
from pipeline.storage import io

rasterio = pytest.importorskip("rasterio")
pyproj = pytest.importorskip("pyproj")
from rasterio.transform import from_origin  # noqa: E402

cli = CliRunner()


def _numbers(text):
    return tuple(float(v) for v in re.findall(r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?", text))


def test_info_shows_epsg_bounds_and_resolution_of_zarr_and_cog(tmp_path):
    import rioxarray

    a = np.arange(30 * 40, dtype=np.uint16).reshape(30, 40)
    with rasterio.open(tmp_path / "band.tif", "w", driver="GTiff", width=40, height=30, count=1, dtype="uint16",
                       crs="EPSG:32633", transform=from_origin(500000.0, 4600000.0, 30.0, 20.0)) as ds:
        ds.write(a, 1)
    src = str(tmp_path / "band.zarr")
    rioxarray.open_rasterio(tmp_path / "band.tif").squeeze("band", drop=True).to_dataset(name="band").to_zarr(src, zarr_format=3)
    with rasterio.open(tmp_path / "band.tif") as ds:
        bounds, res = tuple(ds.bounds), ds.res
    out = cli.invoke(app, ["info", src])
    assert out.exit_code == 0, out.output
    line = next(ln for ln in out.output.splitlines() if "crs" in ln and "attr" not in ln)
    assert line.split()[1] == "EPSG:32633"
    assert _numbers(line.partition("bounds")[2].partition("resolution")[0]) == bounds
    assert _numbers(line.partition("resolution")[2]) == res
    pipeline.run({"inputs": {"a": {"path": src, "array": "band"}}, "op": "a", "window": {"size": 3}, "output": {"path": str(tmp_path / "o.tif")}})
    out = cli.invoke(app, ["info", str(tmp_path / "o.tif")])
    assert out.exit_code == 0, out.output
    assert "COG layout" in out.output and "status complete" in out.output
    line = next(ln for ln in out.output.splitlines() if ln.strip().startswith("crs"))
    assert line.split()[1] == "EPSG:32633"
    assert _numbers(line.partition("bounds")[2].partition("resolution")[0]) == bounds
    assert _numbers(line.partition("resolution")[2]) == res


@pytest.mark.parametrize("code", [4326, 32633, 3857, 2154])
@pytest.mark.parametrize("version", ["WKT1_GDAL", "WKT2_2019"])
def test_epsg_of_wkt_agrees_with_pyproj(code, version):
    crs = pyproj.CRS.from_epsg(code)
    assert io.epsg(crs.to_wkt(version)) == f"EPSG:{crs.to_epsg()}"


def test_epsg_of_a_crs_without_code_is_none():
    wkt = pyproj.CRS.from_proj4("+proj=tmerc +lat_0=0 +lon_0=13.3 +k=1 +x_0=0 +y_0=0 +ellps=GRS80 +units=m").to_wkt()
    assert io.epsg(wkt) is None and pyproj.CRS.from_wkt(wkt).to_epsg() is None


def test_info_of_a_missing_geotiff_is_a_user_error(tmp_path):
    out = cli.invoke(app, ["info", str(tmp_path / "nope.tif")])
    assert out.exit_code == 2 and "nope.tif" in out.output
