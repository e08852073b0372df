"""A dask scheduler and worker processes on loopback, started as ``dask scheduler`` / ``dask
worker`` would be (the benchmark's ``tcp`` contender), and stopping such processes (also used by
the cluster tests' helpers)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def stop_processes(procs: Sequence[subprocess.Popen[Any]], timeout: float = 10) -> None:
    """Terminate the processes still running (the last started first), wait for each up to
    ``timeout`` seconds, and kill (and reap) one that does not exit."""
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class TcpCluster:
    """``dask scheduler`` and ``n`` ``dask worker`` processes (1 thread each) on loopback."""

    def __init__(self, folder: Path, n: int) -> None:
        self.file = folder / "scheduler.json"
        self.file.unlink(missing_ok=True)
        py = [sys.executable, "-m"]
        quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        self.procs = [
            subprocess.Popen([*py, "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                              "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(self.file)], **quiet)
        ]
        deadline = time.monotonic() + 60
        while not self.file.exists():
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError("dask scheduler did not start")
            time.sleep(0.1)
        self.address = json.loads(self.file.read_text())["address"]
        for _ in range(n):
            self.procs.append(
                subprocess.Popen([*py, "distributed.cli.dask_worker", "--scheduler-file", str(self.file), "--host", "127.0.0.1",
                                  "--no-dashboard", "--dashboard-address", "127.0.0.1:0", "--nthreads", "1",
                                  "--nworkers", "1", "--memory-limit", "0", "--no-nanny"], **quiet)
            )

    def close(self) -> None:
        stop_processes(self.procs)
