"""Reading blocks with their halo without decoding any storage chunk twice.

A block's halo reaches into the neighbouring storage chunks, and a compressed chunk can only be
decoded whole: reading each block's region straight from the store decodes up to nine chunks per
block (measured: 8× slower than the codecs allow).  :class:`HaloReader` decodes each storage chunk
once, keeps it while a block still needs it (reference counts over the blocks to compute), and
assembles each block's region from the cached chunks.

Memory stays bounded whatever the image size because blocks are visited in vertical strips of at
most ``strip`` block columns (:func:`strip_order`) and each strip has its own cache (``group``):
a chunk is kept only while a block of the same strip still needs it, so only about two chunk
rows of one strip (and its two neighbouring chunk columns) are held at a time.  Chunks on the
border between two strips are decoded once per strip.  (A cache shared by all strips held the
neighbouring column, decoded for the halo, until the next strip reached it: memory grew with
the image height, 1.34x from 16384² to 32768².)

Pure bookkeeping: the reading function is given (``read(name, region) -> ndarray``), so this
module touches no storage library and is tested with plain arrays.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import Future

import numpy as np

Region = tuple[slice, ...]
Key = tuple[Hashable, str, tuple[int, ...]]  # (group, input name, chunk index)


def strip_order(nblocks: Sequence[int], strip: int) -> list[tuple[int, ...]]:
    """Block indices in the order: strips of ``strip`` columns (last axis), then row-major
    within a strip (leading axes, then rows, then columns)."""
    *lead, ncols = nblocks
    order = []
    for s0 in range(0, ncols, max(1, strip)):
        cols = range(s0, min(s0 + max(1, strip), ncols))
        for head in itertools.product(*(range(n) for n in lead)):
            for c in cols:
                order.append((*head, c))
    return order


def _chunk_span(sl: slice, chunk: int) -> range:
    return range(sl.start // chunk, (sl.stop - 1) // chunk + 1) if sl.stop > sl.start else range(0)


class HaloReader:
    """Decode-once reading of block regions from chunked arrays.

    ``read(name, region)`` reads a region of input ``name`` (it is only ever called with the
    region of one whole storage chunk); ``chunks[name]`` is that input's storage chunk shape and
    ``shape`` the common input shape; ``regions`` lists, in processing order, the input region
    of every block that will be read (with repeats if a block is read more than once).
    """

    def __init__(
        self,
        read: Callable[[str, Region], np.ndarray],
        shape: Sequence[int],
        chunks: Mapping[str, Sequence[int]],
        regions: Iterable[Region],
        groups: Iterable[Hashable] | None = None,
    ) -> None:
        self._read = read
        self._shape = tuple(shape)
        self._chunks = {n: tuple(c) for n, c in chunks.items()}
        self._lock = threading.Lock()
        self._cache: dict[Key, Future] = {}
        self._refs: dict[Key, int] = {}
        regions = list(regions)
        for region, group in zip(regions, [None] * len(regions) if groups is None else groups):
            for key in self._keys(region, group):
                self._refs[key] = self._refs.get(key, 0) + 1
        self.decoded = 0  #: chunks decoded so far (for tests and statistics)

    def _keys(self, region: Region, group: Hashable = None) -> list[Key]:
        keys = []
        for name, chunk in self._chunks.items():
            for idx in itertools.product(*(_chunk_span(sl, c) for sl, c in zip(region, chunk))):
                keys.append((group, name, idx))
        return keys

    def _chunk_region(self, name: str, idx: tuple[int, ...]) -> Region:
        chunk = self._chunks[name]
        return tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(idx, chunk, self._shape))

    def _get(self, key: Key) -> np.ndarray:
        with self._lock:
            fut = self._cache.get(key)
            mine = fut is None
            if fut is None:
                fut = Future()
                self._cache[key] = fut
        if mine:
            try:
                fut.set_result(np.asarray(self._read(key[1], self._chunk_region(*key[1:]))))
                with self._lock:
                    self.decoded += 1
            except BaseException as e:
                fut.set_exception(e)
                raise
        return fut.result()

    def _release(self, key: Key) -> None:
        with self._lock:
            n = self._refs.get(key, 0) - 1
            if n <= 0:
                self._refs.pop(key, None)
                self._cache.pop(key, None)
            else:
                self._refs[key] = n

    def read(self, region: Region, group: Hashable = None) -> dict[str, np.ndarray]:
        """Every input's data over ``region`` (fresh arrays), for a block of ``group`` (as
        listed at construction); releases the chunks no later block of the group needs."""
        out = {}
        keys = self._keys(region, group)
        try:
            for name, chunk in self._chunks.items():
                first = self._get((group, name, tuple(_chunk_span(sl, c).start for sl, c in zip(region, chunk))))
                buf = np.empty(tuple(sl.stop - sl.start for sl in region), dtype=first.dtype)
                for idx in itertools.product(*(_chunk_span(sl, c) for sl, c in zip(region, chunk))):
                    data = self._get((group, name, idx))
                    src, dst = [], []
                    for sl, i, c in zip(region, idx, chunk):
                        lo, hi = max(sl.start, i * c), min(sl.stop, (i + 1) * c)
                        src.append(slice(lo - i * c, hi - i * c))
                        dst.append(slice(lo - sl.start, hi - sl.start))
                    buf[tuple(dst)] = data[tuple(src)]
                out[name] = buf
        finally:
            for key in keys:
                self._release(key)
        return out

    @property
    def cached(self) -> int:
        """Chunks held now."""
        with self._lock:
            return len(self._cache)
