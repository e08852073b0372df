"""Throughput cost of the crc32c checksum codec and of the resume ledger, as ratios measured
side by side.

    python scripts/reliability_cost.py [--size 4096] [--chunk 512] [--repeats 5]

Variants, each a full `pipeline run` of the same config into a fresh output, interleaved
round-robin (every run keeps its ledger, lock, fingerprint and completion flag: there is no
run without them):
  crc       what `pipeline run` does
  no-crc    the output codecs without the checksum
Prints the median seconds and Mpix/s per variant and the ratio to `no-crc`, then per-chunk micro
timings (crc32c vs the Blosc encoding of one chunk; one ledger record vs the time per block),
which are far less noisy than whole runs on a busy machine.
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

from pipeline.runner import runconfig
from pipeline.storage.targets import zarr as zarr_target


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
    with_crc = zarr_target.default_compressors
    without_crc = lambda dtype: [c for c in with_crc(dtype) if not isinstance(c, Crc32cCodec)]  # noqa: E731

    def once(crc: bool) -> float:
        for p in (root / "out.zarr", root / "out.zarr.pipeline"):
            shutil.rmtree(p, ignore_errors=True)
        zarr_target.default_compressors = with_crc if crc else without_crc  # type: ignore[assignment]
        try:
            t0 = time.perf_counter()
            res = runconfig.run(config)
            assert res.computed == res.blocks
            return time.perf_counter() - t0
        finally:
            zarr_target.default_compressors = with_crc  # type: ignore[assignment]

    variants = {"no-crc": False, "crc": True}
    once(True)  # warm-up: imports, caches
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.repeats):
        for name, crc in variants.items():
            times[name].append(once(crc))
    mpix = args.size**2 / 1e6
    nblocks = (-(-args.size // args.chunk)) ** 2
    print(f"{args.size}x{args.size} uint8 pair, W={args.window}, {nblocks} blocks of {args.chunk}^2, {args.repeats} repeats, {args.workers} workers")
    base = statistics.median(times["no-crc"])
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"{name:7s} median {m:7.3f} s  {mpix / m:7.1f} Mpix/s  time ratio vs no-crc {m / base:5.3f}  (runs: {', '.join(f'{t:.3f}' for t in ts)})")
    micro(root, args.chunk, statistics.median(times["crc"]) / nblocks)
    shutil.rmtree(root, ignore_errors=True)


def micro(root: Path, chunk: int, per_block_s: float) -> None:
    """Per-chunk costs, timed directly (far less noisy than whole runs on a busy machine): the
    crc32c of one output chunk against its Blosc-zstd encoding, and one ledger record (a line
    appended to a task's record file) against the measured time per block of a run."""
    import timeit

    import crc32c

    from pipeline.storage.ledger import BlockRecorder

    rng = np.random.default_rng(1)
    block = np.cumsum(rng.integers(-65025, 65025, (chunk, chunk)), axis=1).astype(np.int32)  # window-sum-like
    import numcodecs

    enc = numcodecs.Blosc(cname="zstd", clevel=1, shuffle=numcodecs.Blosc.SHUFFLE)
    raw = block.tobytes()
    comp = enc.encode(raw)
    t_blosc = min(timeit.repeat(lambda: enc.encode(raw), number=20, repeat=5)) / 20
    t_crc = min(timeit.repeat(lambda: crc32c.crc32c(comp), number=200, repeat=5)) / 200
    d = root / "ledger-micro"
    d.mkdir()
    rec = BlockRecorder(str(d)).task()
    idx = iter(range(10**7))
    t_rec = min(timeit.repeat(lambda: rec((next(idx), 0)), number=200, repeat=5)) / 200
    print(f"micro: chunk {chunk}x{chunk} int32 ({len(raw) / 2**20:.2f} MiB, {len(comp) / 2**10:.0f} KiB compressed)")
    print(f"  crc32c of the compressed chunk {t_crc * 1e6:8.1f} us   = {t_crc / t_blosc:.4f} x its Blosc-zstd encoding ({t_blosc * 1e6:.0f} us)")
    print(f"  one ledger record (a line)      {t_rec * 1e6:8.1f} us   = {t_rec / per_block_s:.5f} x the run's time per block ({per_block_s * 1e3:.1f} ms)")


if __name__ == "__main__":
    main()
