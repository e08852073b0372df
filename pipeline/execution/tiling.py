"""Where the engine's blocks lie and how they are grouped: each output block's region in the
output and (with its halo) in the inputs, the width of the vertical strips the chunk cache
follows, and the tiles (runs of blocks of one strip) sent to a session's workers; for a sharded
output, the shards the blocks nest in and tiles of whole shards.  Pure: no I/O.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.plan.planner import Plan
from pipeline.storage.chunkcache import strip_order

#: tasks per worker thread the blocks are cut into, where the image has enough blocks (balance)
TILES_PER_THREAD = 2

#: Decoded input chunks a tile may cache (see :mod:`pipeline.storage.chunkcache`): blocks are visited in
#: vertical strips narrow enough that two chunk rows of a strip, with the neighbouring chunk
#: column on each side (decoded for the halo), fit in it.  Each strip has its own cache, so the
#: memory does not grow with the image; the neighbouring columns are decoded once more per strip
#: (about 2/strip more decoding), which a wider strip makes cheaper.
INPUT_CACHE_BYTES = 128 * 2**20


def block_regions(plan: Plan) -> Iterator[tuple[tuple[int, ...], tuple[slice, ...]]]:
    """Each output block's index and its region in the output array."""
    offsets = [np.cumsum((0,) + c) for c in plan.out_chunks]
    for idx in itertools.product(*(range(len(c)) for c in plan.out_chunks)):
        yield idx, tuple(slice(int(o[i]), int(o[i + 1])) for o, i in zip(offsets, idx))


def output_region(plan: Plan, index: Sequence[int]) -> tuple[slice, ...]:
    """The region of block ``index`` in the output array."""
    region = []
    for chunks, k in zip(plan.out_chunks, index):
        s = sum(chunks[:k])
        region.append(slice(s, s + chunks[k]))
    return tuple(region)


def input_regions(plan: Plan, index: Sequence[int]) -> tuple[slice, ...]:
    """The input region block ``index`` reads: its input block plus the halo on interior sides
    (what ``map_overlap(boundary="none")`` delivers, so :meth:`Plan.centres` applies)."""
    region = []
    for ax, k in enumerate(index):
        chunks = plan.in_chunks[ax]
        s = sum(chunks[:k])
        e = s + chunks[k]
        d = plan.depth[ax]
        region.append(slice(s - d if k > 0 else s, e + d if k < len(chunks) - 1 else e))
    return tuple(region)


def strip_width(plan: Plan, chunks: Sequence[Sequence[int]], itemsizes: Sequence[int]) -> int:
    """Block columns per strip so that the decoded-chunk cache (about two rows of storage
    chunks, two columns beyond the strip) stays within :data:`INPUT_CACHE_BYTES`."""
    bw = max(plan.in_chunks[-1]) + 2 * plan.depth[-1]
    col_bytes = 0  # two chunk rows of one chunk column, all inputs
    unit = bw
    for c, size in zip(chunks, itemsizes):
        rows = max(c[-2] if len(c) > 1 else 1, max(plan.in_chunks[-2]) if plan.ndim > 1 else 1)
        lead = math.prod(max(ch) for ch in plan.in_chunks[:-2])
        col_bytes += 2 * lead * rows * max(c[-1], bw) * size
        unit = max(unit, c[-1])
    columns = max(1, INPUT_CACHE_BYTES // max(1, col_bytes) - 2)
    return max(1, columns * unit // max(1, max(plan.in_chunks[-1])))


def tile_shape(nblocks: Sequence[int], strip: int, threads: int) -> tuple[int, int]:
    """The tiles' width in block columns and height in block rows (rows: every leading axis
    flattened) that :func:`tiles` cuts the blocks into."""
    *lead, ncols = nblocks
    rows = math.prod(lead)
    want = max(1, TILES_PER_THREAD * threads)
    nstrips = max(-(-ncols // max(1, strip)), min(ncols, -(-want // max(1, rows))))
    width = -(-ncols // nstrips)
    nstrips = -(-ncols // width)
    per_strip = min(rows, max(1, -(-want // nstrips)))
    return width, -(-rows // per_strip)


def tile_count(nblocks: Sequence[int], strip: int, threads: int) -> int:
    """How many tiles :func:`tiles` makes of every block, without listing them."""
    *lead, ncols = nblocks
    width, height = tile_shape(nblocks, strip, threads)
    return -(-ncols // width) * -(-math.prod(lead) // height)


def tiles(nblocks: Sequence[int], strip: int, blocks: Sequence[tuple[int, ...]], threads: int) -> list[list[tuple[int, ...]]]:
    """``blocks`` cut into tasks for ``threads`` worker threads: strips of equal width (at most
    ``strip`` block columns), each cut into runs of whole block rows, so that there are about
    :data:`TILES_PER_THREAD` tasks per thread where the image has that many rows and strips.
    Within a tile the blocks are in strip order, so its chunk cache stays two chunk rows high."""
    *lead, _ = nblocks
    width, height = tile_shape(nblocks, strip, threads)
    wanted = set(map(tuple, blocks))
    out: dict[tuple[int, int], list[tuple[int, ...]]] = {}
    for idx in strip_order(nblocks, width):
        if idx not in wanted:
            continue
        row = int(np.ravel_multi_index(idx[:-1], lead)) if lead else 0
        out.setdefault((idx[-1] // width, row // height), []).append(idx)
    return list(out.values())


# --------------------------------------------------------------------------------------------
# sharded outputs: tasks of whole shards, a shard's blocks row-major


@dataclass(frozen=True)
class Shards:
    """How the processing blocks nest in the output's shards (``output.shards``): per axis, each
    block's shard and each shard's first block.  A last block merged with a narrow tail (see
    :func:`pipeline.plan.grid.plan_grid`) belongs to the shard it starts in, whose region then
    reaches the image's end: a shard here is a run of whole Zarr shards, written at once."""

    of: tuple[tuple[int, ...], ...]  #: per axis, per block: its shard
    first: tuple[tuple[int, ...], ...]  #: per axis, per shard: its first block, then the block count

    @property
    def nshards(self) -> tuple[int, ...]:
        return tuple(len(f) - 1 for f in self.first)

    def shard(self, index: Sequence[int]) -> tuple[int, ...]:
        """The shard block ``index`` lies in."""
        return tuple(of[k] for of, k in zip(self.of, index))

    def blocks(self, shard: Sequence[int], strip: int | None = None) -> list[tuple[int, ...]]:
        """The blocks of ``shard``: row-major, or with ``strip`` in strips of at most ``strip``
        block columns (:func:`~pipeline.storage.chunkcache.strip_order` within the shard)."""
        start = [f[s] for f, s in zip(self.first, shard)]
        local = [f[s + 1] - f[s] for f, s in zip(self.first, shard)]
        order = strip_order(local, local[-1] if strip is None else strip)
        return [tuple(a + b for a, b in zip(start, idx)) for idx in order]

    def group(self, index: Sequence[int], strip: int) -> tuple[int, int]:
        """The chunk cache of block ``index`` when each shard is visited in strips of ``strip``
        block columns: its shard column and its strip in that shard."""
        col = self.of[-1][index[-1]]
        return col, (index[-1] - self.first[-1][col]) // max(1, strip)


def shard_grid(plan: Plan) -> Shards | None:
    """The blocks' shards (None: an unsharded output)."""
    if plan.shards is None:
        return None
    of, first = [], []
    for chunks, side in zip(plan.out_chunks, plan.shards):
        starts = np.cumsum((0,) + tuple(chunks))[:-1]
        ids = tuple(int(s) // side for s in starts)
        of.append(ids)
        first.append(tuple(k for k in range(len(ids)) if k == 0 or ids[k] != ids[k - 1]) + (len(ids),))
    return Shards(tuple(of), tuple(first))


def shard_strip(plan: Plan, strip: int) -> int:
    """Shard columns per strip: the whole shard columns within ``strip`` block columns (at least one)."""
    assert plan.shards is not None
    return max(1, strip // max(1, plan.shards[-1] // plan.storage_chunks[-1]))


def task_grid(plan: Plan, strip: int) -> tuple[tuple[int, ...], int]:
    """The grid tasks are cut from (:func:`tiles`, :func:`tile_count`) and its strip width: the
    blocks, or the shards of a sharded output (every shard in one task)."""
    if plan.shards is None:
        return plan.nblocks, strip
    grid = shard_grid(plan)
    assert grid is not None
    return grid.nshards, shard_strip(plan, strip)


def whole_shards(plan: Plan, blocks: Sequence[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """``blocks`` with every other block of their shards (row-major; unsharded: ``blocks``)."""
    grid = shard_grid(plan)
    if grid is None:
        return list(blocks)
    return sorted({b for s in {grid.shard(idx) for idx in blocks} for b in grid.blocks(s)})


def standing(plan: Plan, done: set[tuple[int, ...]]) -> int:
    """How many of the ``done`` blocks a resume keeps: all of them, or for a sharded output
    those whose shard has every block done (a shard is written whole: :func:`whole_shards`)."""
    grid = shard_grid(plan)
    if grid is None:
        return len(done)
    per: dict[tuple[int, ...], int] = {}
    for idx in done:
        s = grid.shard(idx)
        per[s] = per.get(s, 0) + 1
    size = [[f[k + 1] - f[k] for k in range(len(f) - 1)] for f in grid.first]
    return sum(n for s, n in per.items() if n == math.prod(sz[k] for sz, k in zip(size, s)))


def task_tiles(plan: Plan, strip: int, blocks: Sequence[tuple[int, ...]], threads: int) -> list[list[tuple[int, ...]]]:
    """:func:`tiles` of ``blocks``; for a sharded output, tiles of whole shards (``blocks`` must
    hold every block of their shards), each shard's blocks in strips (:meth:`Shards.blocks`)."""
    grid = shard_grid(plan)
    if grid is None:
        return tiles(plan.nblocks, strip, blocks, threads)
    nshards, width = task_grid(plan, strip)
    parts = tiles(nshards, width, sorted({grid.shard(idx) for idx in blocks}), threads)
    return [[b for s in part for b in grid.blocks(s, strip)] for part in parts]


def ordered(plan: Plan, strip: int, blocks: Sequence[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """``blocks`` in strip order (:func:`~pipeline.storage.chunkcache.strip_order`); for a
    sharded output shard by shard in strip order of the shards, each shard's blocks in strips
    of ``strip`` block columns (:meth:`Shards.blocks`), so that the chunk cache stays as small as
    unsharded."""
    wanted = set(map(tuple, blocks))
    grid = shard_grid(plan)
    if grid is None:
        return [idx for idx in strip_order(plan.nblocks, strip) if idx in wanted]
    order = (b for s in strip_order(grid.nshards, shard_strip(plan, strip)) for b in grid.blocks(s, strip))
    return [idx for idx in order if idx in wanted]
