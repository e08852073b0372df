"""Helpers for the cluster tests that must be importable by dask worker processes (the tests put
this folder on the workers' PYTHONPATH): real scheduler/worker processes on loopback, a
recording callback that runs on the workers, and a throw-away certificate authority."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.execution.tcpcluster import stop_processes


@dataclass
class SlowRecord:
    """A picklable ``record`` callback for ``runner.execute``: runs on the worker, after the
    block's write; leaves a marker file ``<block>.<pid>`` and sleeps (so a run lasts long enough
    to kill a worker in the middle of it)."""

    folder: str
    seconds: float = 0.0

    def __call__(self, index: tuple[int, ...]) -> None:
        name = "_".join(map(str, index))
        Path(self.folder, f"{name}.{os.getpid()}").write_text("")
        time.sleep(self.seconds)


def recorded(folder: str | Path) -> dict[tuple[int, ...], set[int]]:
    """Block index -> pids of the processes that recorded it."""
    out: dict[tuple[int, ...], set[int]] = {}
    for p in Path(folder).iterdir():
        block, pid = p.name.split(".")
        out.setdefault(tuple(int(x) for x in block.split("_")), set()).add(int(pid))
    return out


def worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    here = Path(__file__).resolve().parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(here.parent), str(here), env.get("PYTHONPATH", "")])
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    env.update(extra or {})
    return env


def _wait_for(predicate, timeout: float, what: str, procs=()) -> None:
    t0 = time.monotonic()
    while not predicate():
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{what}: process {p.args} exited with {p.returncode}")
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(what)
        time.sleep(0.1)


class Cluster:
    """``dask scheduler`` and ``dask worker`` processes on 127.0.0.1 (no nanny: a SIGKILL to
    a worker's pid kills the worker itself)."""

    def __init__(self, folder: Path, env: dict[str, str], *, tls: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.env = env
        self.tls = tls or {}
        self.procs: list[subprocess.Popen] = []
        self.scheduler_file = folder / "scheduler.json"
        args = ["--host", "127.0.0.1", "--port", "0", "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(self.scheduler_file)]
        if tls:
            args += ["--protocol", "tls", *self._tls_args()]
        self.scheduler = self._spawn("distributed.cli.dask_scheduler", args, "scheduler")
        _wait_for(self.scheduler_file.exists, 60, "scheduler start", [self.scheduler])
        self.address = json.loads(self.scheduler_file.read_text())["address"]
        self.workers: list[subprocess.Popen] = []

    def _tls_args(self) -> list[str]:
        t = self.tls
        return ["--tls-ca-file", t["ca"], "--tls-cert", t["cert"], "--tls-key", t["key"]]

    def _spawn(self, module: str, args: list[str], name: str) -> subprocess.Popen:
        log = open(self.folder / f"{name}-{len(self.procs)}.log", "w")
        p = subprocess.Popen([sys.executable, "-m", module, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def add_worker(self, memory_limit: str = "2GiB") -> subprocess.Popen:
        args = [
            "--scheduler-file", str(self.scheduler_file), "--host", "127.0.0.1", "--nthreads", "1",
            "--no-nanny", "--memory-limit", memory_limit, "--no-dashboard", "--death-timeout", "60",
            # even without its dashboard a worker serves HTTP (health, metrics), by default on every interface
            "--dashboard-address", "127.0.0.1:0",
        ]
        if self.tls:
            args += self._tls_args()
        w = self._spawn("distributed.cli.dask_worker", args, "worker")
        self.workers.append(w)
        return w

    def wait_for_workers(self, client, n: int) -> None:
        client.wait_for_workers(n, timeout=60)

    def close(self) -> None:
        stop_processes(self.procs)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.folder.glob("*.log")))


def make_ca(folder: Path) -> dict[str, str]:
    """A certificate authority and one certificate (for 127.0.0.1/localhost) signed by it, as
    PEM files: ``ca``, ``cert``, ``key``."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pipeline test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    files = {
        "ca": ca.public_bytes(pem),
        "cert": cert.public_bytes(pem),
        "key": key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    }
    out = {}
    for name, data in files.items():
        path = folder / f"{name}.pem"
        path.write_bytes(data)
        out[name] = str(path)
    return out
