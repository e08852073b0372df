"""The OME-Zarr pyramid of a Zarr output (``output.multiscale: true``, issue 24): each level
against a pixel-by-pixel Python reference of the documented 2x2 rule, the NGFF 0.5 metadata
validated by ``ome-zarr-models``, the output still opened by xarray with its CRS, a replacement
keeping the new pyramid's metadata, and levels made chunk by chunk."""

from __future__ import annotations

import math
import tracemalloc
import warnings

import numpy as np
import pytest
import zarr

import pipeline
from pipeline.errors import ConfigError
from pipeline.storage import pyramid


def reference_level(a: np.ndarray, stat: str, fill) -> np.ndarray:
    """The next level of ``a`` by looping over its 2x2 blocks in Python: the valid values (not
    NaN, not ``fill``) of each block, reduced as docs/microscopy.md says; None: no valid value."""
    rows, cols = -(-a.shape[0] // 2), -(-a.shape[1] // 2)
    out = np.empty((rows, cols), dtype=object)
    for i in range(rows):
        for j in range(cols):
            vals = [a[r, c].item() for r in (2 * i, 2 * i + 1) for c in (2 * j, 2 * j + 1) if r < a.shape[0] and c < a.shape[1]]
            vals = [v for v in vals if not (isinstance(v, float) and math.isnan(v)) and v != fill]
            if not vals:
                out[i, j] = None
            elif stat in ("sum", "count"):
                out[i, j] = math.fsum(vals) if isinstance(vals[0], float) else sum(vals)
            elif stat in ("min", "max"):
                out[i, j] = min(vals) if stat == "min" else max(vals)
            elif stat == "std":
                out[i, j] = math.sqrt(math.fsum(v * v for v in vals) / len(vals))
            else:
                out[i, j] = math.fsum(vals) / len(vals)
    return out


def same(got: np.ndarray, ref: np.ndarray, fill) -> None:
    for (i, j), r in np.ndenumerate(ref):
        g = got[i, j].item()
        if r is None:
            assert (math.isnan(g) if isinstance(g, float) else g == fill), (i, j, g)
        elif isinstance(r, int):
            assert g == r, (i, j, g, r)
        else:
            assert math.isclose(g, r, rel_tol=1e-12, abs_tol=1e-12), (i, j, g, r)


@pytest.mark.parametrize("shape", [(9, 7), (8, 8), (1, 5)])
def test_downsample_matches_the_python_reference(shape):
    rng = np.random.default_rng(sum(shape))
    f = rng.normal(size=shape) * 100
    f[rng.random(shape) < 0.3] = np.nan
    i = rng.integers(-1000, 1000, shape).astype(np.int32)
    i[rng.random(shape) < 0.3] = -(2**31)
    for stat, rule in pyramid.RULES.items():
        same(pyramid.downsample(f, rule, None), reference_level(f, stat, None), None)
        fill = pyramid.level_dtype(i.dtype, rule, -(2**31))[1]
        got = pyramid.downsample(i, rule, -(2**31))
        if stat in ("min", "max", "sum", "count"):
            same(got, reference_level(i, stat, -(2**31)), fill)
    full = rng.integers(0, 2**31 - 1, shape).astype(np.int32)  # sums beyond int32: exact in int64
    assert pyramid.downsample(full, "sum", None).dtype == np.int64
    same(pyramid.downsample(full, "sum", None), reference_level(full, "sum", None), None)
    same(pyramid.downsample(full, "max", None), reference_level(full, "max", None), None)


def _config(tmp_path, a, **output):
    group = zarr.open_group(tmp_path / "in.zarr", mode="w")
    group.create_array("a", data=a, chunks=(32, 32), dimension_names=("y", "x"))
    return {
        "inputs": {"a": {"path": str(tmp_path / "in.zarr"), "array": "a"}},
        "op": "a",
        "window": {"size": 3, "reduce": ["mean", "max", "min", "sum", "count", "std"]},
        "output": {"path": str(tmp_path / "out.zarr"), "multiscale": True, **output},
        "compute": {"chunks": [16, 16]},
    }


def test_multiscale_levels_ngff_and_xarray(tmp_path):
    from ome_zarr_models.v05.image import Image

    a = np.random.default_rng(1).integers(0, 50, (100, 130)).astype(np.int16)
    pipeline.run(_config(tmp_path, a))
    group = zarr.open_group(tmp_path / "out.zarr", mode="r")
    image = Image.from_zarr(group)  # the NGFF 0.5 models: metadata and the arrays it names
    entries = {m.name: m for m in image.attributes.ome.multiscales}
    for st in ("mean", "max", "min", "sum", "count", "std"):
        name = f"result_{st}"
        paths = [d.path for d in entries[name].datasets]
        assert paths == [name] + [f"multiscale/{name}/{n}" for n in (1, 2, 3, 4)]  # 100x130, 50x65, 25x33, 13x17, 7x9 (fits 16x16)
        level = group[name][...]  # no nodata, boundary shrink: no empty window, no fill value
        for n, p in enumerate(paths[1:], start=1):
            arr = group[p]
            assert arr.shape == tuple(-(-s // 2**n) for s in a.shape)
            same(arr[...], reference_level(level, st, None), None)
            level = arr[...]
        scales = [d.coordinateTransformations[0].scale for d in entries[name].datasets]
        assert scales == [[1.0, 1.0], [2.0, 2.0], [4.0, 4.0], [8.0, 8.0], [16.0, 16.0]]
    assert group["multiscale/result_sum/1"].dtype == np.int64
    import xarray as xr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_zarr(tmp_path / "out.zarr")  # the levels live in a subgroup: no dimension clash
    assert ds["result_max"].shape == a.shape


def test_replacement_keeps_the_new_pyramid_metadata(tmp_path):
    a = np.arange(40 * 40, dtype=np.int32).reshape(40, 40) % 13
    cfg = _config(tmp_path, a, multiscale=False)
    pipeline.run(cfg)
    assert "ome" not in zarr.open_group(tmp_path / "out.zarr", mode="r").attrs
    cfg["output"].update(multiscale=True, overwrite=True)
    cfg["window"]["size"] = 5
    pipeline.run(cfg)
    group = zarr.open_group(tmp_path / "out.zarr", mode="r")
    assert len(group.attrs["ome"]["multiscales"]) == 6  # failed before: the old group's attributes replaced the new ones
    same(group["multiscale/result_max/1"][...], reference_level(group["result_max"][...], "max", None), None)


def test_multiscale_is_for_zarr_outputs_of_two_or_more_axes(tmp_path):
    cfg = _config(tmp_path, np.zeros((8, 8), np.uint8), path=str(tmp_path / "o.tif"))
    with pytest.raises(ConfigError, match="multiscale"):
        pipeline.run(cfg)
    group = zarr.open_group(tmp_path / "line.zarr", mode="w")
    group.create_array("a", data=np.arange(50, dtype=np.int16), chunks=(8,), dimension_names=("x",))
    cfg = {"inputs": {"a": {"path": str(tmp_path / "line.zarr"), "array": "a"}}, "op": "a", "window": {"size": 3},
           "output": {"path": str(tmp_path / "o.zarr"), "multiscale": True}}
    with pytest.raises(ConfigError, match="two or more axes"):
        pipeline.run(cfg)
    assert not (tmp_path / "o.zarr").exists()  # refused before anything is written


def test_levels_are_made_chunk_by_chunk(tmp_path):
    group = zarr.open_group(tmp_path / "g.zarr", mode="w")
    base = group.create_array("big", shape=(2048, 4096), chunks=(256, 256), dtype="float32", fill_value=np.nan)
    for r in range(0, 2048, 256):
        base[r : r + 256] = np.random.default_rng(r).random((256, 4096), dtype=np.float32)
    tracemalloc.start()
    pyramid.build(str(tmp_path / "g.zarr"), {"big": ("mean", None)})
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 * 2**20, peak  # the image is 32 MiB, a chunk 256 KiB
    lvl = zarr.open_group(tmp_path / "g.zarr", mode="r")["multiscale/big/1"]
    np.testing.assert_allclose(lvl[100, 200], base[200:202, 400:402].astype(np.float64).mean(), rtol=1e-6)
