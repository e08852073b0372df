"""The processing grid: output blocks that are unions of whole output storage chunks, the matching
input blocks and the halo per axis; pure functions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.errors import ConfigError
from pipeline.plan import registry
from pipeline.plan.window import Window

#: Auto processing blocks are grown to at least this many pixels per window axis ...
MIN_AUTO_CHUNK = 256
#: ... and follow the inputs' storage chunks up to this side; larger ones are split by halving
#: (to stay aligned with the storage chunks).  Output chunks are the processing blocks, so a
#: 2048² input gives 2048² output chunks: four times fewer objects, blocks, ledger records and
#: tasks than the 1024² of earlier versions, at four times the memory per task (~115 MiB for a
#: window sum of two uint16 inputs).
MAX_AUTO_CHUNK = 4096
#: Processing block side when the inputs carry no chunking (numpy arrays).
DEFAULT_CHUNK = 1024

#: At most this many processing blocks per run (checked before any block list is built, so that a
#: hostile zarr.json declaring shape (2**40, 2**40) is refused in microseconds, not by the OOM killer).
MAX_BLOCKS = 10_000_000

def _axis_grid(m: int, c: int, depth: int) -> tuple[int, ...]:
    """Blocks of ``c`` over ``m`` pixels; a last block narrower than ``depth`` joins the one before."""
    if m == 0:
        return (0,)
    if m // max(1, c) > MAX_BLOCKS:
        raise ConfigError(f"{m} pixels in blocks of {c} make more than {MAX_BLOCKS:,} blocks; use larger compute.chunks", where="compute.chunks")
    blocks = [c] * (m // c) + ([m % c] if m % c else [])
    if len(blocks) > 1 and blocks[-1] < depth:
        last = blocks.pop()
        blocks[-1] += last
    return tuple(blocks)


def _auto_chunk(storage: int | None, n: int, depth: int) -> int:
    c = storage if storage else DEFAULT_CHUNK
    while c > MAX_AUTO_CHUNK and c % 2 == 0:
        c //= 2
    if c < max(MIN_AUTO_CHUNK, depth):
        c *= math.ceil(max(MIN_AUTO_CHUNK, depth) / c)
    return max(1, min(c, n))


def _grown(out_shape: Sequence[int], chunks: Sequence[int], win: Window) -> list[int]:
    """Auto block sides (per window axis, as :func:`requested_chunks` gives them) doubled until
    the image has at most :data:`MAX_BLOCKS` blocks: auto chunks never make a run refused."""
    sides = {ax: chunks[ax] for ax in win.axes}
    while math.prod(-(-m // (sides.get(ax) or chunks[ax])) for ax, m in enumerate(out_shape)) > MAX_BLOCKS:
        sides = {ax: 2 * c for ax, c in sides.items()}
    return [sides[ax] for ax in win.axes]


def output_shape(in_shape: tuple[int, ...], axes: Sequence[int], sizes: Sequence[int], bnd: registry.Boundary) -> tuple[int, ...]:
    """The input's shape, or ``W - 1`` smaller per window axis for a shrinking boundary ('valid')."""
    out = list(in_shape)
    if bnd.shrinks:
        for ax, w in zip(axes, sizes):
            if in_shape[ax] < w:
                raise ConfigError(
                    f"window {w} is larger than the image ({in_shape[ax]} pixels on axis {ax}); "
                    "boundary 'valid' would give an empty output",
                    where="window.size",
                )
            out[ax] = in_shape[ax] - w + 1
    return tuple(out)


def requested_chunks(chunks: str | int | Sequence[int], order: Sequence[int]) -> tuple[int | None, ...]:
    """``compute.chunks`` per window axis (in increasing axis order); None for 'auto'."""
    if isinstance(chunks, str):
        if chunks != "auto":
            raise ConfigError(f"must be 'auto', an int or a list of ints, got {chunks!r}", where="compute.chunks")
        requested: tuple[int | None, ...] = (None,) * len(order)
    elif isinstance(chunks, (int, np.integer)):
        requested = (int(chunks),) * len(order)
    else:
        given = tuple(int(c) for c in chunks)
        if len(given) != len(order):
            raise ConfigError(f"needs {len(order)} values (one per window axis), got {len(given)}", where="compute.chunks")
        requested = tuple(given[i] for i in order)
    if any(c is not None and c < 1 for c in requested):
        raise ConfigError(f"chunk sizes must be >= 1, got {list(requested)}", where="compute.chunks")
    return requested


def requested_shards(shards: int | Sequence[int] | None, order: Sequence[int]) -> tuple[int, ...] | None:
    """``output.shards`` per window axis (in increasing axis order), in pixels; None: unsharded."""
    if shards is None:
        return None
    if isinstance(shards, (int, np.integer)):
        given = (int(shards),) * len(order)
    else:
        given = tuple(int(c) for c in shards)
        if len(given) != len(order):
            raise ConfigError(f"needs {len(order)} values (one per window axis), got {len(given)}", where="output.shards")
        given = tuple(given[i] for i in order)
    if any(c < 1 for c in given):
        raise ConfigError(f"shard sizes must be >= 1, got {list(given)}", where="output.shards")
    return given


def _shard_side(want: int, chunk: int, m: int, ax: int) -> int:
    """A window axis's shard side: ``want`` pixels, a multiple of the output chunk ``chunk``
    (refused otherwise), cut down to the whole chunks covering the ``m`` pixels of the axis."""
    if want % chunk:
        raise ConfigError(
            f"shard side {want} on axis {ax} is not a multiple of the output chunk side {chunk}; "
            f"use a multiple of {chunk} (or set compute.chunks)",
            where="output.shards",
        )
    return min(want, -(-m // chunk) * chunk)


def shard_bytes(shards: Sequence[int], itemsizes: Sequence[int]) -> int:
    """The memory a sharded output adds to a task: one shard's values of every statistic (the
    buffers its blocks are copied into) and twice one statistic's shard, what zarr holds while
    it encodes the shard object whole (its chunks encoded, then joined; measured 1.9x for
    incompressible float64, zarr 3.1)."""
    pixels = math.prod(shards)
    return pixels * (sum(itemsizes) + 2 * max(itemsizes))


@dataclass(frozen=True)
class Grid:
    storage_chunks: tuple[int, ...]
    in_chunks: tuple[tuple[int, ...], ...]
    out_chunks: tuple[tuple[int, ...], ...]
    depth: tuple[int, ...]
    notes: tuple[str, ...]
    shards: tuple[int, ...] | None = None


def plan_grid(
    in_shape: tuple[int, ...], out_shape: tuple[int, ...], storage: Sequence[int | None], win: Window,
    requested: Sequence[int | None], bnd: registry.Boundary, shards: int | Sequence[int] | None = None,
) -> Grid:
    """The processing grid: output blocks that are unions of whole output storage chunks, the
    matching input blocks and the halo per axis; no block narrower than the halo.  With
    ``shards`` (``output.shards`` in pixels) the blocks are the same and nest in the shards (a
    shard side is a multiple of the chunk side); :attr:`Grid.shards` keeps the shard sides, and
    the engine computes a shard in blocks and writes it whole
    (:mod:`pipeline.execution.assemble`)."""
    sides = requested_shards(shards, win.order)
    notes: list[str] = []
    storage_chunks, in_chunks, out_chunks, depth, shard_sides = [], [], [], [], []
    for ax in range(len(in_shape)):
        m = out_shape[ax]
        if ax not in win.axes:
            c = min(storage[ax] or in_shape[ax], m)
            grid = _axis_grid(m, c, 0)
            storage_chunks.append(c)
            shard_sides.append(c)
            in_chunks.append(grid)
            out_chunks.append(grid)
            depth.append(0)
            continue
        i = win.axes.index(ax)
        h = max(win.lo[i], win.hi[i])
        want = requested[i]
        if want is None:
            c = _auto_chunk(storage[ax], m, h)
        else:
            c = min(want, m)
            if c < h and c < m:
                notes.append(f"chunk {want} on axis {ax} is narrower than the halo {h}; using {h}")
                c = min(h, m)
        side = c if sides is None else _shard_side(sides[i], c, m, ax)
        grid = _axis_grid(m, c, h)
        storage_chunks.append(c)
        shard_sides.append(side)
        out_chunks.append(grid)
        if bnd.shrinks:
            g = list(grid)
            g[0] += win.lo[i]
            g[-1] += win.hi[i]
            grid = tuple(g)
        in_chunks.append(grid)
        depth.append(h if len(grid) > 1 else 0)
    nblocks = math.prod(len(g) for g in out_chunks)
    if nblocks > MAX_BLOCKS and all(r is None for r in requested):
        return plan_grid(in_shape, out_shape, storage, win, _grown(out_shape, storage_chunks, win), bnd, shards)
    if nblocks > MAX_BLOCKS:
        raise ConfigError(
            f"output shape {list(out_shape)} makes {nblocks:,} processing blocks, more than {MAX_BLOCKS:,}; "
            "use larger compute.chunks (or check the inputs' shapes)",
            where="compute.chunks",
        )
    sharded = None if sides is None else tuple(shard_sides)
    return Grid(tuple(storage_chunks), tuple(in_chunks), tuple(out_chunks), tuple(depth), tuple(notes), sharded)


