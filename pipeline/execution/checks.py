"""The checks a session makes before anything runs: stores the workers can reach, and tasks
that fit in a worker's (or this machine's) memory.  A refusal is a :class:`ClusterError`; a
risk is a warning through ``notify`` (or Python's warnings)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

from pipeline.config.load import Config
from pipeline.errors import PipelineError, UnavailableError
from pipeline.storage import io

Notify = Callable[[str], None]


class ClusterError(PipelineError):
    """The cluster cannot run this job as configured (unreachable scheduler, no workers, a task
    larger than a worker's memory, a store the workers cannot reach, a missing extra)."""


class ClusterUnavailableError(ClusterError, UnavailableError):
    """The scheduler cannot be reached, or no worker joined it in time: transient, exit code 6."""


def check_storage(cfg: Config, mode: str) -> None:
    """Refuse stores the workers cannot see: a process-local ``memory://`` store with any
    scheduler that runs tasks in other processes."""
    if mode in ("threads", "synchronous"):
        return
    stores = [(f"inputs.{n}.path", s.path) for n, s in cfg.inputs.items()] + [("output.path", cfg.output.path)]
    for where, path in stores:
        if io.is_process_local(path):
            raise ClusterError(
                f"{path} is an in-memory store local to this process, which the workers of the "
                f"{mode} scheduler cannot reach; use a path or URL that every worker can reach "
                "(a shared file system, s3://, gs://), or scheduler threads",
                where=where,
            )


def check_memory(task_bytes: int, workers: list[dict[str, Any]], notify: Notify | None = None) -> None:
    """Refuse a run whose tasks cannot fit in any worker's memory limit (``memory_limit`` 0 or
    None: unlimited); warn when a worker's threads together may exceed it."""
    from dask.utils import format_bytes

    limits = [w.get("memory_limit") or 0 for w in workers]
    if not workers or any(limit == 0 for limit in limits):
        return
    best = max(limits)
    if task_bytes > best:
        raise ClusterError(
            f"a task needs about {format_bytes(task_bytes)} but the largest worker memory limit is "
            f"{format_bytes(best)}; use smaller compute.chunks or give the workers more memory",
            where="compute.memory_limit",
        )
    for w in workers:
        n = w.get("nthreads") or 1
        if n > 1 and task_bytes * n > (w.get("memory_limit") or 0):
            warn(
                f"worker {w.get('name')}: {n} threads x ~{format_bytes(task_bytes)} per task may exceed its "
                f"memory limit {format_bytes(w['memory_limit'])}; use smaller compute.chunks or fewer threads per worker",
                notify,
            )
            break


def machine_memory() -> int:
    """Physical memory of this machine in bytes (0 when unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def check_local_memory(task_bytes: int, workers: int, notify: Notify | None = None) -> None:
    """The local schedulers' memory check (threads, processes, synchronous): refuse a task that
    cannot fit in this machine's memory at all, warn when the tasks in flight together may not."""
    from dask.utils import format_bytes

    total = machine_memory()
    if not total:
        return
    if task_bytes > total:
        raise ClusterError(
            f"a task needs about {format_bytes(task_bytes)} but this machine has {format_bytes(total)} of memory; "
            "use smaller compute.chunks",
            where="compute.chunks",
        )
    if workers > 1 and task_bytes * workers > total:
        warn(
            f"{workers} workers x ~{format_bytes(task_bytes)} per task may exceed this machine's memory "
            f"({format_bytes(total)}); use smaller compute.chunks or fewer compute.workers",
            notify,
        )


def warn(message: str, notify: Notify | None) -> None:
    if notify is not None:
        notify(f"warning: {message}")
    else:
        warnings.warn(message, UserWarning, stacklevel=3)
