"""Throughput cost of the crc32c checksum codec and of the resume ledger (+ lock, fingerprint,
completion flag), as ratios against a run without them, measured side by side.

    python scripts/reliability_cost.py [--size 4096] [--chunk 512] [--repeats 5]

Variants, each a full run of the same config into a fresh output, interleaved round-robin:
  bare      no checksum codec, no ledger/lock (the main job's original write path)
  crc       checksum codec only
  ledger    ledger + lock + fingerprint + completion flag only
  both      both (what `pipeline run` does)
Prints the median seconds and Mpix/s per variant and the ratios to `bare`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec

from pipeline import io, runner


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--window", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="relcost-"))
    rng = np.random.default_rng(0)
    g = zarr.open_group(root / "in.zarr", mode="w")
    for name in "ab":
        g.create_array(name, shape=(args.size,) * 2, dtype="uint8", chunks=(args.chunk,) * 2)[...] = rng.integers(
            0, 256, (args.size,) * 2, dtype=np.uint8
        )
    config = {
        "inputs": {"a": {"path": str(root / "in.zarr"), "array": "a"}, "b": {"path": str(root / "in.zarr"), "array": "b"}},
        "op": "a**2 - b**2",
        "window": {"size": args.window},
        "output": {"path": str(root / "out.zarr")},
        "compute": {"chunks": args.chunk, "workers": args.workers},
    }
    with_crc = io.default_compressors
    without_crc = lambda dtype: [c for c in with_crc(dtype) if not isinstance(c, Crc32cCodec)]  # noqa: E731

    def once(crc: bool, ledger: bool) -> float:
        for p in (root / "out.zarr", root / "out.zarr.pipeline"):
            shutil.rmtree(p, ignore_errors=True)
        io.default_compressors = with_crc if crc else without_crc
        try:
            t0 = time.perf_counter()
            if ledger:
                res = runner.run(config)
            else:
                res = runner._run_unmanaged(runner.prepare(config), t0, None, True)
            assert res.computed == res.blocks
            return time.perf_counter() - t0
        finally:
            io.default_compressors = with_crc

    variants = {"bare": (False, False), "crc": (True, False), "ledger": (False, True), "both": (True, True)}
    once(True, True)  # warm-up: imports, caches
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.repeats):
        for name, (crc, led) in variants.items():
            times[name].append(once(crc, led))
    mpix = args.size**2 / 1e6
    nblocks = (-(-args.size // args.chunk)) ** 2
    print(f"{args.size}x{args.size} uint8 pair, W={args.window}, {nblocks} blocks of {args.chunk}^2, {args.repeats} repeats, {args.workers} workers")
    base = statistics.median(times["bare"])
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"{name:7s} median {m:7.3f} s  {mpix / m:7.1f} Mpix/s  time ratio vs bare {m / base:5.3f}  (runs: {', '.join(f'{t:.3f}' for t in ts)})")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
