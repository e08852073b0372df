"""Store paths, the path checks around them, and the store listing of ``pipeline inspect``;
and, under their long-standing names, the Zarr output target's functions
(:mod:`pipeline.storage.targets.zarr`: creating the output arrays, coordinates and state,
consolidation) and Zarr's chunk keys and listings for resume and ``verify``
(:mod:`pipeline.storage.zarrchunks`).  Inputs are opened through :mod:`pipeline.storage.sources`; the run
reaches its output through :mod:`pipeline.storage.targets`.

A store is a local path or an fsspec URL (``s3://bucket/key.zarr``, ``gs://...``, ``file://...``)
with optional ``storage_options`` (endpoint, profile, anonymous access, ...); credentials come
from the usual environment variables and config files of the storage library.  Errors name the
store and array (``data/seed.zarr:a``) so that a user can act on them.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import zarr

from pipeline.errors import InputError, OutputError
from pipeline.plan import metadata
from pipeline.storage.stores import is_local, is_process_local, local_path, location, protocol, remote_exists, store_args
from pipeline.storage.targets.zarr import (
    COORD_MARK,
    check_coords,
    check_output_target,
    consolidated_state,
    create_output,
    default_compressors,
    finalize,
    open_output,
    output_exists,
    output_state,
    update_state,
    write_coords,
    write_scalars,
)
from pipeline.storage.zarrchunks import chunk_grid, chunk_key, read_chunk, stored_chunk_keys

__all__ = [  # re-exported: the rest of the package and the tests call them as io.<name>
    "COORD_MARK", "check_coords", "check_output_target", "chunk_grid", "chunk_key", "consolidated_state",
    "create_output", "default_compressors", "finalize", "is_local", "is_process_local", "local_path", "location",
    "open_output", "output_exists", "output_state", "protocol", "read_chunk", "remote_exists", "store_args",
    "stored_chunk_keys", "update_state", "write_coords", "write_scalars",
    "check_not_overlapping", "describe_store", "list_arrays",
]


def check_not_overlapping(output: str, inputs: Mapping[str, str], array: str | None = None) -> None:
    """Refuse an output store equal to, inside, or containing an input store, symlinks followed:
    the store path itself, and (when it exists) the output array's folder and its chunk folder,
    which a symlink could send into an input."""
    if not is_local(output):
        return
    root = Path(local_path(output))
    outs = [root.resolve()]
    if array:
        for sub in (root / array, root / array / "c"):
            if sub.is_symlink() or sub.exists():
                outs.append(sub.resolve())
    for key, path in inputs.items():
        if not is_local(path):
            continue
        src = Path(local_path(path)).resolve()
        for out in outs:
            if out == src or src in out.parents or out in src.parents:
                raise OutputError(
                    f"output store {output} overlaps input store {path} (symlinks followed); choose another output path",
                    where="output.path",
                )


def describe_store(path: str, storage_options: Mapping[str, Any] | None = None) -> str:
    """A human-readable listing of a store's arrays: shape, dtype, chunks, codecs, attributes."""
    import json

    from pipeline.storage.sources.zarr import check_zarr_path, dims_of

    if path.lower().endswith((".tif", ".tiff")):
        return describe_geotiff(path)
    if is_local(path):
        if not os.path.exists(local_path(path)):
            raise InputError(f"store {path} does not exist", where=path)
        check_zarr_path(path, path)
    elif not remote_exists(path, storage_options, path):
        raise InputError(f"store {path} does not exist", where=path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            node = zarr.open(**store_args(path, storage_options), mode="r", use_consolidated=False)
    except Exception as e:
        raise InputError(f"cannot open Zarr store: {e}", where=path) from None
    arrays = [("", node)] if isinstance(node, zarr.Array) else sorted(node.arrays(), key=lambda kv: kv[0])
    lines = [f"{path}: {'array' if isinstance(node, zarr.Array) else 'group'} ({len(arrays)} arrays)"]
    for name, arr in arrays:
        codecs = ", ".join(type(c).__name__ + _codec_args(c) for c in getattr(arr.metadata, "codecs", ()))
        lines.append(f"{name or '.'}:")
        lines.append(f"  shape {tuple(arr.shape)}  dtype {arr.dtype}  chunks {tuple(arr.chunks)}  fill_value {arr.fill_value}")
        dims = dims_of(arr)
        if dims:
            lines.append(f"  dims {dims}")
        geo = None if isinstance(node, zarr.Array) else georeferencing(node, arr)
        if geo:
            lines.append(f"  {geo}")
        state = arr.attrs.get("pipeline")
        if isinstance(state, Mapping) and "complete" in state:
            lines.append(
                "  status complete"
                if state["complete"]
                else "  status INCOMPLETE (a run was interrupted or verify found damage: rerun its config to finish)"
            )
        if codecs:
            lines.append(f"  codecs {codecs}")
        for key, value in dict(arr.attrs).items():
            text = json.dumps(value, default=str)
            decoded = metadata.declared_nodata({key: value}) if key == "_FillValue" and isinstance(value, str) else None
            if decoded is not None:  # xarray's base64 of a float fill value, shown as the number
                text = f"{json.dumps(decoded[0])} (stored as base64 {text})"
            if len(text) > 200:
                text = text[:197] + "..."
            lines.append(f"  attr {key} = {text}")
    return "\n".join(lines)


def georeferencing(group: zarr.Group, arr: zarr.Array) -> str | None:
    """``crs EPSG:<code>`` (or ``crs <name>`` without an EPSG code), ``bounds (left, bottom,
    right, top)`` and ``resolution (x, y)`` of a 2-D or larger array whose ``grid_mapping``
    variable holds a CRS (``crs_wkt``) and a GDAL ``GeoTransform``; None without one."""
    name = arr.attrs.get("grid_mapping")
    gm = group.get(name) if isinstance(name, str) else None
    if not isinstance(gm, zarr.Array) or arr.ndim < 2:
        return None
    parts = []
    wkt = gm.attrs.get("crs_wkt") or gm.attrs.get("spatial_ref")
    if isinstance(wkt, str):
        parts.append(f"crs {epsg(wkt) or wkt.partition('[')[2].partition(',')[0]}")
    try:
        c, a, b, f, d, e = (float(v) for v in str(gm.attrs["GeoTransform"]).split())
    except (KeyError, ValueError):
        return "  ".join(parts) or None
    rows, cols = arr.shape[-2:]
    xs, ys = [c, c + a * cols, c + b * rows, c + a * cols + b * rows], [f, f + d * cols, f + e * rows, f + d * cols + e * rows]
    parts.append(f"bounds ({min(xs):.10g}, {min(ys):.10g}, {max(xs):.10g}, {max(ys):.10g})")
    if b == 0 and d == 0:
        parts.append(f"resolution ({abs(a):.10g}, {abs(e):.10g})")
    return "  ".join(parts)


def describe_geotiff(path: str) -> str:
    """``pipeline info`` of a GeoTIFF (a COG output): size, dtype, tiles, compression, layout,
    overviews, nodata, CRS as EPSG, bounds, resolution, and the run's status."""
    import json

    try:
        import rasterio
    except ImportError:
        raise InputError("reading a GeoTIFF needs rasterio: pip install 'pipeline[geotiff]'", where=path) from None
    if not os.path.isfile(local_path(path)):
        raise InputError(f"file {path} does not exist", where=path)
    try:
        ds = rasterio.open(local_path(path))
    except Exception as e:  # noqa: BLE001 - not a GeoTIFF: reported as such
        raise InputError(f"cannot open {path} as a GeoTIFF: {e}", where=path) from None
    with ds:
        layout = ds.tags(ns="IMAGE_STRUCTURE")
        lines = [
            f"{path}: GeoTIFF{' (COG layout)' if layout.get('LAYOUT') == 'COG' else ''}, {ds.count} band(s)",
            f"  shape ({ds.height}, {ds.width})  dtype {ds.dtypes[0]}  tiles {ds.block_shapes[0]}  compression {layout.get('COMPRESSION', 'none')}",
            f"  overviews {ds.overviews(1)}  nodata {ds.nodata}",
        ]
        if ds.crs is not None:
            code = ds.crs.to_epsg()
            lines.append(f"  crs {f'EPSG:{code}' if code else ds.crs.to_string()}  bounds {tuple(ds.bounds)}  resolution {ds.res}")
        state = json.loads(ds.tags().get("PIPELINE", "{}")).get("state")
    if isinstance(state, Mapping):
        lines.append(f"  status {'complete' if state.get('complete') else 'INCOMPLETE'}; statistic {state.get('statistic')}, op {state.get('op')!r}")
    return "\n".join(lines)


def epsg(wkt: str) -> str | None:
    """``EPSG:<code>`` of a WKT (1 or 2) CRS whose own identifier, its last one, is an EPSG code."""
    import re

    m = re.search(r'(?:AUTHORITY\["EPSG",\s*"(\d+)"\]|ID\["EPSG",\s*(\d+)\])\]\s*$', wkt)
    return f"EPSG:{m.group(1) or m.group(2)}" if m else None


def _codec_args(codec: Any) -> str:
    fields = {k: v for k, v in vars(codec).items() if not k.startswith("_") and v is not None}
    if not fields:
        return ""
    return "(" + ", ".join(f"{k}={getattr(v, 'value', v)}" for k, v in fields.items()) + ")"



def list_arrays(path: str) -> list[str]:
    """Paths of all arrays in a store (read fresh, not from consolidated metadata)."""
    if is_local(path) and not os.path.exists(local_path(path)):
        raise InputError(f"store {path} does not exist", where=path)
    try:
        node = zarr.open(store=Path(local_path(path)) if is_local(path) else path, mode="r", use_consolidated=False)
    except Exception as e:
        raise InputError(f"cannot open Zarr store: {e}", where=path) from None
    if isinstance(node, zarr.Array):
        return [""]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sorted(name for name, _ in node.arrays())
