"""One block-task engine for every scheduler.

An output block is a task: read its input region with its halo, compute, write its chunks, record
it in the ledger (:meth:`Context.block`).  Blocks are run in *tiles*: a tile is a run of blocks
of one vertical strip (:func:`pipeline.storage.chunkcache.strip_order`) sharing one :class:`~pipeline.storage.chunkcache.HaloReader`,
so each input chunk is decoded about once per tile however many neighbouring blocks need it.
:func:`run_tile` runs a tile's blocks on a number of threads; it is the only block loop, whatever
runs it:

- ``threads`` / ``synchronous``: one tile holding every block (one cache per strip), run here on
  ``compute.workers`` threads (1 for synchronous);
- ``processes`` and every dask.distributed scheduler (``local-cluster``, ``tcp://``, ``tls://``,
  job queues, an active Client): the blocks are cut into tiles (:func:`tiles`), each tile one task
  (one thread) submitted to the session's executor (a process pool held by the session, or the
  Client); at most :data:`IN_FLIGHT` tasks per thread are pending, the next one is submitted as
  others finish (no barrier between rows, memory flat in the image size).

What a task carries is small (the prepared run: config, plan, array handles; a few KB), and each
worker process builds its readers and loads the compiled kernel once per run (:func:`_context`).
A worker killed mid-run loses its tasks; dask.distributed runs them again elsewhere, and a block
is recorded only after its chunks are written, so the output is the same.

Where blocks lie and how they are cut into tiles is :mod:`pipeline.execution.tiling` (re-exported here);
blocks are written through the run's output target (:mod:`pipeline.storage.targets`).  A sharded
output's tiles hold whole shards, and its blocks are copied into their shard, which is written
once, whole, with its last block (:mod:`pipeline.execution.assemble`).

Plans the chunk path does not cover (periodic boundaries, inputs broadcast to the plan's shape)
compute each block from the lazy ``map_overlap`` result (:func:`pipeline.kernels.ops.build`) culled to that
block, in the same loop.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.execution import interrupts, tiling
from pipeline.execution.assemble import Assembler, value_range
from pipeline.execution.tiling import INPUT_CACHE_BYTES, TILES_PER_THREAD, block_regions, input_regions, output_region, strip_width, tiles  # noqa: F401 - part of this module's API
from pipeline.plan.dtypes import as_computable
from pipeline.plan.planner import Plan
from pipeline.storage import io, ledger, sources, targets, zarrchunks
from pipeline.storage.chunkcache import HaloReader

if TYPE_CHECKING:
    from pipeline.execution.prepared import Prepared
    from pipeline.execution.sessions import Session

ProgressFn = Callable[[int, int], None]
Record = Callable[[tuple[int, ...]], None]  #: a ledger's recorder (one record per task: pipeline.storage.ledger.task_recorder) or any record(index)

def _ops() -> Any:
    """:mod:`pipeline.kernels.ops`, imported on first use: it loads numba (about a second), which
    a run that finds its output up to date never needs."""
    from pipeline.kernels import ops

    return ops


#: pending tasks per worker thread on process pools and clusters (one running, one queued)
IN_FLIGHT = 2


# --------------------------------------------------------------------------------------------
# the block function and the tile loop


def write(
    output: targets.OutputTarget, target: Any, record: Record | None, index: tuple[int, ...], region: tuple[slice, ...],
    block: np.ndarray, plan: Plan,
) -> tuple[Any, Any]:
    """Write one block through ``output`` to ``target`` (its writer; several statistics: each
    one's array), then (only then) record it as done; returns the block's min and max (several
    statistics: dicts statistic -> value), NaN and the fill value ignored."""
    if plan.multi:
        parts = _ops().unpack(plan, block)
        for st in plan.stats:
            output.write_block(target[st], region, parts[st])
        ranges = {st: value_range(parts[st], plan.fill_values.get(st)) for st in plan.stats}
        if record is not None:
            record(index)
        return {st: r[0] for st, r in ranges.items()}, {st: r[1] for st, r in ranges.items()}
    output.write_block(target, region, block)
    if record is not None:
        record(index)
    return value_range(block, plan.fill_values.get(plan.stats[0]))


@dataclass
class Job:
    """What every task needs: the prepared run, the output array(s), the block recorder.  Small
    and picklable; ``token`` names the run so a worker builds its :class:`Context` once."""

    prep: Prepared
    target: Any
    record: Record | None
    token: str


def _where(prep: Prepared, name: str) -> str:
    spec = prep.config.inputs[name]
    return f"inputs.{name} ({io.location(spec.path, spec.array)})"


def checked_input(prep: Prepared, name: str, arr: Any) -> Any:
    """An input whose failing chunk reads name the input and the chunk key."""
    return sources.checked(arr, _where(prep, name))


def lazy_input(prep: Prepared, name: str, arr: Any) -> Any:
    """A dask view of an input whose chunk read errors name the array and the chunk key."""
    return sources.dask_view(arr, name, _where(prep, name))


def chunk_path(prep: Prepared) -> bool:
    """Whether blocks are read chunk by chunk (:class:`~pipeline.storage.chunkcache.HaloReader`): every input
    of the plan's shape (no broadcasting) and no periodic boundary (dask builds those halos)."""
    plan = prep.plan
    return not plan.wrap_axes and all(tuple(a.shape) == plan.in_shape for a in prep.arrays.values())


class Context:
    """A job's readers and writers in one process (built once per process and run)."""

    def __init__(self, job: Job) -> None:
        prep = job.prep
        plan = self.plan = prep.plan
        self.record = job.record
        out = prep.config.output
        self.output = targets.open_target(out.path, out.storage_options, out.format)
        self.target = self.output.writer(job.target)
        self.chunks = {n: sources.storage_chunks(a) for n, a in prep.arrays.items()}
        self.strip = strip_width(plan, list(self.chunks.values()), [a.dtype.itemsize for a in prep.arrays.values()])
        self.shards = tiling.shard_grid(plan)  # sharded: blocks assembled into whole shards
        self.assembler = Assembler(plan, self.output, self.target, self.shards) if self.shards is not None else None
        self.fast = chunk_path(prep)
        if self.fast:
            self.checked = {n: checked_input(prep, n, a) for n, a in prep.arrays.items()}
            self.direct = {n: zarrchunks.DirectChunks.of(a, getattr(self.checked[n], "name", n)) for n, a in prep.arrays.items()}
        else:
            self.result = _ops().build(plan, {n: lazy_input(prep, n, a) for n, a in prep.arrays.items()})

    def read(self, name: str, region: tuple[slice, ...]) -> np.ndarray:
        """One region of input ``name`` in its computable dtype (native byte order, float16 as float32)."""
        chunked = self.direct[name]
        if chunked is not None:  # one whole storage chunk, decoded in this thread
            return as_computable(chunked.read(tuple(sl.start // c for sl, c in zip(region, chunked.chunks))))
        return as_computable(sources.read_region(self.checked[name], region))

    def group(self, index: Sequence[int], by_strip: bool) -> Hashable:
        """The chunk cache a block reads through: one per strip, or one for the whole tile (a
        tile is never wider than a strip); sharded, one per strip of a shard column, whatever
        the tile (tiles of whole shards may be wider than a strip)."""
        if self.shards is not None:
            return self.shards.group(index, self.strip)
        return index[-1] // self.strip if by_strip else None

    def reader(self, blocks: Sequence[tuple[int, ...]], by_strip: bool = True) -> HaloReader | None:
        if not self.fast:
            return None
        return HaloReader(
            self.read,
            self.plan.in_shape,
            self.chunks,
            [input_regions(self.plan, idx) for idx in blocks],
            [self.group(idx, by_strip) for idx in blocks],  # a cache per strip or tile: memory flat in image size
        )

    def block(self, reader: HaloReader | None, index: tuple[int, ...], by_strip: bool = True, record: Record | None = None) -> tuple[Any, Any]:
        """The block task: read its inputs with their halo, compute, write, record (through
        ``record``, default the job's recorder)."""
        plan = self.plan
        if reader is not None:
            arrays = reader.read(input_regions(plan, index), group=self.group(index, by_strip))
            block = _ops().compute_block(plan, arrays, index)
            del arrays
        else:
            extra = (0,) if plan.multi else ()
            block = np.asarray(self.result.blocks[tuple(index) + extra].compute(scheduler="synchronous"))
        if self.assembler is not None:  # sharded: written with its shard's last block
            return self.assembler.add(index, block, record or self.record)
        return write(self.output, self.target, record or self.record, index, output_region(plan, index), block, plan)


def _merge(pick: Callable[[Any, Any], Any], a: Any, b: Any) -> Any:
    return a if b is None else b if a is None else pick(a, b)


class Tally:
    """The value range and the progress over the blocks written."""

    def __init__(self, total: int, progress: ProgressFn | None) -> None:
        self.total, self.progress = total, progress
        self.lo: Any = None
        self.hi: Any = None
        self.done = 0

    def add(self, bmin: Any, bmax: Any, n: int = 0) -> None:
        """Merge a block's range (values, or dicts statistic -> value; None: no result) and
        count ``n`` more blocks done."""
        if isinstance(bmin, Mapping):
            self.lo = {st: _merge(min, (self.lo or {}).get(st), v) for st, v in bmin.items()}
            self.hi = {st: _merge(max, (self.hi or {}).get(st), v) for st, v in bmax.items()}
        else:
            self.lo = _merge(min, self.lo, bmin)
            self.hi = _merge(max, self.hi, bmax)
        if n:
            self.done += n
            if self.progress is not None:
                self.progress(self.done, self.total)


def run_tile(
    ctx: Context,
    blocks: Sequence[tuple[int, ...]],
    threads: int = 1,
    on_block: Callable[[Any, Any], None] | None = None,
    by_strip: bool = True,
) -> tuple[int, Any, Any]:
    """Run the block task of every block of ``blocks`` (in strip order) on ``threads`` threads,
    at most one block queued beyond those running; ``on_block(min, max)`` is called here after
    each block.  Returns (blocks, min, max)."""
    reader = ctx.reader(blocks, by_strip)
    tally = Tally(len(blocks), None)
    record = ledger.task_recorder(ctx.record)  # the ledgers: one record per task

    def done(result: tuple[Any, Any]) -> None:
        tally.add(*result)
        if on_block is not None:
            on_block(*result)

    try:
        if threads <= 1 or len(blocks) <= 1:
            for idx in blocks:
                done(ctx.block(reader, idx, by_strip, record))
        else:
            with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="pipeline") as pool:
                _bounded(lambda idx: pool.submit(ctx.block, reader, idx, by_strip, record), wait, blocks, threads + 1, done)
    finally:
        if ctx.assembler is not None:
            ctx.assembler.discard(blocks)  # shards left unfinished by an error
        if record is not None:
            record.close()  # what was written is recorded, also when the tile stops on an error
    return len(blocks), tally.lo, tally.hi


def _bounded(submit: Callable[[Any], Any], wait_first: Callable[..., Any], items: Sequence[Any], limit: int, done: Callable[[Any], None]) -> None:
    """Submit ``items`` keeping at most ``limit`` pending; ``done(result)`` for each, here.  A
    SIGTERM/SIGINT meanwhile is raised between two waits (:mod:`pipeline.execution.interrupts`)."""
    pending: set = set()
    with interrupts.deferring():
        try:
            for item in items:
                pending.add(submit(item))
                while len(pending) >= limit:
                    pending = _next(wait_first, pending, done)
            while pending:
                pending = _next(wait_first, pending, done)
        except BaseException:
            for f in pending:
                f.cancel()
            raise


def _next(wait_first: Callable[..., Any], pending: set, done: Callable[[Any], None]) -> set:
    """Wait for a future of ``pending`` (at most :data:`~pipeline.execution.interrupts.POLL_S`),
    hand the finished ones' results to ``done``, raise a deferred signal; the rest."""
    finished, rest = wait_first(pending, return_when=FIRST_COMPLETED, timeout=interrupts.POLL_S)
    for f in finished:
        done(f.result())
    interrupts.check()
    return set(rest)


# --------------------------------------------------------------------------------------------
# worker side: one context per process and job

_contexts: OrderedDict[str, Context] = OrderedDict()
_contexts_lock = threading.Lock()


def _context(job: Job) -> Context:
    """This process's :class:`Context` for ``job`` (built on its first task; the last two jobs
    are kept, so a long-lived worker does not accumulate them)."""
    with _contexts_lock:
        ctx = _contexts.get(job.token)
        if ctx is None:
            ctx = Context(job)
            _contexts[job.token] = ctx
            while len(_contexts) > 2:
                _contexts.popitem(last=False)
        return ctx


def prime(job: Job) -> int:
    """Build this process's context for ``job`` and compute (without writing) its first block,
    so that the compiled kernels are loaded before the tiles arrive; the process id."""
    ctx = _context(job)
    first = next(iter(block_regions(ctx.plan)))[0]
    reader = ctx.reader([first])
    if reader is not None:  # ctx.fast
        _ops().compute_block(ctx.plan, reader.read(input_regions(ctx.plan, first), group=ctx.group(first, True)), first)
    return os.getpid()


def _prime_workers(session: Session, job: Job) -> None:
    """:func:`prime` on every worker process (dask.distributed: each worker; a process pool:
    one task per process, submitted at once)."""
    t0 = time.perf_counter()
    if session.client is not None:
        session.client.run(prime, job)
    else:
        for f in [session.executor.submit(prime, job) for _ in range(session.threads)]:
            f.result()
    session.prime_seconds += time.perf_counter() - t0


def remote_tile(job: Job, blocks: Sequence[tuple[int, ...]]) -> tuple[int, Any, Any]:
    """A tile as a task on a worker process (one thread)."""
    return run_tile(_context(job), [tuple(b) for b in blocks], 1, by_strip=False)


# --------------------------------------------------------------------------------------------
# the driver


def execute(
    prep: Prepared,
    target: Any,
    session: Session,
    *,
    blocks: Sequence[tuple[int, ...]] | None = None,
    record: Record | None = None,
    progress: ProgressFn | None = None,
) -> tuple[int, Any, Any]:
    """Compute and write the output blocks ``blocks`` (default: all) on ``session``; see the
    module docstring.  Returns (blocks written, min, max)."""
    plan = prep.plan
    todo = [idx for idx, _ in block_regions(plan)] if blocks is None else tiling.whole_shards(plan, [tuple(b) for b in blocks])
    job = Job(prep, target, record, uuid.uuid4().hex)
    tally = Tally(len(todo), progress)
    if session.executor is None:  # threads / synchronous: here, one tile, a cache per strip
        ctx = Context(job)
        run_tile(ctx, tiling.ordered(plan, ctx.strip, todo), session.threads, lambda lo, hi: tally.add(lo, hi, n=1))
        return len(todo), tally.lo, tally.hi
    strip = strip_width(plan, [sources.storage_chunks(a) for a in prep.arrays.values()], [a.dtype.itemsize for a in prep.arrays.values()])
    parts = tiling.task_tiles(plan, strip, todo, session.threads)
    if len(parts) > 1 and getattr(session, "prime_seconds", None) is not None:
        _prime_workers(session, job)
    _bounded(
        lambda tile: session.submit(remote_tile, job, tile),
        session.wait,
        parts,
        IN_FLIGHT * session.threads,
        lambda r: tally.add(r[1], r[2], n=r[0]),
    )
    return len(todo), tally.lo, tally.hi

