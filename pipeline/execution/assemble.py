"""Sharded outputs (``output.shards``): a shard computed in blocks and written once, whole.

A Zarr shard is one stored object; writing part of it makes zarr read the object, merge and
write it back (and two tasks writing parts of one shard would lose each other's parts).  So the
tasks are made of whole shards (:func:`pipeline.execution.tiling.task_tiles`), and within a task
the processing blocks stay the size they have unsharded (the output chunks): the block task
computes a block as always, and :class:`Assembler` copies it into its shard's buffer (one per
statistic).  When a shard's last block is in, the shard's region is written at once (one
:meth:`~pipeline.storage.targets.OutputTarget.write_block` per statistic, so zarr encodes and
stores the shard object whole, without reading it) and only then are its blocks recorded as
done.  A buffer exists only while its shard has blocks in flight, so a task holds one block's
working set per thread and one or two shards' output, not a whole shard's inputs and temporaries.

Unsharded outputs never come here: each block is written by :func:`pipeline.execution.engine.write`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.execution.tiling import Shards
from pipeline.plan.planner import Plan
from pipeline.storage import targets

Record = Callable[[tuple[int, ...]], None]

#: NaN-skipping reductions (numpy >= 2.5's stubs accept ``ufunc.reduce`` only with ``out=``: typed loosely)
_FMIN: Any = np.fmin.reduce
_FMAX: Any = np.fmax.reduce


def value_range(block: np.ndarray, fill: Any = None) -> tuple[Any, Any]:
    """The block's min and max over its results: NaN and the fill value (windows without a
    valid pixel) excluded; (None, None) when nothing is left.  One pass each (``fmin``/``fmax``
    skip NaN); the values are copied without the fill only when the fill is an extreme."""
    if block.size == 0:
        return None, None
    if block.dtype.kind == "f":
        lo, hi = _FMIN(block, axis=None), _FMAX(block, axis=None)
        if lo != lo:  # all NaN
            return None, None
    else:
        lo, hi = block.min(), block.max()
    if fill is not None and fill == fill and (lo == fill or hi == fill):
        block = block[block != fill]
        if block.dtype.kind == "f":
            block = block[~np.isnan(block)]
        if block.size == 0:
            return None, None
        lo, hi = block.min(), block.max()
    return lo.item(), hi.item()


def write_shard(output: targets.OutputTarget, target: Any, region: tuple[slice, ...], parts: dict[str, np.ndarray], plan: Plan) -> None:
    """Write a whole shard's region: one write per statistic (``target``: its writer; several
    statistics: each one's)."""
    if plan.multi:
        for st in plan.stats:
            output.write_block(target[st], region, parts[st])
    else:
        output.write_block(target, region, parts[plan.stats[0]])


@dataclass
class _Shard:
    region: tuple[slice, ...]
    parts: dict[str, np.ndarray]  #: statistic -> the shard's values
    left: set[tuple[int, ...]] = field(default_factory=set)  #: blocks not in yet


class Assembler:
    """The shards in flight of one process: each block's values copied into its shard's buffers,
    each shard written once when its last block is in, then its blocks recorded.  Thread-safe;
    a block given twice (a task run again) is copied again, harmlessly."""

    def __init__(self, plan: Plan, output: targets.OutputTarget, target: Any, grid: Shards) -> None:
        self.plan, self.output, self.target, self.grid = plan, output, target, grid
        self.edges = [np.cumsum((0,) + tuple(c)) for c in plan.out_chunks]
        self.lock = threading.Lock()
        self.open: dict[tuple[int, ...], _Shard] = {}

    def _shard(self, shard: tuple[int, ...]) -> _Shard:
        """The buffers of ``shard``, made on its first block (under the lock)."""
        sh = self.open.get(shard)
        if sh is None:
            first = self.grid.first
            region = tuple(slice(int(e[f[s]]), int(e[f[s + 1]])) for e, f, s in zip(self.edges, first, shard))
            shape = tuple(r.stop - r.start for r in region)
            parts = {st: np.empty(shape, self.plan.out_dtypes[st]) for st in self.plan.stats}
            sh = self.open[shard] = _Shard(region, parts, set(self.grid.blocks(shard)))
        return sh

    def add(self, index: tuple[int, ...], block: np.ndarray, record: Record | None) -> tuple[Any, Any]:
        """Copy block ``index`` (the engine's result: packed for several statistics) into its
        shard; write the shard and record its blocks if it was the last.  Returns the block's
        min and max as :func:`pipeline.execution.engine.write` does."""
        plan = self.plan
        if plan.multi:
            from pipeline.kernels import ops

            parts = ops.unpack(plan, block)
        else:
            parts = {plan.stats[0]: block}
        shard = self.grid.shard(index)
        with self.lock:
            sh = self._shard(shard)
        local = tuple(slice(int(e[k]) - r.start, int(e[k + 1]) - r.start) for e, k, r in zip(self.edges, index, sh.region))
        for st, values in parts.items():
            sh.parts[st][local] = values
        with self.lock:
            sh.left.discard(index)
            complete = not sh.left and self.open.get(shard) is sh
            if complete:
                del self.open[shard]
        if complete:
            write_shard(self.output, self.target, sh.region, sh.parts, plan)
            del sh  # the shard's buffers go before its blocks are recorded
            if record is not None:
                for b in self.grid.blocks(shard):
                    record(b)
        ranges = {st: value_range(v, plan.fill_values.get(st)) for st, v in parts.items()}
        if plan.multi:
            return {st: r[0] for st, r in ranges.items()}, {st: r[1] for st, r in ranges.items()}
        return ranges[plan.stats[0]]

    def discard(self, blocks: Sequence[tuple[int, ...]]) -> None:
        """Forget the unfinished shards of ``blocks`` (a task that stopped: its shards are
        computed again, whole, by whatever runs it again)."""
        with self.lock:
            for shard in {self.grid.shard(b) for b in blocks}:
                self.open.pop(shard, None)
