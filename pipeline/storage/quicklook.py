"""A quicklook PNG of any output (``pipeline preview OUT --png FILE``; needs the ``preview`` extra,
Pillow; a GeoTIFF output also needs rasterio).

What is read: the output array (the one named, else the only output array, else the first), or
for a GeoTIFF its first band, shrunk so that its longest side is at most ``max_side`` pixels:
from the coarsest level of its OME-Zarr pyramid (:mod:`pipeline.storage.pyramid`) whose longest
side still reaches that size, else by a strided read, one chunk at a time (a GeoTIFF: GDAL's
decimated read, from its overviews).  Memory: the quicklook and one chunk, never the image.
Arrays of more than two axes show their first plane.

How it looks: a 2-98 percentile stretch of the valid pixels; a result with negative and positive
values in a diverging blue-white-red map centred on 0 (its stretch symmetric), else grey; NaN and
the fill value transparent.  A georeferenced output (a ``GeoTransform``, or a GeoTIFF's
transform) gets a world file beside the PNG (``.pgw``: the quicklook's pixel size and the centre
of its first pixel).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from pipeline.errors import InputError, OutputError
from pipeline.storage.stores import local_path, store_args

#: the default longest side of a quicklook, in pixels
MAX_SIDE = 2048


def preview(path: str, png: str, *, array: str | None = None, max_side: int = MAX_SIDE, storage_options: Mapping[str, Any] | None = None) -> tuple[int, int]:
    """Write the quicklook of output ``path`` to ``png`` (and a ``.pgw`` when georeferenced);
    returns its (rows, cols)."""
    try:
        from PIL import Image
    except ImportError:
        raise OutputError("pipeline preview needs Pillow: pip install 'pipeline[preview]'", where="--png") from None
    if path.lower().endswith((".tif", ".tiff")):
        values, fill, world = _read_geotiff(path, max_side)
    else:
        values, fill, world = _read_zarr(path, array, max_side, storage_options)
    rgba = colourise(values, fill)
    try:
        Image.fromarray(rgba, mode="RGBA").save(png, format="PNG")
    except OSError as e:
        raise OutputError(f"cannot write {png}: {e}", where="--png") from None
    if world is not None:
        Path(png).with_suffix(".pgw").write_text("".join(f"{v!r}\n" for v in world))
    return values.shape[0], values.shape[1]


def colourise(values: np.ndarray, fill: Any) -> np.ndarray:
    """RGBA (uint8) of a 2-D array: the stretch and colour map of the module's docstring."""
    v = values.astype(np.float32, copy=False)
    valid = np.isfinite(v) if fill is None else np.isfinite(v) & (values != fill)
    rgba = np.zeros(v.shape + (4,), np.uint8)
    if not valid.any():
        return rgba
    lo, hi = (float(x) for x in np.percentile(v[valid], [2, 98]))
    signed = float(np.min(v[valid])) < 0 < float(np.max(v[valid]))
    if signed:
        lo, hi = -max(abs(lo), abs(hi)), max(abs(lo), abs(hi))
    t = np.where(valid, np.clip((v - lo) / ((hi - lo) or 1.0), 0.0, 1.0), 0.0)  # missing pixels: transparent, never cast from NaN
    if signed:  # blue (0, 0, 255) through white at 0 to red (255, 0, 0)
        rgba[..., 0] = np.where(t < 0.5, 2 * t * 255, 255).astype(np.uint8)
        rgba[..., 1] = (np.where(t < 0.5, 2 * t, 2 * (1 - t)) * 255).astype(np.uint8)
        rgba[..., 2] = np.where(t < 0.5, 255, 2 * (1 - t) * 255).astype(np.uint8)
    else:
        rgba[..., :3] = (t * 255 + 0.5).astype(np.uint8)[..., None]
    rgba[..., 3] = np.where(valid, 255, 0)
    return rgba


def _read_zarr(path: str, array: str | None, max_side: int, storage_options: Mapping[str, Any] | None) -> tuple[np.ndarray, Any, list[float] | None]:
    """(values, fill value or None, world file) of a Zarr output's quicklook."""
    try:
        group = zarr.open_group(**store_args(path, storage_options), mode="r")
    except Exception as e:  # noqa: BLE001 - reported as the input it is
        raise InputError(f"cannot open Zarr store {path}: {e}", where=path) from None
    name = _pick(group, path, array)
    level, arr = _level(group, name, max_side)
    base: Any = group[name]
    step = max(1, math.ceil(max(arr.shape[-2:]) / max_side))
    lead = (0,) * (arr.ndim - 2)
    rows, cols = (-(-n // step) for n in arr.shape[-2:])
    out = np.empty((rows, cols), arr.dtype)
    ch_r, ch_c = arr.chunks[-2:]
    for r0 in range(0, arr.shape[-2], ch_r):
        for c0 in range(0, arr.shape[-1], ch_c):
            rs, cs = -(-r0 // step) * step, -(-c0 // step) * step  # the first sampled row/column in the chunk
            block = np.asarray(arr[lead + (slice(rs, r0 + ch_r, step), slice(cs, c0 + ch_c, step))])
            out[rs // step : rs // step + block.shape[0], cs // step : cs // step + block.shape[1]] = block
    declared = out.dtype.kind in "iu" and "_FillValue" in base.attrs  # integers: empty windows hold the fill value
    return out, arr.fill_value.item() if declared else None, _world(group, base, 2**level, step)


def _pick(group: zarr.Group, path: str, array: str | None) -> str:
    arrays = {n: a for n, a in group.arrays() if a.ndim >= 2}
    if array is not None:
        if array not in arrays:
            raise InputError(f"{path} has no 2-D array {array!r} (it has: {', '.join(sorted(arrays)) or 'none'})", where="--array")
        return array
    outputs = sorted(n for n, a in arrays.items() if isinstance(a.attrs.get("pipeline"), Mapping))
    if not (outputs or arrays):
        raise InputError(f"{path} holds no array of two or more axes to preview", where=path)
    return (outputs or sorted(arrays))[0]


def _level(group: zarr.Group, name: str, max_side: int) -> tuple[int, zarr.Array]:
    """The coarsest pyramid level of ``name`` whose longest side is at least ``max_side`` (or
    the full image's, if smaller), and its number; level 0 without a pyramid."""
    ome: Any = group.attrs.get("ome") or {}
    entries = [m for m in ome.get("multiscales", []) if m.get("name") == name]
    base: Any = group[name]
    want = min(max_side, max(base.shape[-2:]))
    best: tuple[int, zarr.Array] = (0, base)
    for n, ds in enumerate(entries[0]["datasets"] if entries else []):
        node = group.get(ds["path"])
        if isinstance(node, zarr.Array) and max(node.shape[-2:]) >= want:
            best = (n, node)
    return best


def _world(group: zarr.Group, base: zarr.Array, scale: int, step: int) -> list[float] | None:
    """The world-file lines of a quicklook pixel ``scale * step`` output pixels wide, its first
    pixel centred on level ``log2(scale)``'s first pixel, from the grid mapping's GeoTransform."""
    name = base.attrs.get("grid_mapping")
    gm: Any = group.get(name) if isinstance(name, str) else None
    try:
        c, a, b, f, d, e = (float(v) for v in str(gm.attrs["GeoTransform"]).split())
    except (AttributeError, KeyError, ValueError):
        return None
    return world_lines((c, a, b, f, d, e), scale, step)


def world_lines(gt: tuple[float, ...], scale: int, step: int) -> list[float]:
    """A world file (A, D, B, E, C, F) from a GDAL GeoTransform ``gt`` for quicklook pixels of
    ``scale * step`` source pixels whose first is centred ``(scale - 1) / 2 + 0.5`` pixels in."""
    c, a, b, f, d, e = gt
    k, centre = scale * step, (scale - 1) / 2 + 0.5
    return [a * k, d * k, b * k, e * k, c + a * centre + b * centre, f + d * centre + e * centre]


def _read_geotiff(path: str, max_side: int) -> tuple[np.ndarray, Any, list[float] | None]:
    """(values, nodata, world file) of a GeoTIFF's first band, by GDAL's decimated read."""
    try:
        import rasterio
    except ImportError:
        raise InputError("previewing a GeoTIFF needs rasterio: pip install 'pipeline[geotiff]'", where=path) from None
    try:
        ds = rasterio.open(local_path(path))
    except Exception as e:  # noqa: BLE001 - reported as the input it is
        raise InputError(f"cannot open {path} as a GeoTIFF: {e}", where=path) from None
    with ds:
        step = max(1, math.ceil(max(ds.height, ds.width) / max_side))
        values = ds.read(1, out_shape=(-(-ds.height // step), -(-ds.width // step)))
        fill = None if ds.nodata is None or math.isnan(ds.nodata) else ds.nodata
        world = world_lines(ds.transform.to_gdal(), step, 1) if not ds.transform.is_identity else None
    return values, fill, world
