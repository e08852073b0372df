"""The only module that touches Zarr and fsspec: opening inputs, creating the output, writing blocks.

A store is a local path or an fsspec URL (``s3://bucket/key.zarr``, ``gs://...``, ``file://...``)
with optional ``storage_options`` (endpoint, profile, anonymous access, ...); credentials come
from the usual environment variables and config files of the storage library.  Errors name the
store and array (``data/seed.zarr:a``) so that a user can act on them.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from .errors import InputError, OutputError
from .plan import ArraySpec

_XARRAY_DIMS = "_ARRAY_DIMENSIONS"


def describe(path: str, array: str | None) -> str:
    """How an array is named in messages: ``store:array``."""
    return f"{path}:{array}" if array else path


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def _local(path: str) -> str:
    return path[len("file://") :] if path.startswith("file://") else path


def protocol(path: str) -> str:
    """The fsspec protocol of a store path: ``file`` for local paths, else the URL's scheme."""
    return "file" if _is_local(path) else path.split("://", 1)[0].lower()


def is_process_local(path: str) -> bool:
    """True for stores that live in one process's memory (``memory://``): other processes,
    such as the workers of a cluster, cannot see them."""
    return protocol(path) == "memory"


def _store(path: str, storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``zarr.open*`` keyword arguments for a store: a local path as is (zarr's LocalStore), a URL
    through fsspec (zarr's FsspecStore) with its storage options."""
    if _is_local(path):
        return {"store": _local(path)}
    return {"store": path, "storage_options": dict(storage_options or {})}


def _remote_exists(path: str, storage_options: Mapping[str, Any] | None, where: str) -> bool:
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(path, **dict(storage_options or {}))
        return fs.exists(root)
    except ImportError as e:  # e.g. gs:// without gcsfs
        raise InputError(f"cannot open {path}: {e}", where=where) from None
    except Exception as e:  # noqa: BLE001 - credentials, endpoint, permissions: all reported
        raise InputError(f"cannot open {path}: {e.__class__.__name__}: {e}", where=where) from None


def open_input(
    path: str, array: str | None, *, where: str, storage_options: Mapping[str, Any] | None = None
) -> zarr.Array:
    """Open an input array read-only; ``where`` is the config key for messages."""
    name = describe(path, array)
    if _is_local(path):
        if not os.path.exists(_local(path)):
            raise InputError(f"store {path} does not exist", where=where)
    elif not _remote_exists(path, storage_options, where):
        raise InputError(f"store {path} does not exist", where=where)
    store = _store(path, storage_options)
    try:
        node = zarr.open(**store, mode="r", path=array or "")
    except FileNotFoundError:
        raise InputError(f"no array {array!r} in store {path}", where=where) from None
    except Exception as e:  # zarr raises a variety of types for unreadable stores
        if array:
            try:
                group = zarr.open_group(**store, mode="r")
            except Exception:
                raise InputError(f"cannot open Zarr store {path}: {e}", where=where) from None
            found = sorted(k for k, _ in group.arrays())
            raise InputError(
                f"no array {array!r} in store {path} (arrays there: {', '.join(found) or 'none'})", where=where
            ) from None
        raise InputError(f"cannot open Zarr store {path}: {e}", where=where) from None
    if not isinstance(node, zarr.Array):
        found = sorted(k for k, _ in node.arrays())
        hint = f"; set 'array' to one of: {', '.join(found)}" if found else ""
        raise InputError(f"{name} is a group, not an array{hint}", where=where)
    return node


def dims_of(arr: zarr.Array) -> tuple[str, ...] | None:
    """Dimension names: Zarr v3 ``dimension_names`` or xarray's v2 ``_ARRAY_DIMENSIONS``."""
    names = getattr(arr.metadata, "dimension_names", None)
    if names and all(n is not None for n in names):
        return tuple(names)
    attr = arr.attrs.get(_XARRAY_DIMS)
    if isinstance(attr, list) and len(attr) == arr.ndim:
        return tuple(str(a) for a in attr)
    return None


def spec_of(name: str, arr: zarr.Array, source: str) -> ArraySpec:
    return ArraySpec(
        name=name,
        shape=tuple(arr.shape),
        dtype=np.dtype(arr.dtype),
        chunks=tuple(arr.chunks),
        dims=dims_of(arr),
        source=source,
    )


def input_coords(
    path: str,
    array: str | None,
    dims: Sequence[str],
    shape: Sequence[int],
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str, zarr.Array]:
    """1-D coordinate arrays beside an input array (same group, named after a dimension, with the
    dimension's length), as xarray writes them."""
    if not array or not dims:
        return {}
    parent = array.rsplit("/", 1)[0] if "/" in array else ""
    try:
        group = zarr.open_group(**_store(path, storage_options), mode="r", path=parent)
    except Exception:
        return {}
    coords = {}
    members = dict(group.arrays())
    for dim, n in zip(dims, shape):
        arr = members.get(dim)
        if arr is not None and arr.ndim == 1 and arr.shape[0] == n:
            coords[dim] = arr
    return coords


def output_exists(path: str, array: str, storage_options: Mapping[str, Any] | None = None) -> bool:
    try:
        group = zarr.open_group(**_store(path, storage_options), mode="r")
    except Exception:
        return False
    return array in group


def check_not_overlapping(output: str, inputs: Mapping[str, str]) -> None:
    """Refuse an output store equal to, inside, or containing an input store."""
    if not _is_local(output):
        return
    out = Path(_local(output)).resolve()
    for key, path in inputs.items():
        if not _is_local(path):
            continue
        src = Path(_local(path)).resolve()
        if out == src or src in out.parents or out in src.parents:
            raise OutputError(f"output store {output} overlaps input store {path}; choose another output path", where="output.path")


def default_compressors(dtype: np.dtype) -> list[Any]:
    """Blosc-zstd level 1 with byte shuffle (fast, and compresses window sums well), then a
    crc32c checksum so that a damaged chunk is detected instead of silently decoded."""
    return [BloscCodec(cname="zstd", clevel=1, shuffle="shuffle", typesize=np.dtype(dtype).itemsize), Crc32cCodec()]


def create_output(
    path: str,
    array: str,
    *,
    shape: Sequence[int],
    dtype: np.dtype,
    chunks: Sequence[int],
    dims: Sequence[str],
    attrs: Mapping[str, Any],
    coords: Mapping[str, np.ndarray],
    fill_value: Any = 0,
    overwrite: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> zarr.Array:
    """Create the output group (if needed), its coordinate arrays, and the (empty) result array."""
    try:
        group = zarr.open_group(**_store(path, storage_options), mode="a")
    except Exception as e:
        raise OutputError(f"cannot create Zarr group at {path}: {e}", where="output.path") from None
    for dim, values in coords.items():
        if dim == array:
            continue
        values = np.asarray(values)
        c = group.create_array(
            dim, shape=values.shape, dtype=values.dtype, chunks=values.shape, dimension_names=(dim,), overwrite=True
        )
        c[...] = values
    return group.create_array(
        array,
        shape=tuple(shape),
        dtype=dtype,
        chunks=tuple(chunks),
        dimension_names=tuple(dims),
        compressors=default_compressors(dtype),
        fill_value=fill_value,
        attributes=dict(attrs),
        overwrite=overwrite,
    )


def finalize(path: str, storage_options: Mapping[str, Any] | None = None) -> None:
    """Consolidate the group's metadata so that ``xarray.open_zarr`` opens it directly."""
    store = _store(path, storage_options)
    if "storage_options" in store:
        from zarr.storage import FsspecStore

        store = {"store": FsspecStore.from_url(path, storage_options=store["storage_options"])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(store["store"])


def read_region(source: zarr.Array, region: tuple[slice, ...]) -> np.ndarray:
    """Read one region of an input array into memory."""
    return np.asarray(source[region])


def read_chunks(source: zarr.Array) -> tuple[int, ...]:
    """The storage chunk shape reads should align to (the shard shape for sharded arrays)."""
    shards = getattr(source, "shards", None)
    return tuple(shards) if shards else tuple(source.chunks)


def write_block(target: zarr.Array, region: tuple[slice, ...], block: np.ndarray) -> None:
    """Write one chunk-aligned block."""
    target[region] = block


def describe_store(path: str, storage_options: Mapping[str, Any] | None = None) -> str:
    """A human-readable listing of a store's arrays: shape, dtype, chunks, codecs, attributes."""
    import json

    if _is_local(path):
        if not os.path.exists(_local(path)):
            raise InputError(f"store {path} does not exist", where=path)
    elif not _remote_exists(path, storage_options, path):
        raise InputError(f"store {path} does not exist", where=path)
    try:
        node = zarr.open(**_store(path, storage_options), mode="r")
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
        if codecs:
            lines.append(f"  codecs {codecs}")
        for key, value in dict(arr.attrs).items():
            text = json.dumps(value, default=str)
            if len(text) > 200:
                text = text[:197] + "..."
            lines.append(f"  attr {key} = {text}")
    return "\n".join(lines)


def _codec_args(codec: Any) -> str:
    fields = {k: v for k, v in vars(codec).items() if not k.startswith("_") and v is not None}
    if not fields:
        return ""
    return "(" + ", ".join(f"{k}={getattr(v, 'value', v)}" for k, v in fields.items()) + ")"
