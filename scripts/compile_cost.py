"""Cold against warm runs (issue 26): each case run twice from a fresh process with empty kernel
caches (a fresh ``PIPELINE_CACHE_DIR`` and ``NUMBA_CACHE_DIR``), on a 512 x 512 pair; the second
run recomputes (``--force``) with the caches the first one filled.  With ``--warmup`` one pair of
caches, filled once by ``pipeline warmup`` (as a container image's build or a cluster node's
set-up would), serves every case.

    python scripts/compile_cost.py [--warmup] [--cases int-sum,float-mean-std,min-max,int-mean]

Prints a Markdown table of wall-clock seconds (the whole ``pipeline run`` process)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
import zarr

CASES = {  # name: (dtype, reduce)
    "int-sum": ("uint16", "sum"),
    "float-mean-std": ("float32", ["mean", "std"]),
    "min-max": ("uint16", ["min", "max"]),
    "int-mean": ("int16", "mean"),
}


def _timed(args: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _env(root: Path, name: str) -> dict[str, str]:
    return {**os.environ, "PIPELINE_CACHE_DIR": str(root / f"cache-{name}"), "NUMBA_CACHE_DIR": str(root / f"numba-{name}")}


def _case(root: Path, name: str, dtype: str, reduce: str | list[str], shared: bool) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    g = zarr.open_group(root / f"{name}.zarr", mode="w")
    for arr in ("a", "b"):
        data = (rng.random((512, 512)) * 1000).astype(dtype)
        g.create_array(arr, shape=data.shape, dtype=dtype, chunks=(256, 256))[...] = data
    cfg = {"inputs": {"a": {"path": f"{name}.zarr", "array": "a"}, "b": {"path": f"{name}.zarr", "array": "b"}},
           "op": "a - b" if dtype.startswith("float") else "a + b", "window": {"size": 5, "reduce": reduce},
           "output": {"path": f"out-{name}.zarr", "overwrite": True}}
    (root / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    env = _env(root, "shared" if shared else name)
    pipeline = [sys.executable, "-m", "pipeline"]
    cold = _timed([*pipeline, "run", "-q", "--force", str(root / f"{name}.yaml")], env)
    warm = _timed([*pipeline, "run", "-q", "--force", str(root / f"{name}.yaml")], env)
    return cold, warm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warmup", action="store_true", help="run `pipeline warmup` into the empty caches first")
    ap.add_argument("--cases", default=",".join(CASES))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.warmup:
            print(f"pipeline warmup: {_timed([sys.executable, '-m', 'pipeline', 'warmup'], _env(Path(tmp), 'shared')):.1f} s")
        print("| case | first run s | second run s | first/second |\n|---|---|---|---|")
        for name in args.cases.split(","):
            cold, warm = _case(Path(tmp), name, *CASES[name], args.warmup)
            print(f"| {name} | {cold:.1f} | {warm:.1f} | {cold / warm:.2f} |", flush=True)


if __name__ == "__main__":
    main()
