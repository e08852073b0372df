"""Running a config: open inputs, plan, create the output, execute block writes.

Data flows one way: config -> inputs (metadata only) -> plan -> lazy result -> output -> execute.
``prepare`` does everything up to (not including) creating the output, so ``pipeline validate``
and ``pipeline run`` share it and a bad config or input never touches the disk.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from . import io, ops, runtime
from .config import Config, load_config
from .errors import InputError
from .halo import HaloReader, strip_order
from .plan import ArraySpec, Plan, make_plan

ProgressFn = Callable[[int, int], None]


@dataclass
class Prepared:
    """A validated run: config, opened inputs (lazily), and the plan."""

    config: Config
    arrays: dict[str, Any]  #: name -> zarr.Array, for the inputs the expression uses
    specs: dict[str, ArraySpec]
    plan: Plan
    coords: dict[str, Any] = field(default_factory=dict)  #: output dim -> 1-D coordinate array (lazy)
    attrs: dict[str, Any] = field(default_factory=dict)  #: attributes carried over from the inputs


@dataclass
class RunResult:
    output: str
    array: str
    shape: tuple[int, ...]
    dtype: str
    blocks: int
    seconds: float
    minimum: Any = None
    maximum: Any = None

    def summary(self) -> str:
        mpix = math.prod(self.shape) / 1e6
        rng = f", values in [{self.minimum}, {self.maximum}]" if self.minimum is not None else ""
        return (
            f"wrote {io.describe(self.output, self.array)}: shape {self.shape}, dtype {self.dtype}{rng}; "
            f"{self.blocks} blocks in {self.seconds:.2f} s ({mpix / max(self.seconds, 1e-9):.1f} Mpix/s)"
        )


def prepare(config: Config | str | os.PathLike[str] | Mapping[str, Any]) -> Prepared:
    """Validate a config against its inputs and plan the run; reads metadata only."""
    cfg = config if isinstance(config, Config) else load_config(config)
    zarrs = {}
    specs = {}
    for name, spec in cfg.inputs.items():
        where = f"inputs.{name}"
        arr = io.open_input(spec.path, spec.array, where=where, storage_options=spec.storage_options)
        zarrs[name] = arr
        specs[name] = io.spec_of(name, arr, io.describe(spec.path, spec.array))
    plan = make_plan(
        cfg.op,
        specs,
        size=cfg.window.size,
        reduce=cfg.window.reduce,
        boundary=cfg.window.boundary,
        chunks=cfg.compute.chunks,
        cval=cfg.window.cval,
        shape=cfg.window.shape,
        weights=cfg.window.weights,
        axes=cfg.window.axes,
        nodata={n: s.nodata for n, s in cfg.inputs.items()},
        dtype=cfg.output.dtype,
        fill_value=cfg.output.fill_value,
    )
    used = {n: zarrs[n] for n in plan.expr.names}
    io.check_not_overlapping(cfg.output.path, {n: cfg.inputs[n].path for n in plan.expr.names})
    first = plan.expr.names[0]
    coords = {}
    if specs[first].dims:
        spec = cfg.inputs[first]
        coords = io.input_coords(spec.path, spec.array, specs[first].dims, specs[first].shape, spec.storage_options)
    return Prepared(config=cfg, arrays=used, specs=specs, plan=plan, coords=coords, attrs=_common_attrs(used))


def _common_attrs(arrays: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes present with equal values on every input (xarray's 'drop_conflicts')."""
    dicts = [dict(a.attrs) for a in arrays.values()]
    common = dict(dicts[0]) if dicts else {}
    for d in dicts[1:]:
        common = {k: v for k, v in common.items() if k in d and d[k] == v}
    common.pop("_ARRAY_DIMENSIONS", None)
    common.pop("pipeline", None)
    return common


def provenance(prep: Prepared) -> dict[str, Any]:
    from . import __version__

    cfg = prep.config
    return {
        "version": __version__,
        "config": cfg.model_dump(mode="json"),
        "inputs": {
            n: {
                "path": cfg.inputs[n].path,
                "array": cfg.inputs[n].array,
                "shape": list(prep.specs[n].shape),
                "dtype": str(prep.specs[n].dtype),
            }
            for n in prep.plan.expr.names
        },
        "op": prep.plan.expr.text,
        "window": {"size": list(prep.plan.size), "reduce": prep.plan.reduce, "boundary": prep.plan.boundary},
    }


def output_names(plan: Plan, array: str) -> dict[str, str]:
    """The output array per statistic: ``array`` for one statistic, ``<array>_<stat>`` for
    several."""
    if not plan.multi:
        return {plan.stats[0]: array}
    return {st: f"{array}_{st}" for st in plan.stats}


def _out_coords(prep: Prepared) -> dict[str, np.ndarray]:
    plan = prep.plan
    out = {}
    for ax, dim in enumerate(plan.dims):
        if dim not in prep.coords:
            continue
        values = np.asarray(prep.coords[dim][...])
        if plan.boundary == "valid" and ax in plan.window_axes:
            i = plan.window_axes.index(ax)
            values = values[plan.lo[i] : plan.in_shape[ax] - plan.hi[i]]
        out[dim] = values
    return out


def block_regions(plan: Plan) -> Iterator[tuple[tuple[int, ...], tuple[slice, ...]]]:
    """Each output block's index and its region in the output array."""
    offsets = [np.cumsum((0,) + c) for c in plan.out_chunks]
    for idx in itertools.product(*(range(len(c)) for c in plan.out_chunks)):
        yield idx, tuple(slice(int(o[i]), int(o[i + 1])) for o, i in zip(offsets, idx))


def _range(block: np.ndarray) -> tuple[Any, Any]:
    if block.size == 0:
        return None, None
    if block.dtype.kind == "f":
        finite = block[~np.isnan(block)]
        if finite.size == 0:
            return None, None
        return finite.min().item(), finite.max().item()
    return block.min().item(), block.max().item()


def _write(
    target: Any, record: Callable[[tuple[int, ...]], None] | None, index: tuple[int, ...], region: tuple[slice, ...], block: np.ndarray,
    plan: Plan | None = None,
) -> tuple[Any, Any]:
    """Write one block (several statistics: each one's array), then (only then) record it as
    done; returns the (first statistic's) block's min and max, NaN ignored."""
    if plan is not None and plan.multi:
        parts = ops.unpack(plan, block)
        for st in plan.stats:
            io.write_block(target[st], region, parts[st])
        block = parts[plan.stats[0]]
    else:
        io.write_block(target, region, block)
    if record is not None:
        record(index)
    return _range(block)


def _scheduler_kwargs(cfg: Config) -> dict[str, Any]:
    return runtime.compute_kwargs(cfg)


def execute(
    prep: Prepared,
    target: Any,
    *,
    blocks: Sequence[tuple[int, ...]] | None = None,
    record: Callable[[tuple[int, ...]], None] | None = None,
    progress: ProgressFn | None = None,
) -> tuple[int, Any, Any]:
    """Compute and write the output blocks ``blocks`` (default: all), calling ``record(index)``
    inside the task right after each block is written; returns (blocks written, min, max).
    With several statistics ``target`` maps each statistic to its array; a block index covers
    the block of every statistic.

    ``record`` runs where the task runs (a thread, a process or a cluster worker), so it must be
    picklable and reach shared state (e.g. a file beside the output).

    With the ``threads`` and ``synchronous`` schedulers each block is one plain task on a thread
    pool (:func:`_execute_direct`): read its inputs with their halo, compute, write, record.  No
    task graph, a bounded number of blocks in flight (memory does not grow with the image), and
    the kernel and the codecs release the GIL, so the threads run in parallel.  Other schedulers
    go through dask (:func:`_execute_dask`)."""
    if _direct(prep):
        return _execute_direct(prep, target, blocks=blocks, record=record, progress=progress)
    return _execute_dask(prep, target, blocks=blocks, record=record, progress=progress)


def _direct(prep: Prepared) -> bool:
    """Whether the direct executor runs this: local threads (or synchronous), every input of
    the plan's shape (no broadcasting), no periodic boundary (dask builds those halos)."""
    cfg, plan = prep.config, prep.plan
    if cfg.compute.cluster is not None or plan.wrap_axes:
        return False
    if any(tuple(a.shape) != plan.in_shape for a in prep.arrays.values()):
        return False
    mode = runtime.resolve(cfg)
    if mode not in ("threads", "synchronous"):
        return False
    runtime.check_storage(cfg, mode)
    return True


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


#: Decoded input chunks the direct executor may cache (see :mod:`pipeline.halo`): blocks are
#: visited in vertical strips narrow enough that about three block rows of a strip fit in it.
INPUT_CACHE_BYTES = 128 * 2**20


def strip_width(plan: Plan, chunks: Sequence[Sequence[int]], itemsizes: Sequence[int]) -> int:
    """Block columns per strip so that the decoded-chunk cache (about three rows of storage
    chunks, two columns beyond the strip) stays within :data:`INPUT_CACHE_BYTES`."""
    bw = max(plan.in_chunks[-1]) + 2 * plan.depth[-1]
    col_bytes = 0  # three chunk rows of one chunk column, all inputs
    unit = bw
    for c, size in zip(chunks, itemsizes):
        rows = max(c[-2] if len(c) > 1 else 1, max(plan.in_chunks[-2]) if plan.ndim > 1 else 1)
        lead = math.prod(max(ch) for ch in plan.in_chunks[:-2])
        col_bytes += 3 * lead * rows * max(c[-1], bw) * size
        unit = max(unit, c[-1])
    columns = max(1, INPUT_CACHE_BYTES // max(1, col_bytes) - 2)
    return max(1, columns * unit // max(1, max(plan.in_chunks[-1])))


def _block_task(
    prep: Prepared,
    target: Any,
    record: Callable[[tuple[int, ...]], None] | None,
    reader: Any,
    index: tuple[int, ...],
    region: tuple[slice, ...],
) -> tuple[Any, Any]:
    plan = prep.plan
    arrays = reader.read(input_regions(plan, index))
    block = ops.compute_block(plan, arrays, index)
    del arrays
    return _write(target, record, index, region, block, plan=plan)


def _execute_direct(
    prep: Prepared,
    target: Any,
    *,
    blocks: Sequence[tuple[int, ...]] | None = None,
    record: Callable[[tuple[int, ...]], None] | None = None,
    progress: ProgressFn | None = None,
) -> tuple[int, Any, Any]:
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    plan = prep.plan
    wanted = None if blocks is None else set(map(tuple, blocks))
    regions = dict(block_regions(plan))
    chunks = {n: io.read_chunks(a) for n, a in prep.arrays.items()}
    order = strip_order(plan.nblocks, strip_width(plan, list(chunks.values()), [a.dtype.itemsize for a in prep.arrays.values()]))
    todo = [(idx, regions[idx]) for idx in order if wanted is None or idx in wanted]
    total = len(todo)
    workers = 1 if runtime.resolve(prep.config) == "synchronous" else (prep.config.compute.workers or os.cpu_count() or 1)
    reader = HaloReader(
        lambda name, region: io.read_region(prep.arrays[name], region),
        plan.in_shape,
        chunks,
        [input_regions(plan, idx) for idx, _ in todo],
    )
    lo = hi = None
    done = 0

    def finish(result: tuple[Any, Any]) -> None:
        nonlocal lo, hi, done
        bmin, bmax = result
        if bmin is not None:
            lo = bmin if lo is None else min(lo, bmin)
            hi = bmax if hi is None else max(hi, bmax)
        done += 1
        if progress is not None:
            progress(done, total)

    if workers == 1:
        for idx, region in todo:
            finish(_block_task(prep, target, record, reader, idx, region))
        return total, lo, hi
    # at most one block queued beyond those running: memory stays bounded whatever the image size
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pipeline") as pool:
        pending: set = set()
        it = iter(todo)
        try:
            for idx, region in it:
                pending.add(pool.submit(_block_task, prep, target, record, reader, idx, region))
                if len(pending) > workers:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in finished:
                        finish(f.result())
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    finish(f.result())
        except BaseException:
            for f in pending:
                f.cancel()
            raise
    return total, lo, hi


def _execute_dask(
    prep: Prepared,
    target: Any,
    *,
    blocks: Sequence[tuple[int, ...]] | None = None,
    record: Callable[[tuple[int, ...]], None] | None = None,
    progress: ProgressFn | None = None,
) -> tuple[int, Any, Any]:
    """Compute and write the output blocks ``blocks`` (default: all), calling ``record(index)``
    inside the task right after each block is written; returns (blocks written, min, max).

    ``record`` runs where the task runs (a thread, a process or a cluster worker), so it must be
    picklable and reach shared state (e.g. a file beside the output)."""
    import dask
    import dask.array as da

    plan = prep.plan
    lazy = {n: da.from_zarr(a) for n, a in prep.arrays.items()}
    result = ops.build(plan, lazy)
    delayed_blocks = result.to_delayed(optimize_graph=True)
    write = partial(_write, target, record, plan=plan)
    wanted = None if blocks is None else set(map(tuple, blocks))
    extra = (0,) if plan.multi else ()
    tasks = [
        dask.delayed(write, pure=True)(idx, region, delayed_blocks[idx + extra])
        for idx, region in block_regions(plan)
        if wanted is None or idx in wanted
    ]
    kw = _scheduler_kwargs(prep.config)
    lo = hi = None
    total = len(tasks)
    # a batch per row of blocks keeps memory bounded by a few rows, whatever the image size
    per_batch = max(1, math.prod(plan.nblocks[1:]) if plan.ndim > 1 else total)
    done = 0
    for start in range(0, total, per_batch):
        batch = tasks[start : start + per_batch]
        for bmin, bmax in dask.compute(*batch, **kw):
            if bmin is None:
                continue
            lo = bmin if lo is None else min(lo, bmin)
            hi = bmax if hi is None else max(hi, bmax)
        done += len(batch)
        if progress is not None:
            progress(done, total)
    return total, lo, hi


def run(
    config: Config | str | os.PathLike[str] | Mapping[str, Any],
    *,
    progress: ProgressFn | None = None,
    notify: runtime.Notify | None = None,
) -> RunResult:
    """Run a config (a path, a mapping or a :class:`Config`) and return what was written.

    ``notify`` receives one-line messages about the scheduler (dashboard link, warnings)."""
    t0 = time.perf_counter()
    prep = prepare(config)
    # the scheduler/cluster is up and checked (storage reachable, tasks fit) before anything is written
    with runtime.session(prep.config, task_bytes=prep.plan.task_bytes, notify=notify):
        return _run(prep, t0, progress)


def _run(prep: Prepared, t0: float, progress: ProgressFn | None) -> RunResult:
    cfg, plan = prep.config, prep.plan
    so = cfg.output.storage_options
    names = output_names(plan, cfg.output.array)
    for name in names.values():
        if io.output_exists(cfg.output.path, name, so) and not cfg.output.overwrite:
            raise io.OutputError(
                f"{io.describe(cfg.output.path, name)} already exists; set output.overwrite: true to replace it",
                where="output.path",
            )
    targets = {}
    for st, name in names.items():
        fill = plan.fill_values.get(st)
        attrs = {**prep.attrs, "pipeline": {**provenance(prep), "statistic": st}}
        if fill is not None:
            attrs["fill_value"] = "NaN" if fill != fill else fill  # windows without a valid pixel
        targets[st] = io.create_output(
            cfg.output.path,
            name,
            shape=plan.out_shape,
            dtype=plan.out_dtypes[st],
            chunks=plan.storage_chunks,
            dims=plan.dims,
            attrs=attrs,
            coords=_out_coords(prep),
            fill_value=fill if fill is not None else 0,
            overwrite=cfg.output.overwrite,
            storage_options=so,
        )
    target = targets if plan.multi else targets[plan.stats[0]]
    blocks, lo, hi = execute(prep, target, progress=progress)
    io.finalize(cfg.output.path, so)
    return RunResult(
        output=cfg.output.path,
        array=", ".join(names.values()),
        shape=plan.out_shape,
        dtype=", ".join(str(plan.out_dtypes[st]) for st in plan.stats),
        blocks=blocks,
        seconds=time.perf_counter() - t0,
        minimum=lo,
        maximum=hi,
    )
