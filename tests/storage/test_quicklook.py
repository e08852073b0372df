"""``pipeline preview`` (issue 24): the quicklook's stretch against scipy's percentiles, the
diverging map of signed results, NaN and fill transparent, the pyramid level read, the world
file against rasterio's transform, and a 16384² result previewed within a memory bound."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

import pipeline
from pipeline.cli.main import app
from pipeline.storage import quicklook

Image = pytest.importorskip("PIL.Image")
cli = CliRunner()


def _png(path):
    return np.asarray(Image.open(path).convert("RGBA"))


def _store(tmp_path, a, *, chunks=(16, 16), attrs=None, fill_value=None):
    group = zarr.open_group(tmp_path / "s.zarr", mode="w")
    group.create_array("result", data=a, chunks=chunks, dimension_names=("y", "x"), attributes=attrs or {"pipeline": {}}, fill_value=fill_value)
    return str(tmp_path / "s.zarr")


def test_grey_stretch_and_nan_transparent(tmp_path):
    from scipy.stats import scoreatpercentile

    a = np.random.default_rng(0).gamma(2.0, 10.0, (60, 50))
    a[7, 9] = np.nan
    res = cli.invoke(app, ["preview", _store(tmp_path, a), "--png", str(tmp_path / "q.png")])
    assert res.exit_code == 0, res.output
    got = _png(tmp_path / "q.png")
    valid = a[~np.isnan(a)]
    lo, hi = scoreatpercentile(valid, 2), scoreatpercentile(valid, 98)
    want = np.round(np.clip((a - lo) / (hi - lo), 0, 1) * 255)
    ok = ~np.isnan(a)
    assert np.abs(got[..., 0][ok].astype(int) - want[ok]).max() <= 1
    assert (got[..., 0] == got[..., 2]).all() and got[7, 9, 3] == 0 and (got[..., 3][ok] == 255).all()
    assert not (tmp_path / "q.pgw").exists()  # not georeferenced


def test_signed_results_diverge_around_zero(tmp_path):
    a = np.tile(np.linspace(-50.0, 100.0, 151), (4, 1))  # 0 at column 50
    quicklook.preview(_store(tmp_path, a), str(tmp_path / "q.png"))
    got = _png(tmp_path / "q.png")
    assert tuple(got[0, 50, :3]) == (255, 255, 255)  # white at 0
    assert tuple(got[0, -1, :3]) == (255, 0, 0) and got[0, 0, 2] == 255 and got[0, 0, 0] < 255  # red high, blue low
    assert got[0, 0, 0] > 0  # the stretch is symmetric: -50 is halfway to the deepest blue


def test_integer_fill_is_transparent(tmp_path):
    a = np.ones((20, 20), np.uint8)
    a[5:8, 5:8] = 0
    group = zarr.open_group(tmp_path / "in.zarr", mode="w")
    group.create_array("a", data=a, chunks=(8, 8), dimension_names=("y", "x"))
    pipeline.run({"inputs": {"a": {"path": str(tmp_path / "in.zarr"), "array": "a", "nodata": 0}}, "op": "a",
                  "window": {"size": 3, "reduce": "sum"}, "output": {"path": str(tmp_path / "o.zarr")}})
    quicklook.preview(str(tmp_path / "o.zarr"), str(tmp_path / "q.png"))
    alpha = _png(tmp_path / "q.png")[..., 3]
    assert alpha[6, 6] == 0 and (alpha == 0).sum() == 1  # the one window without a valid pixel


def test_pyramid_level_and_world_file(tmp_path):
    rasterio = pytest.importorskip("rasterio")
    pytest.importorskip("rioxarray")
    from rasterio.transform import from_origin

    a = np.random.default_rng(2).integers(0, 100, (300, 200)).astype(np.uint8)
    tif = tmp_path / "band.tif"
    transform = from_origin(1000.0, 2000.0, 2.0, 3.0)
    with rasterio.open(tif, "w", driver="GTiff", width=200, height=300, count=1, dtype="uint8", crs="EPSG:3857", transform=transform) as ds:
        ds.write(a, 1)
    import rioxarray

    rioxarray.open_rasterio(tif).squeeze("band", drop=True).to_dataset(name="a").to_zarr(tmp_path / "in.zarr", zarr_format=3)
    pipeline.run({"inputs": {"a": {"path": str(tmp_path / "in.zarr"), "array": "a"}}, "op": "a", "window": {"size": 3, "reduce": "max"},
                  "output": {"path": str(tmp_path / "o.zarr"), "multiscale": True}, "compute": {"chunks": [32, 32]}})
    rows, cols = quicklook.preview(str(tmp_path / "o.zarr"), str(tmp_path / "q.png"), max_side=75)
    # levels of 300, 150, 75, 38 rows: the coarsest with >= 75 is level 2 (75 x 50), read whole
    assert (rows, cols) == (75, 50)
    level = zarr.open_group(tmp_path / "o.zarr", mode="r")["multiscale/result/2"][...]
    assert ((_png(tmp_path / "q.png")[..., 0] > 0) == (level > np.percentile(level, 2))).mean() > 0.95
    world = [float(v) for v in (tmp_path / "q.pgw").read_text().split()]
    centre = transform * (2.0, 2.0)  # level-2 pixel (0, 0) covers input pixels 0..3: centred at 2.0
    np.testing.assert_allclose(world, [8.0, 0.0, 0.0, -12.0, centre[0], centre[1]])
    # a COG output: GDAL's decimated read, its world file from the COG's transform
    pipeline.run({"inputs": {"a": {"path": str(tmp_path / "in.zarr"), "array": "a"}}, "op": "a", "window": {"size": 3, "reduce": "max"},
                  "output": {"path": str(tmp_path / "o.tif")}})
    assert quicklook.preview(str(tmp_path / "o.tif"), str(tmp_path / "t.png"), max_side=100) == (100, 67)
    world = [float(v) for v in (tmp_path / "t.pgw").read_text().split()]
    np.testing.assert_allclose(world, [6.0, 0.0, 0.0, -9.0, *(transform * (1.5, 1.5))])


def test_gigapixel_preview_is_memory_bounded(tmp_path):
    """A 16384² int16 result (512 MiB in memory): the preview holds the 2048² quicklook and a
    chunk; the traced peak is measured and bounded (numpy and zarr buffers are traced)."""
    n, c = 16384, 2048
    group = zarr.open_group(tmp_path / "big.zarr", mode="w")
    arr = group.create_array("result", shape=(n, n), chunks=(c, c), dtype="int16", dimension_names=("y", "x"), attributes={"pipeline": {}})
    ramp = (np.arange(c, dtype=np.int16)[:, None] + np.arange(c, dtype=np.int16)[None, :]) % 1000
    for r in range(0, n, c):
        for k in range(0, n, c):
            arr[r : r + c, k : k + c] = ramp
    tracemalloc.start()
    t0 = time.perf_counter()
    rows, cols = quicklook.preview(str(tmp_path / "big.zarr"), str(tmp_path / "q.png"))
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert (rows, cols) == (2048, 2048)
    print(f"16384² preview: peak {peak / 2**20:.1f} MiB traced, {seconds:.1f} s")
    assert peak < 128 * 2**20, peak  # the image is 512 MiB; measured: 92 MiB (the 2048² quicklook, its stretch and RGBA)
    got = _png(tmp_path / "q.png")
    assert got[..., 3].all() and got[0, 0, 0] == 0  # ramp value 0 is below the 2nd percentile
