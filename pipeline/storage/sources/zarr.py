"""Zarr as an input source: opening an input array (v2 or v3, local or an fsspec URL), its
dimension names, coordinates and grid-mapping variable, its identity for the resume
fingerprint, and reads that name the failing chunk.

Only this module (with :mod:`pipeline.storage.targets.zarr` for outputs and :mod:`pipeline.storage.zarrchunks` for
the chunk codec fast path) knows an input is a ``zarr.Array``.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import zarr

from pipeline.errors import InputError
from pipeline.plan.dtypes import as_computable, computable
from pipeline.storage import stores, zarrchunks
from pipeline.storage.zarrchunks import damaged

XARRAY_DIMS = "_ARRAY_DIMENSIONS"


def is_zarr(arr: Any) -> bool:
    """Whether ``arr`` is a zarr array (tests and the API may hand in other array-likes)."""
    return hasattr(arr, "store_path")


@dataclass
class ZarrSource:
    """One Zarr input array, as an :class:`~pipeline.storage.sources.InputSource`."""

    path: str
    array_path: str | None
    array: zarr.Array
    storage_options: Mapping[str, Any] | None = None
    axes: tuple[str, ...] | None = None  #: NGFF axis names, for an OME-Zarr level (:mod:`~pipeline.storage.sources.omezarr`)
    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = stores.location(self.path, self.array_path)

    @classmethod
    def open(
        cls, path: str, array: str | None, *, where: str, storage_options: Mapping[str, Any] | None = None,
        band: int | None = None, level: int | str | None = None,
    ) -> ZarrSource:
        """Open an input array; an OME-Zarr image group reads level ``level`` (default 0)."""
        from pipeline.storage.sources import omezarr

        if band is not None:
            raise InputError(f"'band' applies to GeoTIFF inputs; {stores.location(path, array)} is a Zarr store", where=f"{where}.band")
        array, axes = omezarr.resolve(path, array, level, where=where, storage_options=storage_options)
        return cls(path, array, open_input(path, array, where=where, storage_options=storage_options), storage_options, axes)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return computable(self.array.dtype)

    @property
    def chunks(self) -> tuple[int, ...]:
        return tuple(self.array.chunks)

    @property
    def dims(self) -> tuple[str, ...] | None:
        own = dims_of(self.array)
        return own if own is not None or self.axes is None or len(self.axes) != self.array.ndim else self.axes

    @property
    def attrs(self) -> Mapping[str, Any]:
        return self.array.attrs

    def coords(self) -> dict[str, Any]:
        dims = self.dims
        return input_coords(self.path, self.array_path, dims, self.shape, self.storage_options) if dims else {}

    def scalar(self, name: str) -> tuple[Any, dict[str, Any]] | None:
        return scalar_variable(self.path, self.array_path, name, self.storage_options)

    def read(self, region: tuple[slice, ...]) -> np.ndarray:
        return as_computable(np.asarray(self.array[region]))

    def identity(self) -> dict[str, Any]:
        return input_identity(self.array, self.path, self.array_path, self.storage_options)


def checked(arr: Any, where: str) -> Any:
    """``arr`` for reading, a failing chunk named by ``where`` and its key (other array-likes as
    they are)."""
    return CheckedInput(arr, where) if is_zarr(arr) else arr


def dask_view(arr: Any, label: str, where: str) -> Any:
    """A dask array over an input whose chunk read errors name ``where`` and the chunk key;
    ``label`` names its dask keys."""
    import dask.array as da

    from pipeline.storage import ledger

    if not is_zarr(arr):
        return as_computable(da.from_zarr(arr))
    token = ledger.fingerprint([str(arr.store_path), arr.path, stores.jsonable(arr.metadata.to_dict())])[:24]
    return da.from_array(CheckedInput(arr, where), chunks=arr.chunks, name=f"input-{label}-{token}", asarray=False, fancy=False)


#: File signatures of formats users point at instead of a Zarr store.
_SIGNATURES = (
    ((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), "a TIFF/GeoTIFF file"),
    ((b"\x89PNG",), "a PNG image"),
    ((b"\xff\xd8\xff",), "a JPEG image"),
    ((b"\x89HDF",), "an HDF5/NetCDF-4 file"),
    ((b"CDF\x01", b"CDF\x02"), "a NetCDF file"),
    ((b"PK\x03\x04",), "a zip file (unzip a zipped Zarr store first)"),
)


_CONVERT = "convert it to Zarr first (README: 'Getting your data into Zarr')"


def check_zarr_path(path: str, where: str) -> None:
    """Refuse a local path that is not a Zarr store, saying what it is: a TIFF, PNG, JPEG,
    HDF5/NetCDF or zip file, another file, or a folder without Zarr metadata."""
    if not stores.is_local(path):
        return
    p = Path(stores.local_path(path))
    subject = "" if where == path else f"{path} "
    if p.is_file():
        try:
            with open(p, "rb") as f:
                head = f.read(8)
        except OSError:
            head = b""
        what = next((name for sigs, name in _SIGNATURES if head.startswith(sigs)), "a file")
        raise InputError(f"{subject}is {what}, not a Zarr store (a folder with zarr.json); {_CONVERT}", where=where)
    if p.is_dir() and not any((p / m).exists() for m in ("zarr.json", ".zgroup", ".zarray")):
        raise InputError(f"{subject}is a folder without zarr.json, not a Zarr store; {_CONVERT}", where=where)


def open_input(
    path: str, array: str | None, *, where: str, storage_options: Mapping[str, Any] | None = None
) -> zarr.Array:
    """Open an input array read-only; ``where`` is the config key for messages."""
    name = stores.location(path, array)
    if stores.is_local(path):
        if not os.path.exists(stores.local_path(path)):
            raise InputError(f"store {path} does not exist", where=where)
        check_zarr_path(path, where)
    elif not stores.remote_exists(path, storage_options, where):
        raise InputError(f"store {path} does not exist", where=where)
    store = stores.store_args(path, storage_options)
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
    attr = arr.attrs.get(XARRAY_DIMS)
    if isinstance(attr, list) and len(attr) == arr.ndim:
        return tuple(str(a) for a in attr)
    return None


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
        group = zarr.open_group(**stores.store_args(path, storage_options), mode="r", path=parent)
    except Exception:
        return {}
    coords = {}
    members = dict(group.arrays())
    for dim, n in zip(dims, shape):
        arr = members.get(dim)
        if arr is not None and arr.ndim == 1 and arr.shape[0] == n:
            coords[dim] = arr
    return coords


def scalar_variable(
    path: str, array: str | None, name: str, storage_options: Mapping[str, Any] | None = None
) -> tuple[Any, dict[str, Any]] | None:
    """A 0-D array ``name`` beside an input array (a CF grid mapping such as rioxarray's
    ``spatial_ref``, which holds the CRS and GeoTransform in its attributes): (value,
    attributes), or None when there is none."""
    parent = array.rsplit("/", 1)[0] if array and "/" in array else ""
    try:
        group = zarr.open_group(**stores.store_args(path, storage_options), mode="r", path=parent)
        node = group.get(name)
    except Exception:
        return None
    if not isinstance(node, zarr.Array) or node.ndim != 0:
        return None
    attrs = {k: v for k, v in node.attrs.items() if k not in ("_ARRAY_DIMENSIONS", "_FillValue")}
    return np.asarray(node[()]), attrs


def input_identity(
    arr: zarr.Array, path: str, array: str | None, storage_options: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A cheap identity of an input array's content, for the resume fingerprint.

    Always: the store path (credentials in it removed), the array path and its full metadata
    document (shape, dtype, chunks, codecs, attributes).  For a local store, also
    :func:`local_identity` of the array's folder; for a URL store, what one listing of the
    array's objects gives (:func:`_listing_identity`).  Limits: a store whose listing has
    neither ETags nor times is identified by names and sizes only.
    """
    from pipeline.config import redact

    ident: dict[str, Any] = {"path": redact.url(path), "array": array, "metadata": stores.jsonable(arr.metadata.to_dict())}
    if stores.is_local(path):
        ident["files"] = local_identity(os.path.join(stores.local_path(path), array or ""))
    else:
        ident["objects"] = _listing_identity(path, array, storage_options)
    return ident


def local_identity(root: str, skip: Collection[str] = ()) -> dict[str, Any]:
    """The files under a local array's folder ``root`` (symlinks followed as reads follow them,
    :func:`pipeline.storage.zarrchunks.local_files`), the names in ``skip`` left out: count, bytes and a
    SHA-256 over each file's name, size, mtime, ctime and inode.  Rewriting a chunk changes its
    mtime and ctime (and, written by temp file and rename, its inode); renaming files, e.g. two
    chunks swapped with ``mv``, keeps their size and mtime but moves the inodes between the
    names and sets their ctime, which no user tool can set back.  Copying the input, restoring
    a backup, ``chmod`` or ``touch`` change it too: an unchanged input may look changed (the
    output is then recomputed), a changed one never looks unchanged.  One ``stat`` per file."""
    import hashlib

    from pipeline.storage.zarrchunks import local_files

    rows = sorted(
        (name, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino) for name, st in local_files(root) if name not in skip
    )
    digest = hashlib.sha256()
    for i in range(0, len(rows), 4096):  # hashed in batches: one update per row costs as much as the walk
        digest.update("".join(f"{n}\0{b}\0{m}\0{c}\0{ino}\n" for n, b, m, c, ino in rows[i : i + 4096]).encode())
    return {"count": len(rows), "bytes": sum(r[1] for r in rows), "sha256": digest.hexdigest()}


#: what identifies an object's content in an fsspec listing, best first (s3: ETag; gcs: md5Hash,
#: generation; azure: etag; others: a modification time)
_VERSION_KEYS = ("ETag", "etag", "md5Hash", "generation", "LastModified", "last_modified", "updated", "mtime", "modified", "created")



def _listing_identity(path: str, array: str | None, storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The objects under a URL array, from one recursive listing (fsspec's ``find``, which the
    object stores answer page by page): count, bytes, and a SHA-256 over each object's name,
    size and version tag (ETag, else a modification time).  New pixels written in place under
    the same key change the ETag (and the time), so the identity changes."""
    import hashlib

    import fsspec

    fs, root = fsspec.core.url_to_fs(path, **dict(storage_options or {}))
    base = root.rstrip("/") + (f"/{array.strip('/')}" if array else "")
    digest = hashlib.sha256()
    count = size = 0
    tagged = set()
    try:
        listing = fs.find(base, detail=True)
    except (FileNotFoundError, OSError) as e:
        raise InputError(f"cannot list the objects of {stores.location(path, array)}: {e}", where=path) from None
    for name in sorted(listing):
        info = listing[name]
        key = next((k for k in _VERSION_KEYS if info.get(k) is not None), None)
        tag = str(info.get(key)) if key else ""
        if key:
            tagged.add(key)
        count += 1
        size += int(info.get("size") or 0)
        digest.update(f"{name[len(base):]}\0{info.get('size')}\0{tag}\n".encode())
    return {"count": count, "bytes": size, "by": sorted(tagged) or ["size"], "sha256": digest.hexdigest()}


class CheckedInput:
    """An input array for dask: reads like the zarr array, in its
    :func:`~pipeline.plan.dtypes.computable` dtype (native byte order, float16 as float32), but a
    chunk that fails to decode (damaged data, checksum mismatch) raises an :class:`InputError`
    naming the array and the chunk key."""

    def __init__(self, arr: zarr.Array, name: str) -> None:
        self.arr = arr
        self.name = name
        self.shape = tuple(arr.shape)
        self.dtype = computable(arr.dtype)
        self.ndim = len(self.shape)
        self.chunks = tuple(arr.chunks)

    def __getitem__(self, selection: Any) -> np.ndarray:
        try:
            block = cast(np.ndarray, self.arr[selection])  # zarr's return type covers scalars and other buffers
        except Exception as e:  # find the chunk that fails, for the message
            bad = self._failing_chunk(selection)
            if bad is None:
                raise
            key = zarrchunks.chunk_key(self.arr, bad)
            err = InputError(f"chunk {key} cannot be read ({e.__class__.__name__}: {e})", where=self.name)
            raise damaged(err, self.name, key, bad, self.chunks, self.shape) from None
        return cast(np.ndarray, as_computable(np.asarray(block)))

    def _failing_chunk(self, selection: Any) -> tuple[int, ...] | None:
        import itertools

        sel = selection if isinstance(selection, tuple) else (selection,)
        ranges = []
        for ax, n in enumerate(self.shape):
            s = sel[ax] if ax < len(sel) and isinstance(sel[ax], slice) else slice(None)
            start, stop, _ = s.indices(n)
            c = self.chunks[ax]
            ranges.append(range(start // c, max(start // c + 1, -(-stop // c))))
        for coords in itertools.product(*ranges):
            try:
                zarrchunks.read_chunk(self.arr, coords)
            except Exception:
                return coords
        return None

    def __dask_tokenize__(self) -> Any:
        return ("pipeline-input", str(self.arr.store_path), self.arr.path)
