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
