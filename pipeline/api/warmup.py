"""``pipeline warmup``: compile every kernel family into the on-disk caches before the first real
run needs them (a container image's build step, a cluster node's set-up), so that a fresh
process loads compiled kernels instead of compiling them in the middle of a job.

Each family is compiled by running it, through :func:`~pipeline.api.reduce.window_reduce`, on a
small image of each common input dtype, with and without nodata: numba compiles one
specialisation per argument type, so the shapes do not matter and the first real run with these
dtypes finds them cached.  The pointwise expression of a config (``op``) is compiled per
expression, on its first run."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from pipeline.api.reduce import Reducer, window_reduce

#: the input dtypes warmed up: those of common rasters and microscopy images
DTYPES = ("uint8", "uint16", "int16", "int32", "float32", "float64")
#: the reductions warmed up, as configs combine them (one pass computes a combination)
REDUCTIONS: tuple[tuple[Reducer, ...], ...] = (("sum",), ("mean",), ("var", "std"), ("mean", "std"), ("min", "max"), ("count",))


def warmup(
    dtypes: Sequence[str] = DTYPES, reductions: Sequence[tuple[Reducer, ...]] = REDUCTIONS, notify: Callable[[str], None] | None = None
) -> int:
    """Run every reduction on a 64 x 64 image of each dtype, without and with nodata; returns the
    number of combinations run.  ``notify`` gets one line per dtype with its seconds."""
    n = 0
    for dtype in dtypes:
        t0 = time.perf_counter()
        img = (np.arange(64 * 64) % 97).reshape(64, 64).astype(dtype)
        for reduce in reductions:
            for nodata in (None, {"a": 0}):
                window_reduce("a", {"a": img}, size=5, reduce=list(reduce), nodata=nodata)
                n += 1
        if notify is not None:
            notify(f"warmup: {dtype} kernels ready in {time.perf_counter() - t0:.1f} s")
    return n
