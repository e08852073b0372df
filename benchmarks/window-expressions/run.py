"""SSIM as a window expression against the single-sum run and scikit-image (issue 25).

    python benchmarks/window-expressions/run.py [N] [--skimage-max M]

Inputs: an N x N uint8 pair (scikit-image's camera tiled, and a noisy copy) as dask arrays in
1024 x 1024 chunks; W = 7, boundary reflect.  Prints the median of 3 runs (after one warm-up
run that compiles the kernels) of: ``sum`` of one input (one window sum: the unit of cost), ``mean`` of one input and of ``a * b`` (one of SSIM's terms), SSIM
(5 distinct mean terms and a count, one read of both inputs), and scikit-image's
``structural_similarity(full=True)`` in memory at min(N, M).
"""

from __future__ import annotations

import statistics
import sys
import time

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


def main(argv: list[str]) -> None:
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
