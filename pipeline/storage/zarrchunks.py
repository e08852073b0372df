"""Zarr at the chunk level: chunk keys and stored-chunk listings (resume, ``verify``, input
readiness), and the chunk codec fast path: whole-chunk reads and writes of a local Zarr v3 array
in the calling thread (:class:`DirectChunks`), with zarr's own codec objects and store, so that
worker threads decode, compute and encode in parallel.  Used for the output target and for the
chunk cache's input reads; arrays it does not handle go through zarr's API."""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

import numpy as np
import zarr

from pipeline.errors import InputError
from pipeline.storage.stores import location


def chunk_key(arr: zarr.Array, coords: Sequence[int]) -> str:
    return arr.metadata.encode_chunk_key(tuple(coords))


def object_shape(arr: zarr.Array) -> tuple[int, ...]:
    """The shape of one stored object: a shard for a sharded array, else a chunk."""
    return tuple(getattr(arr, "shards", None) or arr.chunks)


def chunk_grid(arr: zarr.Array) -> tuple[int, ...]:
    """Number of stored objects (chunks, or shards for a sharded array) per axis: the grid whose
    coordinates :func:`chunk_key` encodes."""
    return tuple(-(-s // c) for s, c in zip(arr.shape, object_shape(arr)))


def local_files(root: str) -> Iterator[tuple[str, os.stat_result]]:
    """Every file under the folder ``root``: (``/``-separated name relative to ``root``, its
    ``os.stat``), in no particular order.  Symlinks are followed as zarr's reads follow them: a
    symlinked file is the file it points at, a symlinked folder is walked like a folder,
    wherever it points; each folder is walked once (a link back to a folder already walked, a
    loop, is skipped), and a broken link is no file.  A missing ``root`` has no files."""
    seen: set[tuple[int, int]] = set()
    stack = [("", root)]
    while stack:
        rel, path = stack.pop()
        try:
            st = os.stat(path)
            it = os.scandir(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        with it:
            for entry in it:
                name = f"{rel}{entry.name}"
                try:
                    if entry.is_dir():  # follows a symlink
                        stack.append((name + "/", entry.path))
                    else:
                        yield name, entry.stat()  # follows a symlink; a broken one raises
                except FileNotFoundError:
                    continue


def stored_chunk_keys(arr: zarr.Array) -> set[str]:
    """Keys (relative to the array, e.g. ``c/0/3``) of the files stored under the array, its
    ``zarr.json`` excepted: chunk keys, but also whatever else lies there (a Zarr v2 array's
    ``.zarray``, a temp file of a chunk still arriving), so test chunk keys against it rather
    than count it (:func:`unstored_keys`).  A local store is walked by :func:`local_files`
    (symlinked folders and files followed, as reads follow them); others are listed by zarr."""
    from zarr.core.sync import collect_aiterator
    from zarr.storage import LocalStore

    prefix = f"{arr.path}/" if arr.path else ""
    store = arr.store_path.store
    if isinstance(store, LocalStore):
        files = local_files(os.path.join(store.root, arr.path))
        return {k for k, _ in files if not k.endswith("zarr.json")}
    keys = collect_aiterator(store.list_prefix(prefix))
    return {k[len(prefix) :] for k in keys if not k.endswith("zarr.json")}


def grid_keys(arr: zarr.Array, grid: Sequence[int], stored: set[str]) -> set[str]:
    """Those of the keys ``stored`` that are chunk keys of ``grid`` (chunks or shards per axis):
    a key's integers, inside the grid, encode back to the key.  One encoding per stored key,
    nothing per unstored chunk."""
    found = set()
    for key in stored:
        coords = tuple(int(x) for x in re.findall(r"\d+", key))
        if len(coords) == len(grid) and all(c < n for c, n in zip(coords, grid)) and chunk_key(arr, coords) == key:
            found.add(key)
    return found


def unstored_keys(arr: zarr.Array, grid: Sequence[int], shown: int) -> tuple[int, list[str]]:
    """How many chunks of ``grid`` (chunks or shards per axis) are not stored, and the keys of
    the first ``shown`` of them in grid order: stored keys are those of :func:`stored_chunk_keys`
    that are chunk keys of the grid (:func:`grid_keys`), so other files there count for nothing.
    Time and memory grow with the stored chunks (one listing), not with the grid."""
    import itertools

    stored = grid_keys(arr, grid, stored_chunk_keys(arr))
    missing = math.prod(grid) - len(stored)
    first: list[str] = []
    if missing:
        for coords in itertools.product(*(range(n) for n in grid)):
            key = chunk_key(arr, coords)
            if key not in stored:
                first.append(key)
                if len(first) >= shown:
                    break
    return missing, first


def damaged(
    err: InputError, where: str, key: str, coords: Sequence[int], chunks: Sequence[int], shape: Sequence[int]
) -> InputError:
    """``err`` (a chunk that cannot be read) with ``err.damaged_chunk``: the input's ``where``,
    the chunk's key and its region ``[[start, stop], ...]``, for :mod:`pipeline.runner.repaired`."""
    region = [[i * c, min((i + 1) * c, n)] for i, c, n in zip(coords, chunks, shape)]
    err.damaged_chunk = {"where": where, "key": key, "region": region}  # type: ignore[attr-defined]
    return err


def read_chunk(arr: zarr.Array, coords: Sequence[int]) -> np.ndarray:
    """Decode one stored object, the chunk (or the whole shard, every inner chunk of it) at
    ``coords`` of :func:`chunk_grid` (raises on a checksum mismatch or a damaged encoding)."""
    region = tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(coords, object_shape(arr), arr.shape))
    return cast(np.ndarray, arr[region])  # zarr's return type covers every buffer kind


def write_block(target: Any, region: tuple[slice, ...], block: np.ndarray) -> None:
    """Write one chunk-aligned block (to a zarr array or a :class:`DirectChunks`)."""
    if isinstance(target, DirectChunks):
        target.write_region(region, block)
    else:
        target[region] = block


_log = logging.getLogger(__name__)


def _direct_refusal(arr: Any) -> str | None:
    """Why :class:`DirectChunks` cannot handle ``arr`` (None: it can).  Only what zarr exports
    for the purpose is relied on: ``zarr.abc.codec.SupportsSyncCodec`` (and a codec's
    ``_sync_capable`` opt-out), ``zarr.abc.store.SupportsGetSync``/``SupportsSetSync``."""
    try:
        from zarr.abc.codec import ArrayBytesCodec, BytesBytesCodec, SupportsSyncCodec
        from zarr.abc.store import SupportsGetSync, SupportsSetSync
        from zarr.codecs import BytesCodec
        from zarr.storage import LocalStore
    except ImportError as e:  # a zarr without the synchronous protocols
        return f"zarr lacks {e.name or e}"
    try:
        md = arr.metadata
        store = arr.store_path.store
        codecs = tuple(md.codecs)
    except AttributeError:
        return "not a zarr v3 array"
    if getattr(md, "zarr_format", None) != 3:
        return "not a zarr v3 array"
    if not isinstance(store, LocalStore):
        return f"{type(store).__name__} is not a local store"
    if not (isinstance(store, SupportsGetSync) and isinstance(store, SupportsSetSync)) or not getattr(store, "_supports_sync_io", True):
        return f"{type(store).__name__} has no synchronous get/set"
    if getattr(arr, "shards", None):
        return "sharded"
    if not codecs or not isinstance(codecs[0], BytesCodec) or not isinstance(codecs[0], ArrayBytesCodec):
        return "the first codec is not the bytes serializer (an array-to-array codec or another serializer)"
    if not all(isinstance(c, BytesBytesCodec) for c in codecs[1:]):
        return "an array-to-array codec"
    slow = [type(c).__name__ for c in codecs if not (isinstance(c, SupportsSyncCodec) and getattr(c, "_sync_capable", True))]
    if slow:
        return f"codecs without a synchronous form: {', '.join(slow)}"
    return None


class DirectChunks:
    """Whole-chunk reads and writes of one Zarr v3 array in the calling thread.

    zarr's synchronous API runs every read and write through its one event-loop thread, which
    hands each codec call to a thread pool and back.  On two cores that overhead capped the
    whole run at about 1.5 cores busy and cost ~20% per chunk written (measured on 2048²
    int32 chunks: 56.7 against 46.6 ms per chunk with two threads; CPU/wall 1.53 against
    1.93).  For a local store and an unsharded array whose codecs all have synchronous forms
    (zarr's exported ``SupportsSyncCodec`` protocol; tested with zarr 3.1.6 and 3.4.2), this class does the same work with zarr's own codec objects and store,
    in the thread that calls it, so that worker threads decode, compute and encode in
    parallel.  The bytes written are the bytes zarr writes (tested chunk by chunk, edge
    chunks padded with the fill value as zarr pads them), and every chunk is written, as with
    ``write_empty_chunks=True``.

    :meth:`of` returns ``None`` for arrays it does not handle; callers then use zarr's API.
    """

    def __init__(self, arr: zarr.Array, where: str | None = None) -> None:
        from zarr.core.array_spec import ArrayConfig, ArraySpec
        from zarr.core.buffer import default_buffer_prototype
        from zarr.core.metadata import ArrayV3Metadata

        md = arr.metadata
        if not isinstance(md, ArrayV3Metadata):  # refused before (_direct_refusal); narrows the type
            raise TypeError("not a zarr v3 array")
        self.arr = arr
        self.where = where or location(str(arr.store_path.store), arr.path)
        self.store = arr.store_path.store
        self.prefix = f"{arr.path}/" if arr.path else ""
        self.shape = tuple(arr.shape)
        self.chunks = tuple(arr.chunks)
        self.dtype = np.dtype(arr.dtype)
        self.prototype = default_buffer_prototype()
        # the spec zarr hands its codecs for one chunk (a regular grid: every chunk alike)
        self.spec = ArraySpec(
            shape=self.chunks, dtype=md.data_type, fill_value=md.fill_value, config=ArrayConfig.from_dict({}), prototype=self.prototype
        )
        self.array_bytes: Any
        self.bytes_bytes: list[Any]  # zarr's codecs (their private synchronous _encode/_decode)
        self.array_bytes, *self.bytes_bytes = md.codecs
        self.fill = np.asarray(arr.fill_value, dtype=self.dtype)

    @classmethod
    def of(cls, arr: Any, where: str | None = None) -> DirectChunks | None:
        """A :class:`DirectChunks` for ``arr``, or ``None`` where zarr's own API must be used
        (not a zarr v3 array, a remote or in-memory store, sharding, an array-to-array codec,
        or a codec or store without zarr's synchronous protocols); a debug line on the
        ``pipeline.storage.io`` logger says which path runs and why."""
        reason = _direct_refusal(arr)
        if reason is None:
            try:
                chunked = cls(arr, where)
            except Exception as e:  # an unusual chunk grid or dtype, a zarr that moved ArraySpec
                reason = f"{e.__class__.__name__}: {e}"
            else:
                _log.debug("%s: direct chunk path (zarr %s, codecs in the calling thread)", chunked.where, zarr.__version__)
                return chunked
        name = where or getattr(arr, "path", None) or "array"
        _log.debug("%s: chunks through zarr's API (zarr %s): %s", name, zarr.__version__, reason)
        return None

    def key(self, coords: Sequence[int]) -> str:
        return self.prefix + chunk_key(self.arr, coords)

    def _bounds(self, coords: Sequence[int]) -> tuple[slice, ...]:
        return tuple(slice(0, min(c, n - i * c)) for i, c, n in zip(coords, self.chunks, self.shape))

    def read(self, coords: Sequence[int]) -> np.ndarray:
        """Chunk ``coords`` decoded (clipped to the array's bounds) as zarr's own read returns it
        (the array's dtype: a big-endian ``BytesCodec`` decodes to native order); the fill value
        where it is not stored; a chunk that fails to decode raises :class:`InputError` naming
        its key."""
        inner = self._bounds(coords)
        key = self.key(coords)
        try:
            # the local and memory stores have zarr's synchronous protocol; the Store ABC does not declare it
            data = self.store.get_sync(key, prototype=self.prototype)  # type: ignore[attr-defined]
            if data is None:
                return np.full(tuple(s.stop for s in inner), self.fill, dtype=self.dtype)
            for codec in reversed(self.bytes_bytes):
                data = codec._decode_sync(data, self.spec)
            block = self.array_bytes._decode_sync(data, self.spec).as_numpy_array()
        except Exception as e:
            err = InputError(f"chunk {key[len(self.prefix):]} cannot be read ({e.__class__.__name__}: {e})", where=self.where)
            raise damaged(err, self.where, key[len(self.prefix) :], coords, self.chunks, self.shape) from None
        return np.asarray(block[inner], dtype=self.dtype)

    def write(self, coords: Sequence[int], block: np.ndarray) -> None:
        """Encode and store chunk ``coords`` (``block`` clipped to the array's bounds, as
        :meth:`read` returns it)."""
        block = np.asarray(block, dtype=self.dtype)
        if block.shape != self.chunks:
            full = np.full(self.chunks, self.fill, dtype=self.dtype)
            full[tuple(slice(0, s) for s in block.shape)] = block
            block = full
        data = self.array_bytes._encode_sync(self.prototype.nd_buffer.from_numpy_array(np.ascontiguousarray(block)), self.spec)
        for codec in self.bytes_bytes:
            data = codec._encode_sync(data, self.spec)
        self.store.set_sync(self.key(coords), data)  # type: ignore[attr-defined]  # as get_sync above

    def write_region(self, region: tuple[slice, ...], block: np.ndarray) -> None:
        """Write a chunk-aligned region (it may span several chunks) chunk by chunk."""
        import itertools

        spans = []
        for sl, c, n in zip(region, self.chunks, self.shape):
            if sl.start % c or (sl.stop % c and sl.stop != n):
                raise ValueError(f"region {region} is not aligned to the chunks {self.chunks}")
            spans.append(range(sl.start // c, -(-sl.stop // c)))
        for coords in itertools.product(*spans):
            sub = tuple(
                slice(i * c - sl.start, min((i + 1) * c, n) - sl.start)
                for i, c, n, sl in zip(coords, self.chunks, self.shape, region)
            )
            self.write(coords, block[sub])


def direct(target: Any) -> Any:
    """``target`` (an array, or a mapping of arrays) with each zarr array that
    :class:`DirectChunks` handles replaced by one."""
    if isinstance(target, Mapping):
        return {k: direct(v) for k, v in target.items()}
    return DirectChunks.of(target) or target
