"""SSIM as a window expression against the single-sum run and scikit-image (issue 25).

    python benchmarks/window-expressions/run.py [N] [--skimage-max M]
    python benchmarks/window-expressions/run.py --disk N [--repeats R] [--work DIR]

Inputs: an N x N uint8 pair (scikit-image's camera tiled, and a noisy copy) as dask arrays in
1024 x 1024 chunks; W = 7, boundary reflect.  Prints the median of 3 runs (after one warm-up
run that compiles the kernels) of: ``sum`` of one input (one window sum: the unit of cost), ``mean`` of one input and of ``a * b`` (one of SSIM's terms), SSIM
(5 distinct mean terms and a count, one read of both inputs), and scikit-image's
``structural_similarity(full=True)`` in memory at min(N, M).

``--disk N``: out of core.  Writes an N x N uint8 pair (``pipeline bench``'s imagery-like pair,
:func:`pipeline.bench.compare.make_pair`, chunks 1024) as Zarr under DIR (default
/tmp/winexpr-bench), then runs ``pipeline run`` on two configs, each in its own process, the two
alternating R times (default 3): ``sum(a)`` (op ``a``, reduce sum: one window sum, int32 output),
``mean(a)`` (one window sum and a float64 output, as SSIM's) and ``ssim(a, b, data_range=255)``
(float64 output), all W = 7, boundary reflect, the threads
scheduler on every core.  Prints each one's median wall time (the process's, start-up included),
its peak RSS (the process's, from GNU time) and the ratios.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import dask.array as da
import numpy as np

import pipeline


def pair(n: int) -> tuple[np.ndarray, np.ndarray]:
    from skimage import data

    cam = data.camera()
    a = np.tile(cam, (-(-n // cam.shape[0]), -(-n // cam.shape[1])))[:n, :n]
    rng = np.random.default_rng(0)
    b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a), b


def timed(fn, repeat: int = 3) -> float:
    fn()  # warm-up: kernels compiled, caches filled
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def config(work: Path, name: str, op: str, reduce: str) -> Path:
    path = work / f"{name}.yaml"
    path.write_text(
        f"inputs:\n  a: {{path: pair.zarr, array: a}}\n  b: {{path: pair.zarr, array: b}}\nop: '{op}'\n"
        f"window: {{size: 7, boundary: reflect, reduce: {reduce}}}\noutput: {{path: {name}.zarr, overwrite: true}}\n"
    )
    return path


def run_once(cfg: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes, GNU time's %M: of the run's process alone, not this
    driver's) of ``pipeline run`` on ``cfg`` in a fresh process, its output removed first (a
    rerun would resume: nothing to compute)."""
    shutil.rmtree(cfg.with_suffix(".zarr"), ignore_errors=True)
    rss_file = cfg.with_suffix(".rss")
    t = time.perf_counter()
    subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(rss_file), sys.executable, "-m", "pipeline", "run", "-q", str(cfg)], check=True)
    wall = time.perf_counter() - t
    return wall, int(rss_file.read_text().split()[-1]) * 1024


def disk(n: int, repeats: int, work: Path) -> None:
    from pipeline.bench.compare import make_pair

    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    make_pair(str(work / "pair.zarr"), n, 1024)
    print(f"{n}x{n} uint8 pair written to {work / 'pair.zarr'} in {time.perf_counter() - t:.1f} s")
    cfgs = {
        "sum(a)": config(work, "sum", "a", "sum"),
        "mean(a)": config(work, "mean", "a", "mean"),
        "ssim(a, b)": config(work, "ssim", "ssim(a, b, data_range=255)", "sum"),
    }
    runs: dict[str, list[tuple[float, int]]] = {k: [] for k in cfgs}
    for _ in range(repeats):
        for k, cfg in cfgs.items():
            runs[k].append(run_once(cfg))
            print(f"  {k:<11} {runs[k][-1][0]:8.2f} s  peak RSS {runs[k][-1][1] / 2**20:7.0f} MiB", flush=True)
    med = {k: statistics.median(w for w, _ in r) for k, r in runs.items()}
    rss = {k: max(m for _, m in r) for k, r in runs.items()}
    print(f"{n}x{n} uint8 on disk, W=7, reflect, pipeline run, medians of {repeats}:")
    for k in cfgs:
        print(f"  {k:<11} {med[k]:8.2f} s  peak RSS {rss[k] / 2**20:7.0f} MiB")
    for unit in ("sum(a)", "mean(a)"):
        print(f"  ratio ssim / {unit}: {med['ssim(a, b)'] / med[unit]:.2f} x time, {rss['ssim(a, b)'] / rss[unit]:.2f} x peak RSS")


def main(argv: list[str]) -> None:
    if "--disk" in argv:
        repeats = int(argv[argv.index("--repeats") + 1]) if "--repeats" in argv else 3
        work = Path(argv[argv.index("--work") + 1]) if "--work" in argv else Path("/tmp/winexpr-bench")
        return disk(int(argv[argv.index("--disk") + 1]), repeats, work)
    n = int(argv[0]) if argv and not argv[0].startswith("-") else 4096
    sk_max = int(argv[argv.index("--skimage-max") + 1]) if "--skimage-max" in argv else 4096
    a, b = pair(n)
    inputs = {"a": da.from_array(a, chunks=1024), "b": da.from_array(b, chunks=1024)}
    kw = dict(size=7, boundary="reflect")
    one = timed(lambda: np.asarray(pipeline.window_reduce("a", {"a": inputs["a"]}, reduce="sum", **kw)))
    mean = timed(lambda: np.asarray(pipeline.window_reduce("a", {"a": inputs["a"]}, reduce="mean", **kw)))
    term = timed(lambda: np.asarray(pipeline.window_reduce("a * b", inputs, reduce="mean", **kw)))
    ssim = timed(lambda: np.asarray(pipeline.window_reduce("ssim(a, b, data_range=255)", inputs, **kw)))
    print(f"{n}x{n} uint8, W=7, reflect, chunks 1024, medians of 3")
    print(f"  one window sum   sum(a)          {one:8.3f} s")
    print(f"  one window mean  mean(a)         {mean:8.3f} s")
    print(f"  one term         mean(a * b)     {term:8.3f} s")
    print(f"  ssim(a, b)       6 terms         {ssim:8.3f} s   = {ssim / one:.2f} x one sum, {ssim / mean:.2f} x one mean, {ssim / term:.2f} x mean(a * b)")
    m = min(n, sk_max)
    from skimage.metrics import structural_similarity

    sa, sb = a[:m, :m], b[:m, :m]
    sk = timed(lambda: structural_similarity(sa, sb, win_size=7, full=True, data_range=255))
    ours = ssim if m == n else timed(lambda: np.asarray(pipeline.window_reduce("ssim(a, b, data_range=255)", {"a": sa, "b": sb}, **kw)))
    _, ref = structural_similarity(sa, sb, win_size=7, full=True, data_range=255)
    got = np.asarray(pipeline.window_reduce("ssim(a, b, data_range=255)", {"a": da.from_array(sa, chunks=1024), "b": da.from_array(sb, chunks=1024)}, **kw))
    print(f"  scikit-image     {m}x{m} in memory {sk:8.3f} s   (ours at {m}: {ours:.3f} s; max abs diff of the maps {np.abs(got - ref).max():.1e})")


if __name__ == "__main__":
    main(sys.argv[1:])
