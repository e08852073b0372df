"""What a run of a config would do, without computing or writing anything (``run --dry-run``,
``validate``): the same checks as a run (config, inputs, readiness, output), and a verdict on the
output: ``new``, ``up-to-date``, ``would-resume``, ``would-replace``, ``refused``, ``locked`` or
``not-ready`` (the last three with the reason)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from pipeline.config.load import LOCAL_SCHEDULERS, Config
from pipeline.errors import ExitCode, LockedError, OutputError
from pipeline.execution import sessions, tiling
from pipeline.execution.clusters import cluster_workers
from pipeline.runner import readiness, runconfig
from pipeline.storage import io, ledger, sources, targets, urlledger, urllock
from pipeline.storage.lock import is_stale, read_lock

#: verdict -> exit code that the run would have (before computing)
VERDICT_CODES = {
    "new": ExitCode.OK,
    "up-to-date": ExitCode.OK,
    "would-resume": ExitCode.OK,
    "would-replace": ExitCode.OK,
}


@dataclass
class Preview:
    verdict: str
    detail: str
    prepared: Any = None  #: runner.Prepared
    unstored: list[readiness.InputReadiness] = field(default_factory=list)


def preview(cfg: Config, *, overwrite: bool | None = None) -> Preview:
    """The verdict for ``cfg``.  User errors (bad input, not ready) are raised as in a run; an
    output that a run would refuse or find locked is a verdict (``refused`` / ``locked``)."""
    readiness.check_markers(cfg)
    mode = sessions.resolve(cfg)  # what run refuses (e.g. compute.scheduler with compute.cluster)
    prep = runconfig.prepare(cfg)
    if mode in LOCAL_SCHEDULERS:  # a task larger than this machine: refused here as by run
        workers = 1 if mode == "synchronous" else cfg.compute.workers or os.cpu_count() or 1
        sessions.check_local_memory(prep.plan.task_bytes, workers)
    unstored = readiness.check(cfg, prep.arrays)
    overwrite = cfg.output.overwrite if overwrite is None else overwrite
    out = Preview("new", "the output does not exist yet: every block would be computed", prep, unstored)
    path, array = cfg.output.path, cfg.output.array
    where = io.location(path, array)
    blocks = math.prod(prep.plan.nblocks)
    out.detail += f"; {work(prep, planned_threads(cfg, mode), mode)}"
    names = runconfig.output_names(prep.plan, array)
    if not io.is_local(path):
        held = urllock.holder(f"{urlledger.sidecar(path)}/lock", cfg.output.storage_options)
        if held is not None:
            out.verdict = "locked"
            out.detail = f"{where} is locked by another run (pid {held.get('pid')} on {held.get('host')})"
            return out
        if any(io.output_exists(path, n, cfg.output.storage_options) for n in names.values()):
            if overwrite:
                out.verdict, out.detail = "would-replace", f"{where} exists and would be replaced ({blocks} blocks)"
            else:
                out.verdict, out.detail = "refused", f"{where} already exists; pass --overwrite (or set output.overwrite: true) to replace it"
        return out
    store = io.local_path(path)
    info = read_lock(ledger.sidecar(store) / "lock")
    if info is not None and not is_stale(info):
        out.verdict = "locked"
        out.detail = f"{where} is locked by another run (pid {info.get('pid')} on {info.get('host')})"
        return out
    fp = ledger.fingerprint(runconfig.fingerprint_doc(prep))
    target = targets.open_target(path, cfg.output.storage_options, cfg.output.format)
    states = {n: target.state(n) for n in names.values()}
    present = [st for st in states.values() if st is not None]
    if not present:
        return out
    if any(st.get("fingerprint") != fp for st in present) or len(present) < len(states):
        if overwrite:
            out.verdict, out.detail = "would-replace", f"{where} was written by a different config, inputs or version and would be replaced ({blocks} blocks)"
        else:
            out.verdict = "refused"
            out.detail = (
                f"{where} already exists and was written by a different config, inputs or version; "
                "pass --overwrite (or set output.overwrite: true) to replace it"
            )
    elif all(st.get("complete") for st in present):
        out.verdict, out.detail = "up-to-date", f"{where} is complete: nothing to compute"
    else:
        found = ledger.find(store, array, fp)
        done = tiling.standing(prep.plan, found[0].done()) if found is not None else 0  # sharded: whole shards
        out.verdict, out.detail = "would-resume", f"{where} is partly written: {done} of {blocks} blocks done, {blocks - done} to compute"
    return out


def planned_threads(cfg: Config, mode: str) -> int | None:
    """The threads a run of ``cfg`` would run block tasks on, where the config says (local
    schedulers, ``local-cluster``, ``compute.cluster``); None for a scheduler found at run time."""
    if mode in LOCAL_SCHEDULERS:
        return 1 if mode == "synchronous" else cfg.compute.workers or os.cpu_count() or 1
    if mode == "local-cluster":
        return (cfg.compute.workers or os.cpu_count() or 1) * (cfg.compute.threads_per_worker or 1)
    if cfg.compute.cluster is not None:
        return sum(w["nthreads"] for w in cluster_workers(cfg.compute.cluster))
    return None


def work(prep: Any, threads: int | None, mode: str | None = None) -> str:
    """What a whole run of ``prep`` makes, counted from the plan alone (nothing is listed per
    block): its blocks, the tasks (tiles) a process pool or cluster gets, the output chunk
    (or shard) objects and the ledger records: one per task (local disks: one in all for the
    ``threads`` and ``synchronous`` schedulers ``mode``, which run one tile; object storage: also
    one per :data:`~pipeline.storage.urlledger.FLUSH_S` of a long task)."""
    plan = prep.plan
    blocks = math.prod(plan.nblocks)
    strip = tiling.strip_width(plan, [sources.storage_chunks(a) for a in prep.arrays.values()], [a.dtype.itemsize for a in prep.arrays.values()])
    tasks = tiling.tile_count(*tiling.task_grid(plan, strip), threads or 1)  # sharded: tasks of whole shards
    on = f"on {threads} threads" if threads else "per worker thread"
    chunks = math.prod(-(-n // c) for n, c in zip(plan.out_shape, plan.object_shape)) * len(plan.stats)
    one_tile = mode in ("threads", "synchronous")  # the whole run is one tile, in this process
    if one_tile:
        tasks = 1
    if not io.is_local(prep.config.output.path):  # pipeline.storage.urlledger
        records = f"about {tasks:,} ledger record{'s' if tasks > 1 else ''} (one per task and per {urlledger.FLUSH_S:.0f} s of a long task)"
    elif one_tile:  # pipeline.storage.ledger: one tile, one record file
        records = f"1 ledger record (the {mode} scheduler records the whole run in one)"
    else:
        records = f"{tasks:,} ledger records (one per task)"
    kind = "shard" if plan.shards else "chunk"
    how = f"in one task {on} (the {mode} scheduler)" if one_tile else f"in {tasks:,} tasks {on}"
    return f"{blocks:,} blocks {how}, {chunks:,} output {kind} objects, {records}"


def exit_code(verdict: str) -> int:
    """The exit code a run would end with for this verdict (before computing)."""
    if verdict == "refused":
        return int(OutputError.exit_code)
    if verdict == "locked":
        return int(LockedError.exit_code)
    return int(VERDICT_CODES.get(verdict, ExitCode.OK))
