"""The reliability scenario shared by the runner and batch tests: a 132 x 132 uint8 pair in
33 x 33 chunks, processed in 12 x 12 blocks (121 blocks: long enough to be stopped midway), the
config that runs it, the resume ledger's count of done blocks, and a run held so that it can be
killed midway (tests/held_run.py)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml
import zarr

from pipeline.storage import ledger

HELD_RUN = Path(__file__).resolve().parent / "held_run.py"
SHAPE = (132, 132)  # processing blocks of 12x12: 11 x 11 = 121 blocks
W = 5


def make_inputs(root: Path) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, SHAPE, dtype=np.uint8)
    b = rng.integers(0, 256, SHAPE, dtype=np.uint8)
    g = zarr.open_group(root / "in.zarr", mode="w")
    for name, arr in (("a", a), ("b", b)):
        g.create_array(name, shape=arr.shape, dtype=arr.dtype, chunks=(33, 33), dimension_names=("y", "x"))[...] = arr
    return a, b


def write_config(root: Path, out: str, name: str | None = None, **extra) -> Path:
    cfg = {
        "inputs": {"a": {"path": "in.zarr", "array": "a"}, "b": {"path": "in.zarr", "array": "b"}},
        "op": "a**2 - b**2",
        "window": {"size": W},
        "output": {"path": out},
        "compute": {"chunks": 12, "workers": 2},
    }
    for k, v in extra.items():
        cfg[k] = v
    path = root / (name or f"{Path(out).stem}.yaml")
    path.write_text(yaml.safe_dump(cfg))
    return path


def done_dir(out: Path) -> Path | None:
    dirs = list(ledger.sidecar(out).glob("result/*/done"))
    return dirs[0] if dirs else None


def record_files(out: Path) -> list[Path]:
    """The ledger's record files (``done/t.<i>.<j>.<token>.log``: one per task)."""
    d = done_dir(out)
    return sorted(p for p in d.iterdir() if p.name.startswith("t.") and p.name.endswith(".log")) if d is not None else []


def done_blocks(out: Path) -> set[tuple[int, ...]]:
    """The blocks the ledger records, read as docs/operations.md describes it (not through the
    ledger's code): each line ``<i>.<j>`` ended by a newline in a record file, and each empty file
    ``done/<i>.<j>`` (earlier versions); a last line without its newline is not a record."""
    d = done_dir(out)
    if d is None:
        return set()
    found = {tuple(int(x) for x in p.name.split(".")) for p in d.iterdir() if re.fullmatch(r"\d+\.\d+", p.name)}
    for p in record_files(out):
        data = p.read_bytes()
        for line in data[: data.rfind(b"\n") + 1].splitlines():
            if re.fullmatch(rb"\d+\.\d+", line):
                found.add(tuple(int(x) for x in line.split(b".")))
    return found


def n_done(out: Path) -> int:
    return len(done_blocks(out))


def start_held(cfg: Path, hold_after: int, *args: str, env: dict[str, str] | None = None, group: bool = False) -> subprocess.Popen:
    """``pipeline run -q cfg`` through tests/held_run.py: the block writes after the first
    ``hold_after`` wait until the run is stopped, so it cannot finish first (``group``: in its
    own process group, with the workers it starts)."""
    return subprocess.Popen(
        [sys.executable, str(HELD_RUN), "run", "-q", *args, str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {}), "PIPELINE_TEST_HOLD_AFTER": str(hold_after)}, start_new_session=group,
    )


def kill_when_done(proc: subprocess.Popen, out: Path, blocks: int, group: bool = False, timeout: float = 120) -> None:
    """SIGKILL ``proc`` (``group``: its process group) once the ledger of ``out`` records
    ``blocks`` blocks, and wait for it."""
    t0 = time.monotonic()
    while n_done(out) < blocks:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.01)
    if group:
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
