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
yields a :class:`Session`: where :func:`pipeline.engine.execute` sends its block tasks (this
process's threads, a process pool the session holds, or the ``distributed.Client``).  The session
is passed explicitly (``runner.run(cfg, session=...)``, ``runner.execute(..., session=...)``);
nothing about it is kept at module level.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from . import io
from .config import LOCAL_SCHEDULERS, ClusterSpec, Config, SecuritySpec
from .errors import PipelineError

Notify = Callable[[str], None]

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

_JOBQUEUE = {"slurm": "SLURM", "pbs": "PBS", "sge": "SGE", "lsf": "LSF"}


class ClusterError(PipelineError):
    """The cluster cannot run this job as configured (unreachable scheduler, no workers, a task
    larger than a worker's memory, a store the workers cannot reach, a missing extra)."""


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

    def wait(self, futures: Any, return_when: str) -> tuple[set[Any], set[Any]]:
        """``concurrent.futures.wait`` for this session's futures: (done, not done)."""
        if self.client is not None:
            from distributed import wait

            done, pending = wait(list(futures), return_when=return_when)
            return set(done), set(pending)
        from concurrent.futures import wait

        done, pending = wait(futures, return_when=return_when)
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
    if _current_client() is not None:
        return "client"
    return "threads"


def _current_client() -> Any:
    try:
        from distributed import default_client
    except ImportError:  # pragma: no cover - distributed is a dependency
        return None
    try:
        return default_client()
    except ValueError:
        return None


def is_loopback(address: str) -> bool:
    """Whether a scheduler address (``tcp://host:port``) points at this machine's loopback."""
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def security(spec: SecuritySpec | None) -> Any:
    """A ``distributed.Security`` from ``compute.security``; None lets distributed read its config."""
    if spec is None:
        return None
    from distributed import Security

    for key in ("ca_file", "cert", "key"):
        value = getattr(spec, key)
        if value is not None and not os.path.isfile(value):
            raise ClusterError(f"certificate file {value} does not exist", where=f"compute.security.{key}")
    return Security(
        tls_ca_file=spec.ca_file,
        tls_client_cert=spec.cert,
        tls_client_key=spec.key,
        tls_scheduler_cert=spec.cert,
        tls_scheduler_key=spec.key,
        tls_worker_cert=spec.cert,
        tls_worker_key=spec.key,
        require_encryption=spec.require_encryption,
    )


# --------------------------------------------------------------------------------------------
# checks


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
            _warn(
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
        _warn(
            f"{workers} workers x ~{format_bytes(task_bytes)} per task may exceed this machine's memory "
            f"({format_bytes(total)}); use smaller compute.chunks or fewer compute.workers",
            notify,
        )


def _warn(message: str, notify: Notify | None) -> None:
    if notify is not None:
        notify(f"warning: {message}")
    else:
        warnings.warn(message, UserWarning, stacklevel=3)


# --------------------------------------------------------------------------------------------
# HPC job queues


def _jobqueue() -> Any:
    try:
        import dask_jobqueue
    except ImportError:
        raise ClusterError(
            "HPC job queues need dask-jobqueue: pip install 'pipeline[hpc]'", where="compute.cluster"
        ) from None
    return dask_jobqueue


def jobqueue_kwargs(spec: ClusterSpec) -> dict[str, Any]:
    """The dask-jobqueue keyword arguments for ``compute.cluster`` (without ``jobs``)."""
    kw: dict[str, Any] = {"cores": spec.cores, "memory": spec.memory}
    if spec.processes is not None:
        kw["processes"] = spec.processes
    if spec.walltime is not None:
        kw["walltime"] = spec.walltime
    if spec.queue is not None:
        kw["queue"] = spec.queue
    if spec.account is not None:
        kw["account" if spec.kind in ("slurm", "pbs") else "project"] = spec.account
    if spec.interface is not None:
        kw["interface"] = spec.interface
    if spec.local_directory is not None:
        kw["local_directory"] = spec.local_directory
    if spec.job_extra_directives:
        kw["job_extra_directives"] = list(spec.job_extra_directives)
    if spec.job_script_prologue:
        kw["job_script_prologue"] = list(spec.job_script_prologue)
    if spec.python is not None:
        kw["python"] = spec.python
    return kw


def job_script(cfg: Config, scheduler_address: str = "tcp://SCHEDULER:8786") -> str:
    """The batch script one job of ``compute.cluster`` would run, without submitting anything
    (the scheduler's address is a placeholder: the real one is known once it starts)."""
    spec = cfg.compute.cluster
    if spec is None:
        raise ClusterError("no compute.cluster in this config", where="compute.cluster")
    jq = _jobqueue()
    job_cls = getattr(jq, f"{_JOBQUEUE[spec.kind]}Cluster").job_cls
    try:
        job = job_cls(scheduler=scheduler_address, name="pipeline-worker", **jobqueue_kwargs(spec))
    except (TypeError, ValueError) as e:
        raise ClusterError(f"dask-jobqueue refused the settings: {e}", where="compute.cluster") from None
    return job.job_script()


def _cluster_workers(spec: ClusterSpec) -> list[dict[str, Any]]:
    from dask.utils import parse_bytes

    processes = spec.processes or 1
    memory = parse_bytes(spec.memory) if isinstance(spec.memory, str) else int(spec.memory)
    per = {"memory_limit": memory // processes, "nthreads": max(1, spec.cores // processes)}
    return [{"name": f"job-{j}-{p}", **per} for j in range(spec.jobs) for p in range(processes)]


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
    from . import engine, fastsum  # noqa: F401 - the imports are the point

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
    if mode in LOCAL_SCHEDULERS:
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
        return
    with ExitStack() as stack:
        if mode == "client":
            client = _current_client()
        elif mode == "local-cluster":
            client = stack.enter_context(_local_cluster(cfg))
        elif mode == "cluster":
            client = stack.enter_context(_hpc_cluster(cfg, task_bytes, notify))
        else:
            client = stack.enter_context(_connect(cfg, mode, notify))
        sess = _distributed_session(client, mode)
        if sess.dashboard and mode == "local-cluster" and not _has_bokeh():
            sess.dashboard += " (its plots need bokeh: pip install bokeh)"
        if mode != "cluster":
            sess.workers = _wait_for_workers(client, cfg.compute.worker_timeout)
            threads = sum(w["nthreads"] for w in sess.workers)
            sess.description += f" ({len(sess.workers)} workers, {threads} threads)"
        planned = sess.workers if mode != "cluster" else _cluster_workers(cfg.compute.cluster)  # type: ignore[arg-type]
        sess.threads = max(1, sum(w["nthreads"] for w in planned))
        if task_bytes is not None and sess.workers:
            check_memory(task_bytes, sess.workers, notify)
        if mode != "cluster":  # job-queue workers arrive later: their first task imports
            client.run(warm)
        if notify is not None:
            notify(f"scheduler: {sess.description}" + (f"; dashboard: {sess.dashboard}" if sess.dashboard else ""))
        yield sess


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


def _wait_for_workers(client: Any, timeout: float) -> list[dict[str, Any]]:
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        raise ClusterError(
            f"no worker joined the scheduler {client.scheduler.address} within {timeout:g} s", where="compute.scheduler"
        ) from None
    info = client.scheduler_info(n_workers=-1)
    return [
        {"name": w.get("name", addr), "memory_limit": w.get("memory_limit") or 0, "nthreads": w.get("nthreads") or 1}
        for addr, w in info.get("workers", {}).items()
    ]


@contextmanager
def _worker_environ() -> Iterator[None]:
    """distributed's nannies start workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which turns off
    glibc's adaptive mmap threshold: every block-sized buffer is then a fresh mmap, page-faulted
    in and unmapped again (measured: the 8192² run 1.5x slower on a 2 x 1 LocalCluster).  The
    workers this run starts get the rest of the configured environment without it."""
    import dask

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
        yield


@contextmanager
def _local_cluster(cfg: Config) -> Iterator[Any]:
    from distributed import LocalCluster

    c = cfg.compute
    sec = security(c.security)
    threads = c.threads_per_worker or 1
    workers = c.workers or max(1, (os.cpu_count() or 1) // threads)
    kw: dict[str, Any] = {
        "n_workers": workers,
        "threads_per_worker": threads,
        "processes": True,
        "host": "127.0.0.1",  # loopback only: nobody else can reach this scheduler
        "dashboard_address": "127.0.0.1:0",  # loopback, any free port
        "memory_limit": c.memory_limit if c.memory_limit is not None else "auto",
    }
    if sec is None:
        # temporary credentials, in memory only: without them any local process (any user on a
        # shared machine) could connect to the loopback port and run code in the workers
        from distributed.security import Security

        sec = Security.temporary()
    kw.update(security=sec, protocol="tls://")
    with warnings.catch_warnings(), _worker_environ():
        warnings.simplefilter("ignore")  # "Port 8787 is already in use" and similar
        cluster = LocalCluster(**kw)
    with _serve(cluster, sec) as client:
        yield client


@contextmanager
def _serve(cluster: Any, sec: Any, *, jobs: int | None = None) -> Iterator[Any]:
    """A client of a cluster this run started (scaled to ``jobs`` job-queue jobs when given);
    both are closed when the run ends, also when scaling or connecting fails."""
    from distributed import Client

    try:
        if jobs is not None:
            cluster.scale(jobs=jobs)
        client = Client(cluster, security=sec) if sec is not None else Client(cluster)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def _has_bokeh() -> bool:
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return False
    return True


@contextmanager
def _connect(cfg: Config, address: str, notify: Notify | None) -> Iterator[Any]:
    from distributed import Client

    where = "compute.scheduler"
    if address.startswith("tcp://") and not is_loopback(address):
        _warn(
            f"plain tcp to {address}: traffic is not encrypted and anyone who can reach this scheduler can "
            "run code on it; prefer tls:// with compute.security",
            notify,
        )
    if address.startswith("tls://") and cfg.compute.security is None:
        import dask

        if not dask.config.get("distributed.comm.tls.ca-file", None):
            raise ClusterError(
                f"{address} needs TLS certificates: set compute.security (ca_file, cert, key) or "
                "distributed.comm.tls in dask's config",
                where="compute.security",
            )
    sec = security(cfg.compute.security)
    kw = {"security": sec} if sec is not None else {}
    try:
        client = Client(address, timeout=cfg.compute.worker_timeout, **kw)
    except (OSError, TimeoutError, RuntimeError) as e:  # RuntimeError: TLS required but tcp:// given
        raise ClusterError(f"cannot reach the scheduler at {address}: {e}", where=where) from None
    try:
        yield client
    finally:
        client.close()


@contextmanager
def _hpc_cluster(cfg: Config, task_bytes: int | None, notify: Notify | None) -> Iterator[Any]:

    spec = cfg.compute.cluster
    assert spec is not None
    if task_bytes is not None:
        check_memory(task_bytes, _cluster_workers(spec), notify)
    jq = _jobqueue()
    cls = getattr(jq, f"{_JOBQUEUE[spec.kind]}Cluster")
    submit = (getattr(cls.job_cls, "submit_command", None) or "").split()
    if submit and shutil.which(submit[0]) is None:
        raise ClusterError(
            f"{submit[0]} not found: run on a machine that can submit {spec.kind} jobs (a login node); "
            "`pipeline validate` shows the job script",
            where="compute.cluster.kind",
        )
    sec = security(cfg.compute.security)
    kw = jobqueue_kwargs(spec)
    if sec is not None:
        kw.update(security=sec, protocol="tls://")
    else:
        _warn("compute.cluster without compute.security: scheduler and workers talk plain tcp", notify)
    try:
        cluster = cls(**kw)
    except (TypeError, ValueError) as e:
        raise ClusterError(f"dask-jobqueue refused the settings: {e}", where="compute.cluster") from None
    with _serve(cluster, sec, jobs=spec.jobs) as client:
        yield client


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

