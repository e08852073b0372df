"""Three simulated nights of a scheduled batch: one template, one input arriving late, one corrupted.

Each night runs workflows/pipeline-batch.sh (as cron or systemd would) over every day delivered so
far (``--var DATE=d1,d2,...``): days already done are up-to-date no-ops, a day whose delivery is
not finished is "not ready" (exit 5: retry next time), a corrupted day fails (exit 2).  Prints
each night's exit code and report, and checks every output against a brute-force window sum.

    python scripts/nightly_simulation.py [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import zarr

ROOT = Path(__file__).resolve().parents[1]
DAYS = ["2026-11-20", "2026-11-21", "2026-11-22"]
W = 3
TEMPLATE = """\
# one template for every night: the delivery writes _SUCCESS last; an unstored chunk means "still arriving"
inputs:
  a: {path: ../in/${DATE}/pair.zarr, array: a, ready_marker: ../in/${DATE}/_SUCCESS, unstored_chunks: not-ready}
  b: {path: ../in/${DATE}/pair.zarr, array: b, unstored_chunks: not-ready}
op: a - b
window: {size: 3}
output: {path: ../out/${DATE}.zarr}
compute: {scheduler: threads, chunks: 8, workers: 1}
"""


def brute(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Window sums by a plain loop over every pixel (windows truncated at the border)."""
    d = a.astype(np.int64) - b.astype(np.int64)
    out = np.zeros(d.shape, dtype=np.int64)
    r = W // 2
    for i in range(d.shape[0]):
        for j in range(d.shape[1]):
            out[i, j] = d[max(0, i - r) : i + r + 1, max(0, j - r) : j + r + 1].sum()
    return out


def deliver(home: Path, day: str, *, partial: bool = False, corrupt: bool = False, marker: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(int(day.replace("-", "")))
    a = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    b = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    store = home / "in" / day / "pair.zarr"
    g = zarr.open_group(store, mode="w")
    for name, arr in (("a", a), ("b", b)):
        g.create_array(name, shape=arr.shape, dtype=arr.dtype, chunks=(8, 8), dimension_names=("y", "x"))[...] = arr
    if partial:  # the copy is still running: one chunk of b not there yet
        (store / "b" / "c" / "1" / "1").unlink()
    if corrupt:  # a chunk damaged in transit
        (store / "a" / "c" / "0" / "1").write_bytes(b"\x00garbage" * 8)
    if marker:
        (home / "in" / day / "_SUCCESS").touch()
    return a, b


def night(home: Path, n: int, days: list[str]) -> int:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PIPELINE_HOME": str(home),
        "PIPELINE": f"{sys.executable} -m pipeline.cli.main",
        "PYTHONPATH": str(ROOT),
        "PIPELINE_BATCH_ID": f"night-{n}",
        "PIPELINE_ARGS": "-q",
        "PIPELINE_METRICS": str(home / "metrics" / "pipeline.prom"),
    }
    res = subprocess.run(
        [str(home / "workflows" / "pipeline-batch.sh"), "--var", "DATE=" + ",".join(days)], env=env, capture_output=True, text=True
    )
    report = json.loads((home / "reports" / "latest.json").read_text())
    print(f"\n=== night {n}: pipeline-batch.sh --var DATE={','.join(days)}  ->  exit {res.returncode}")
    for r in report["runs"]:
        print(f"  DATE={r['variables']['DATE']}  {r['status']:<11} exit {r['exit_code']}  {r['error'] or r['output']}")
    print(f"  report: batch {report['batch']}, host {report['host']}, started {report['started']}, "
          f"counts {report['counts']}, exit_code {report['exit_code']}")
    assert all(json.loads(line) for line in res.stderr.splitlines()), "a log line that is not JSON"
    return res.returncode


def check(home: Path, day: str, a: np.ndarray, b: np.ndarray) -> None:
    got = zarr.open_group(home / "out" / f"{day}.zarr", mode="r")["result"][...]
    assert np.array_equal(got, brute(a, b)), day
    print(f"  out/{day}.zarr equals the brute-force window sum")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    home = args.workdir or Path(tempfile.mkdtemp(prefix="pipeline-nights-"))
    (home / "configs").mkdir(parents=True, exist_ok=True)
    (home / "workflows").mkdir(exist_ok=True)
    shutil.copy(ROOT / "workflows" / "pipeline-batch.sh", home / "workflows")
    (home / "configs" / "pair.yaml").write_text(TEMPLATE)
    codes = []
    try:
        # night 1: day 1 delivered
        d1 = deliver(home, DAYS[0])
        codes.append(night(home, 1, DAYS[:1]))
        check(home, DAYS[0], *d1)
        # night 2: day 2 arrives late (half copied, no marker yet)
        deliver(home, DAYS[1], partial=True, marker=False)
        codes.append(night(home, 2, DAYS[:2]))
        assert not (home / "out" / f"{DAYS[1]}.zarr").exists()
        # night 3: day 2 finished arriving; day 3 delivered with a corrupted chunk
        d2 = deliver(home, DAYS[1])
        deliver(home, DAYS[2], corrupt=True)
        codes.append(night(home, 3, DAYS))
        check(home, DAYS[1], *d2)
        verify = subprocess.run([sys.executable, "-m", "pipeline", "verify", str(home / "in" / DAYS[2] / "pair.zarr")],
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
        print(f"\n$ pipeline verify in/{DAYS[2]}/pair.zarr  ->  exit {verify.returncode}\n" + verify.stdout.rstrip())
        print(f"\nexit codes by night: {codes}")
        print("metrics (last night):\n" + "\n".join(
            l for l in (home / "metrics" / "pipeline.prom").read_text().splitlines() if l.startswith("pipeline_run_exit_code")))
        assert codes == [0, 5, 2], codes
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
