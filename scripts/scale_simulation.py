"""A scale simulation anyone can run (issue 27): a virtual pair (Zarr metadata only, every chunk
unstored, read as the fill value) run on a LocalCluster (loopback, 2 workers of 1 thread), killed
at about half (SIGKILL to the run's process group: the driver and its workers), then resumed; it
prints the tasks, the scheduler's time per task, the objects written, the ledger records, the
resume listing time and the walls.

Usage: ``python scripts/scale_simulation.py [SIDE] [CHUNK] [WORKDIR] [SHARD]`` (default 32768 2048
scale-sim, unsharded; SHARD: ``output.shards``, e.g. 8192); a few minutes on a 2-core machine.  The figures feed the extrapolation in
docs/scale.md.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
import zarr

from pipeline.runner import dryrun
from pipeline.runner.prepare import prepare
from pipeline.storage import ledger

NOOP_TASKS = 2000  #: tasks submitted to measure the scheduler's time per task
LEDGER = (489, 489)  #: the synthetic ledger whose resume listing is timed: records (tasks) x blocks each (1 Tpix)


def make_pair(work: Path, side: int, chunk: int, shard: int | None = None) -> Path:
    g = zarr.open_group(work / "in.zarr", mode="w")
    for name in ("a", "b"):
        g.create_array(name, shape=(side, side), chunks=(chunk, chunk), dtype="uint16", fill_value=0)
    cfg = {
        "inputs": {n: {"path": str(work / "in.zarr"), "array": n} for n in ("a", "b")},
        "op": "a - b",
        "window": {"size": 5, "reduce": "sum"},
        "compute": {"scheduler": "local-cluster", "workers": 2, "threads_per_worker": 1},
        "output": {"path": str(work / "out.zarr"), "array": "s", **({"shards": shard} if shard else {})},
    }
    path = work / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def files(root: Path) -> int:
    return sum(len(f) for _, _, f in os.walk(root))


def records(out: Path) -> int:
    """The ledger's record files (one per task)."""
    dirs = list(ledger.sidecar(out).glob("s/*/done"))
    return len(os.listdir(dirs[0])) if dirs else 0


def recorded(out: Path) -> int:
    """The blocks the ledger records: a line each, ended by a newline."""
    dirs = list(ledger.sidecar(out).glob("s/*/done"))
    return sum(p.read_bytes().count(b"\n") for p in dirs[0].iterdir()) if dirs else 0


def run(cfg: Path, kill_at: int | None) -> tuple[float, bool]:
    """``pipeline run cfg``; with ``kill_at``, killed (with its workers) once that many blocks are
    recorded.  Returns (wall seconds, killed)."""
    out = cfg.parent / "out.zarr"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", "-q", str(cfg)], start_new_session=True)
    while proc.poll() is None:
        if kill_at is not None and recorded(out) >= kill_at:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return time.perf_counter() - t0, True
        time.sleep(0.05)
    if proc.returncode != 0:
        raise SystemExit(f"pipeline run exited with {proc.returncode}")
    return time.perf_counter() - t0, False


def scheduler_time_per_task() -> float:
    """Seconds of wall per no-op task through a LocalCluster's scheduler (2 workers, loopback)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster, Client(cluster) as client:
        client.gather(client.map(int, range(100)))  # warm
        t0 = time.perf_counter()
        client.gather(client.map(int, range(100, 100 + NOOP_TASKS)))
        return (time.perf_counter() - t0) / NOOP_TASKS


def listing_time(work: Path) -> float:
    """Seconds to read a local ledger of :data:`LEDGER` (what a resume does first)."""
    led = ledger.Ledger(work / "listing.zarr", "s", "0" * 64)
    led.reset({})
    tasks, each = LEDGER
    for i in range(tasks):
        led.add((i, j) for j in range(each))
    t0 = time.perf_counter()
    assert len(led.done()) == tasks * each
    return time.perf_counter() - t0


def main() -> None:
    side = int(sys.argv[1]) if len(sys.argv) > 1 else 32768
    chunk = int(sys.argv[2]) if len(sys.argv) > 2 else 2048
    work = Path(sys.argv[3] if len(sys.argv) > 3 else "scale-sim").resolve()
    shard = int(sys.argv[4]) if len(sys.argv) > 4 else None
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cfg = make_pair(work, side, chunk, shard)
    t0 = time.perf_counter()
    prep = prepare(cfg)
    plan_s = time.perf_counter() - t0
    blocks = prep.plan.nblocks[0] * prep.plan.nblocks[1]
    print(f"pair {side}² ({side * side / 1e9:.2f} Gpix), input chunks {chunk}², output chunks {prep.plan.storage_chunks}, shards {prep.plan.shards}")
    print(f"plan: {plan_s:.2f} s; {dryrun.work(prep, 2)}")
    first, killed = run(cfg, kill_at=blocks // 2)
    half = recorded(work / "out.zarr")
    print(f"first run: killed={killed} after {first:.1f} s with {half} of {blocks} blocks recorded")
    led = ledger.find(work / "out.zarr", "s", _fingerprint(work / "out.zarr"))
    t0 = time.perf_counter()
    listed = len(led[0].done()) if led is not None else 0
    listing = time.perf_counter() - t0
    print(f"resume listing: {listed} blocks in {records(work / 'out.zarr')} ledger records in {listing * 1e3:.1f} ms")
    second, _ = run(cfg, kill_at=None)
    print(f"resumed run: {second:.1f} s")
    objects = files(work / "out.zarr")
    print(f"objects written: {objects} in the output store, {records(work / 'out.zarr')} ledger records ({recorded(work / 'out.zarr')} blocks)")
    per_task = scheduler_time_per_task()
    print(f"scheduler time per task (LocalCluster, 2 workers, {NOOP_TASKS} no-op tasks): {per_task * 1e3:.2f} ms")
    big = listing_time(work)
    print(f"resume listing of a local ledger of {LEDGER[0] * LEDGER[1]:,} blocks in {LEDGER[0]} records: {big * 1e3:.0f} ms")
    mpix = side * side / 1e6
    print(f"wall: {first + second:.1f} s in all ({mpix / (first + second):.0f} Mpix/s with the kill and restart)")


def _fingerprint(out: Path) -> str | None:
    state = zarr.open_group(out, mode="r", use_consolidated=False)["s"].attrs.get("pipeline", {})
    return state.get("fingerprint")


if __name__ == "__main__":
    main()
