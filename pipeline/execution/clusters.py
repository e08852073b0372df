"""dask.distributed clusters for a session: a ``LocalCluster`` on loopback (with temporary TLS
credentials), an existing scheduler by address (plain tcp warned about, tls:// with
certificates), HPC job queues through dask-jobqueue (settings, job scripts, the workers they
will give), and what a started cluster says about itself (workers, dashboard)."""

from __future__ import annotations

import ipaddress
import os
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pipeline.config.load import ClusterSpec, Config, SecuritySpec
from pipeline.execution.checks import ClusterError, ClusterUnavailableError, Notify, check_memory, warn

_JOBQUEUE = {"slurm": "SLURM", "pbs": "PBS", "sge": "SGE", "lsf": "LSF"}


def current_client() -> Any:
    """The ``distributed.Client`` active in this process, or None."""
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


def cluster_workers(spec: ClusterSpec) -> list[dict[str, Any]]:
    from dask.utils import parse_bytes

    processes = spec.processes or 1
    memory = parse_bytes(spec.memory) if isinstance(spec.memory, str) else int(spec.memory)
    per = {"memory_limit": memory // processes, "nthreads": max(1, spec.cores // processes)}
    return [{"name": f"job-{j}-{p}", **per} for j in range(spec.jobs) for p in range(processes)]


def wait_for_workers(client: Any, timeout: float) -> list[dict[str, Any]]:
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        raise ClusterUnavailableError(
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
def local_cluster(cfg: Config) -> Iterator[Any]:
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
    with serve(cluster, sec) as client:
        yield client


@contextmanager
def serve(cluster: Any, sec: Any, *, jobs: int | None = None) -> Iterator[Any]:
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


def has_bokeh() -> bool:
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return False
    return True


@contextmanager
def connect(cfg: Config, address: str, notify: Notify | None) -> Iterator[Any]:
    from distributed import Client

    where = "compute.scheduler"
    if address.startswith("tcp://") and not is_loopback(address):
        warn(
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
        raise ClusterUnavailableError(f"cannot reach the scheduler at {address}: {e}", where=where) from None
    try:
        yield client
    finally:
        client.close()


@contextmanager
def hpc_cluster(cfg: Config, task_bytes: int | None, notify: Notify | None) -> Iterator[Any]:

    spec = cfg.compute.cluster
    assert spec is not None
    if task_bytes is not None:
        check_memory(task_bytes, cluster_workers(spec), notify)
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
        warn("compute.cluster without compute.security: scheduler and workers talk plain tcp", notify)
    try:
        cluster = cls(**kw)
    except (TypeError, ValueError) as e:
        raise ClusterError(f"dask-jobqueue refused the settings: {e}", where="compute.cluster") from None
    with serve(cluster, sec, jobs=spec.jobs) as client:
        yield client


@contextmanager
def client_for(cfg: Config, mode: str, notify: Notify | None, task_bytes: int | None) -> Iterator[Any]:
    """The Client of a distributed ``mode``: the one active in this process (``client``), or one
    of a cluster started (``local-cluster``, ``cluster``) or reached (an address) for this run,
    closed with what was started when the run ends."""
    if mode == "client":
        yield current_client()
        return
    if mode == "local-cluster":
        opened = local_cluster(cfg)
    elif mode == "cluster":
        opened = hpc_cluster(cfg, task_bytes, notify)
    else:
        opened = connect(cfg, mode, notify)
    with opened as client:
        yield client
