"""Where the work runs: dask's local schedulers or a dask.distributed cluster.

``compute.scheduler`` picks one of

- ``threads`` / ``processes`` / ``synchronous``: dask's local schedulers;
- ``local-cluster``: a ``distributed.LocalCluster`` on this machine (``compute.workers``,
  ``compute.threads_per_worker``, ``compute.memory_limit``), listening on loopback only;
- ``tcp://host:port`` / ``tls://host:port``: an existing scheduler (TLS certificates from
  ``compute.security``, or from dask's config files);
- unset: dask's own configuration (``DASK_SCHEDULER_ADDRESS``, the ``scheduler-address`` and
  ``scheduler`` keys of dask's config files), else a ``distributed.Client`` already active in
  this process, else ``threads``.

``compute.cluster`` starts the workers through an HPC job queue (dask-jobqueue).

:func:`session` is a context manager around a run: it starts or connects to the cluster, checks
that the stores are reachable from the workers and that a task fits in a worker's memory, and
yields a :class:`Session`: where :func:`pipeline.execution.engine.execute` sends its block tasks (this
process's threads, a process pool the session holds, or the ``distributed.Client``).  The session
is passed explicitly (``runner.run(cfg, session=...)``, ``runner.execute(..., session=...)``);
nothing about it is kept at module level.

This module chooses and assembles sessions (and runs dask's local schedulers); starting and
reaching clusters is :mod:`pipeline.execution.clusters`, the storage and memory checks
:mod:`pipeline.execution.checks` (their public names are re-exported here).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pipeline.config.load import LOCAL_SCHEDULERS, Config
from pipeline.errors import PipelineError
from pipeline.execution import clusters
from pipeline.execution.checks import ClusterError, Notify, check_local_memory, check_memory, check_storage, machine_memory
from pipeline.execution.clusters import cluster_workers as _cluster_workers
from pipeline.execution.clusters import is_loopback, job_script, jobqueue_kwargs, security

__all__ = [
    "ClusterError", "Notify", "Session", "check_local_memory", "check_memory", "check_session", "check_storage",
    "describe_scheduler", "is_loopback", "job_script", "jobqueue_kwargs", "machine_memory", "resolve", "security",
    "session", "warm",
]


#: dask's own names for its local schedulers (``dask.config.set(scheduler=...)``)
_DASK_LOCAL = {
    "threads": "threads",
    "threading": "threads",
    "processes": "processes",
    "multiprocessing": "processes",
    "sync": "synchronous",
    "synchronous": "synchronous",
    "single-threaded": "synchronous",
}


@dataclass
class Session:
    """Where a run's tasks go."""

    mode: str  #: threads | processes | synchronous | local-cluster | address | cluster | client
    kwargs: dict[str, Any]  #: keyword arguments for ``dask.compute``
    description: str  #: one line for messages (``tcp://127.0.0.1:8786, 2 workers``)
    client: Any = None  #: the ``distributed.Client`` (distributed modes)
    dashboard: str | None = None  #: the dashboard link, when the scheduler serves one
    workers: list[dict[str, Any]] = field(default_factory=list)  #: name, memory_limit, nthreads
    executor: Any = None  #: a process pool or the Client that block tasks go to; None: this process's threads
    threads: int = 1  #: threads that run block tasks at once (here, or over all workers)
    prime_seconds: float = 0.0  #: time spent loading the job and its kernels on every worker before the first tile

    @property
    def distributed(self) -> bool:
        return self.client is not None

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the executor; a future."""
        if self.client is not None:
            return self.client.submit(fn, *args, pure=False)
        return self.executor.submit(fn, *args)

    def wait(self, futures: Any, return_when: str, timeout: float | None = None) -> tuple[set[Any], set[Any]]:
        """``concurrent.futures.wait`` for this session's futures: (done, not done); after
        ``timeout`` seconds possibly none done."""
        if self.client is not None:
            from distributed import wait

            try:
                done, pending = wait(list(futures), timeout=timeout, return_when=return_when)
            except TimeoutError:  # distributed's wait raises where concurrent.futures returns
                return {f for f in futures if f.done()}, {f for f in futures if not f.done()}
            return set(done), set(pending)
        from concurrent.futures import wait

        done, pending = wait(futures, timeout=timeout, return_when=return_when)
        return set(done), set(pending)


# --------------------------------------------------------------------------------------------
# choosing


def resolve(cfg: Config) -> str:
    """The scheduler a config asks for: one of :data:`LOCAL_SCHEDULERS`, ``local-cluster``,
    ``cluster`` (a job queue), ``client`` (a Client already active here) or an address."""
    if cfg.compute.cluster is not None:
        if cfg.compute.scheduler is not None:
            raise ClusterError(
                f"compute.cluster starts its own scheduler; remove compute.scheduler ({cfg.compute.scheduler})",
                where="compute.scheduler",
            )
        return "cluster"
    if cfg.compute.scheduler is not None:
        return cfg.compute.scheduler
    import dask

    address = os.environ.get("DASK_SCHEDULER_ADDRESS") or dask.config.get("scheduler-address", None)
    if address:
        return str(address)
    name = dask.config.get("scheduler", None)
    if isinstance(name, str) and name in _DASK_LOCAL:
        return _DASK_LOCAL[name]
    if clusters.current_client() is not None:
        return "client"
    return "threads"


# --------------------------------------------------------------------------------------------
# sessions


@contextmanager
def session(cfg: Config, *, task_bytes: int | None = None, notify: Notify | None = None) -> Iterator[Session]:
    """Start or connect to what runs the tasks; check storage and memory; yield the session
    (closed, with what it started, on exit).  ``notify`` receives one-line messages for the user
    (the dashboard link, warnings)."""
    with _open(cfg, resolve(cfg), notify, task_bytes=task_bytes) as sess:
        yield sess


def check_session(cfg: Config, sess: Session, *, task_bytes: int | None = None, notify: Notify | None = None) -> None:
    """The checks :func:`session` makes, for a run given a session opened earlier."""
    check_storage(cfg, sess.mode)
    if task_bytes is not None and sess.workers:
        check_memory(task_bytes, sess.workers, notify)


def _local_session(cfg: Config, mode: str) -> Session:
    name = {"threads": "threads", "processes": "processes", "synchronous": "sync"}[mode]
    kw: dict[str, Any] = {"scheduler": name}
    if name != "sync":
        kw["num_workers"] = cfg.compute.workers or os.cpu_count() or 1
    desc = mode + (f", {kw['num_workers']} workers" if "num_workers" in kw else "")
    return Session(mode=mode, kwargs=kw, description=desc, threads=kw.get("num_workers", 1))


def warm() -> int:
    """Run on each worker when a session starts: import the block engine and the compiled
    kernels' runtime once, before the first task (its process id, for tests)."""
    from pipeline.execution import engine  # noqa: F401 - the imports are the point
    from pipeline.kernels import fastsum  # noqa: F401 - the imports are the point

    return os.getpid()


def _process_pool(workers: int) -> Any:
    """A pool of ``workers`` processes, started the way dask's processes scheduler starts its
    own (``multiprocessing.context``, default spawn)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import dask

    context = multiprocessing.get_context(dask.config.get("multiprocessing.context", "spawn"))
    return ProcessPoolExecutor(max_workers=workers, mp_context=context)


@contextmanager
def _open(cfg: Config, mode: str, notify: Notify | None, *, task_bytes: int | None) -> Iterator[Session]:
    check_storage(cfg, mode)
    opener = _open_local if mode in LOCAL_SCHEDULERS else _open_distributed
    with opener(cfg, mode, notify, task_bytes=task_bytes) as sess:
        yield sess


@contextmanager
def _open_local(cfg: Config, mode: str, notify: Notify | None, *, task_bytes: int | None) -> Iterator[Session]:
    """A session of dask's local schedulers; ``processes`` holds a process pool, started now."""
    sess = _local_session(cfg, mode)
    if task_bytes is not None:
        check_local_memory(task_bytes, sess.threads, notify)
    if mode != "processes":
        yield sess
        return
    sess.executor = _process_pool(sess.threads)
    try:
        for f in [sess.executor.submit(warm) for _ in range(sess.threads)]:  # start every worker now
            f.result()
        yield sess
    finally:
        sess.executor.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _open_distributed(cfg: Config, mode: str, notify: Notify | None, *, task_bytes: int | None) -> Iterator[Session]:
    """A session on a dask.distributed Client: its workers waited for, counted and checked."""
    with clusters.client_for(cfg, mode, notify, task_bytes) as client:
        sess = _distributed_session(client, mode)
        if sess.dashboard and not _scheduler_has_bokeh(client, mode):
            sess.dashboard += " (its plots need bokeh: pip install bokeh" + ("" if mode == "local-cluster" else " where the scheduler runs") + ")"
        if mode != "cluster":
            if notify is not None:
                notify(f"waiting for workers at {sess.description} (up to {cfg.compute.worker_timeout:g} s)")
            sess.workers = clusters.wait_for_workers(client, cfg.compute.worker_timeout)
            threads = sum(w["nthreads"] for w in sess.workers)
            sess.description += f" ({len(sess.workers)} workers, {threads} threads)"
        planned = sess.workers if mode != "cluster" else _cluster_workers(cfg.compute.cluster)  # type: ignore[arg-type]
        sess.threads = max(1, sum(w["nthreads"] for w in planned))
        if task_bytes is not None and sess.workers:
            check_memory(task_bytes, sess.workers, notify)
        if mode != "cluster":  # job-queue workers arrive later: their first task imports
            if notify is not None:
                notify(f"loading the kernels on {len(sess.workers)} workers")
            client.run(warm)
        if notify is not None:
            notify(f"scheduler: {sess.description}" + (f"; dashboard: {sess.dashboard}" if sess.dashboard else ""))
        with _watching_workers(client, notify):
            yield sess


@contextmanager
def _watching_workers(client: Any, notify: Notify | None) -> Iterator[None]:
    """While the session is open: a line when a worker joins, leaves, or is lost (a warning: its
    tasks in progress go to the other workers), from the scheduler's events (its ``all`` topic)."""
    if notify is None:
        yield
        return

    def on_event(event: tuple[float, Any]) -> None:
        msg = event[1]
        if not isinstance(msg, dict) or "worker" not in msg:
            return
        if msg.get("action") == "add-worker":
            notify(f"worker {msg['worker']} joined")
        elif msg.get("action") == "remove-worker" and msg.get("expected"):
            notify(f"worker {msg['worker']} left")
        elif msg.get("action") == "remove-worker":
            running = len(msg.get("processing-tasks") or ())
            again = f"; its {running} task(s) in progress go to the other workers" if running else ""
            notify(f"warning: worker {msg['worker']} lost{again}")

    client.subscribe_topic("all", on_event)
    try:
        yield
    finally:
        client.unsubscribe_topic("all")


def _scheduler_has_bokeh(client: Any, mode: str) -> bool:
    """Whether the scheduler's dashboard can draw its plots: bokeh in this process for the
    schedulers it starts, else asked of the scheduler (a scheduler that cannot tell, say one
    without pipeline installed, is given the benefit of the doubt)."""
    if mode in ("local-cluster", "cluster"):
        return clusters.has_bokeh()
    try:
        return bool(client.run_on_scheduler(clusters.has_bokeh))
    except Exception:  # noqa: BLE001 - the hint is a courtesy
        return True


def _distributed_session(client: Any, mode: str) -> Session:
    address = client.scheduler.address if client.scheduler is not None else "?"
    dashboard = None
    try:
        info = client.scheduler_info(n_workers=0)
        if "dashboard" in info.get("services", {}):
            dashboard = client.dashboard_link
    except Exception:  # noqa: BLE001 - the link is a courtesy
        dashboard = None
    what = {"local-cluster": "local-cluster at ", "cluster": "job queue, scheduler at ", "client": "active Client, "}
    return Session(
        mode=mode, kwargs={"scheduler": client}, description=what.get(mode, "") + address, client=client, dashboard=dashboard,
        executor=client,
    )


def describe_scheduler(cfg: Config) -> str:
    """One line on where a config's tasks would run (``pipeline validate``); starts nothing."""
    try:
        mode = resolve(cfg)
    except PipelineError as e:
        return f"invalid ({e})"
    c = cfg.compute
    if mode in LOCAL_SCHEDULERS:
        return _local_session(cfg, mode).description
    if mode == "local-cluster":
        threads = c.threads_per_worker or 1
        workers = c.workers or max(1, (os.cpu_count() or 1) // threads)
        mem = c.memory_limit if c.memory_limit is not None else "auto"
        return f"local-cluster on 127.0.0.1: {workers} workers x {threads} threads, memory limit {mem} per worker"
    if mode == "cluster":
        assert c.cluster is not None
        return f"{c.cluster.kind} job queue: {c.cluster.jobs} job(s) of {c.cluster.cores} cores, {c.cluster.memory}"
    if mode == "client":
        return "the distributed Client active in this process"
    return f"scheduler at {mode}" + (" (TLS)" if c.security is not None else "")
