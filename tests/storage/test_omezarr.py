"""OME-Zarr (NGFF 0.4 and 0.5) multiscale inputs: axes from the metadata, level 0 by default,
``level`` by index or path, ``array`` naming a level; on real imagery (a crop of
data/landsat_rgb.tif as a (c, y, x) image)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from numpy.lib.stride_tricks import sliding_window_view

from pipeline.errors import InputError
from pipeline.runner import runconfig
from pipeline.storage import sources

TIF = Path(__file__).resolve().parents[2] / "data" / "landsat_rgb.tif"


def _image() -> np.ndarray:
    rasterio = pytest.importorskip("rasterio")
    with rasterio.open(TIF) as ds:
        return ds.read()[:, 64:128, 160:240]  # (c, y, x), 3 x 64 x 80


def _multiscales(version: str) -> dict:
    axes = [{"name": "c", "type": "channel"}, {"name": "y", "type": "space", "unit": "meter"}, {"name": "x", "type": "space", "unit": "meter"}]
    datasets = [
        {"path": p, "coordinateTransformations": [{"type": "scale", "scale": [1.0, s, s]}]} for p, s in (("s0", 1.0), ("s1", 2.0))
    ]
    ms = {"name": "rgb", "axes": axes, "datasets": datasets}
    return {"ome": {"version": "0.5", "multiscales": [ms]}} if version == "0.5" else {"multiscales": [{"version": "0.4", **ms}]}


def _ome_zarr(root: Path, version: str) -> tuple[str, dict[str, np.ndarray]]:
    """An NGFF image group ``image`` with levels s0 (full) and s1 (every second pixel); its arrays
    have no dimension names of their own (only the NGFF axes name them)."""
    img = _image()
    levels = {"s0": img, "s1": img[:, ::2, ::2]}
    fmt = 3 if version == "0.5" else 2
    store = zarr.open_group(root / f"ome{version}.zarr", mode="w", zarr_format=fmt)
    group = store.create_group("image", attributes=_multiscales(version))
    for name, data in levels.items():
        group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=(1, 32, 32))[...] = data
    return str(root / f"ome{version}.zarr"), levels


def _sums(x: np.ndarray, w: int) -> np.ndarray:
    return sliding_window_view(x.astype(np.int64), (w, w), axis=(-2, -1)).sum(axis=(-2, -1))


def _run(tmp_path: Path, inp: dict) -> np.ndarray:
    out = tmp_path / "out.zarr"
    cfg = {"inputs": {"a": inp}, "op": "a", "window": {"size": 3, "boundary": "valid"}, "output": {"path": str(out), "overwrite": True}}
    runconfig.run(cfg)
    arr = zarr.open_array(out, path="result", mode="r")
    assert tuple(arr.metadata.dimension_names) == ("c", "y", "x")
    return arr[...]


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ngff_axes_name_the_dimensions_and_level_0_is_read(tmp_path, version):
    path, levels = _ome_zarr(tmp_path, version)
    src = sources.open_source(path, "image", where="inputs.a")
    assert (src.dims, src.shape) == (("c", "y", "x"), (3, 64, 80))
    np.testing.assert_array_equal(_run(tmp_path, {"path": path, "array": "image"}), _sums(levels["s0"], 3))


@pytest.mark.parametrize("level", [1, "s1"])
def test_a_level_is_named_by_index_or_path_or_by_array(tmp_path, level):
    path, levels = _ome_zarr(tmp_path, "0.5")
    np.testing.assert_array_equal(_run(tmp_path, {"path": path, "array": "image", "level": level}), _sums(levels["s1"], 3))
    np.testing.assert_array_equal(_run(tmp_path, {"path": path, "array": "image/s1"}), _sums(levels["s1"], 3))


def test_a_missing_level_and_a_level_without_multiscales_are_user_errors(tmp_path):
    path, _ = _ome_zarr(tmp_path, "0.4")
    with pytest.raises(InputError, match=r"inputs\.a\.level: no level 2 in this multiscale image \(levels 0 to 1: paths s0, s1\)"):
        sources.open_source(path, "image", where="inputs.a", level=2)
    with pytest.raises(InputError, match=r"inputs\.a\.level: 'level' applies to multiscale \(OME-Zarr\) images"):
        sources.open_source(path, "image/s0", where="inputs.a", level=0)
    with pytest.raises(InputError, match=r"inputs\.a\.band: 'band' applies to GeoTIFF inputs"):
        sources.open_source(path, "image", where="inputs.a", band=1)
