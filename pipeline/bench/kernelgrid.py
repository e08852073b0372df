"""``pipeline bench --kernels``: the in-memory kernel grid, one thread.

Every reducer × boundary × input dtype × (without, with nodata) × window size through
:func:`pipeline.window_reduce` on an ``n × n`` image held in memory (the per-block computation,
no I/O, no dask), the median of ``repeats`` runs.  Each cell reports its throughput, its time
relative to the integer shrink sum of the same ``W`` (the fastest path; var/std count as two
sums, so their ratio is halved) and, where scipy.ndimage has an equivalent (``uniform_filter``
for sum/mean, two ``uniform_filter`` for var/std, ``minimum_filter``/``maximum_filter``; its
boundary modes; no nodata), scipy's time and how many times faster this project is.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pipeline.plan import registry

REDUCERS = tuple(registry.REDUCERS)
BOUNDARIES = tuple(registry.BOUNDARIES)
DTYPES = ("uint8", "uint16", "int32", "float32", "float64")
#: statistics per reducer for the ratio to the integer sum (var/std: the sums of d and d**2)
WEIGHT = {"var": 2, "std": 2}


def make_image(n: int, dtype: str, nodata: bool, seed: int = 0) -> tuple[np.ndarray, Any]:
    """An ``n × n`` test image of ``dtype`` and its nodata (None, a value, or NaN for floats:
    then ~1% of the pixels are missing)."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        x = (rng.standard_normal((n, n)) * 50 + 1000).astype(dt)
    else:
        info = np.iinfo(dt)
        x = rng.integers(max(info.min, -(10**6)), min(info.max, 10**6), (n, n), endpoint=True).astype(dt)
    if not nodata:
        return x, None
    holes = rng.random((n, n)) < 0.01
    if dt.kind == "f":
        x[holes] = np.nan
        return x, None  # NaN is always missing in float inputs
    value = int(x.flat[0])
    x[holes] = value
    return x, value


def _median_time(fn: Callable[[], Any], repeats: int) -> float:
    ts = []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def _scipy(reduce: str, boundary: str, w: int) -> Callable[[np.ndarray], Any] | None:
    """scipy.ndimage's fastest equivalent of one cell (float64 results for sums), or None."""
    from scipy import ndimage

    mode = registry.boundary(boundary).scipy_mode
    if mode is None:
        return None
    kw = dict(size=w, mode=mode)
    if reduce in ("sum", "mean"):
        return lambda x: ndimage.uniform_filter(x, output=np.float64, **kw)
    if reduce in ("var", "std"):

        def var(x):
            f = x.astype(np.float64)
            m = ndimage.uniform_filter(f, **kw)
            v = ndimage.uniform_filter(f * f, **kw)
            v -= m * m
            return np.sqrt(v, out=v) if reduce == "std" else v

        return var
    if reduce == "min":
        return lambda x: ndimage.minimum_filter(x, **kw)
    if reduce == "max":
        return lambda x: ndimage.maximum_filter(x, **kw)
    return None


def kernel_grid(
    n: int = 4096,
    windows: Sequence[int] = (3, 15, 63),
    *,
    reducers: Sequence[str] = REDUCERS,
    boundaries: Sequence[str] = BOUNDARIES,
    dtypes: Sequence[str] = DTYPES,
    nodata: str = "both",
    repeats: int = 3,
    scipy: bool = True,
    echo=None,
) -> dict[str, Any]:
    """Time the grid; returns ``{"n", "repeats", "cells": [...]}`` (JSON-able).  ``nodata``:
    ``"both"``, ``"no"`` or ``"yes"`` (images with 1% missing pixels)."""
    from pipeline.api import reduce as api
    from pipeline.errors import ConfigError

    choices = {"both": (False, True), "no": (False,), "yes": (True,)}
    if nodata not in choices:
        raise ConfigError(f"must be 'both', 'no' or 'yes', got {nodata!r}", where="--nodata")
    for name, given, allowed in (("--reducers", reducers, REDUCERS), ("--boundaries", boundaries, BOUNDARIES), ("--dtypes", dtypes, DTYPES)):
        bad = [v for v in given if v not in allowed]
        if bad or not given:
            raise ConfigError(f"must be among {','.join(allowed)}, got {','.join(given)!r}", where=name)

    cells = []
    images: dict[tuple[str, bool], tuple[np.ndarray, Any]] = {}
    base_img = make_image(n, "uint8", False)[0]
    for w in windows:
        api.window_reduce("a", {"a": base_img[:64, :64]}, size=w)  # compile / load outside the timing
        base = _median_time(lambda: api.window_reduce("a", {"a": base_img}, size=w), repeats)
        for dtype in dtypes:
            for nd in choices[nodata]:
                key = (dtype, nd)
                if key not in images:
                    images.clear()  # one image at a time: bounded memory
                    images[key] = make_image(n, dtype, nd)
                x, value = images[key]
                for boundary in boundaries:
                    for reduce in reducers:
                        kw: dict[str, Any] = dict(size=w, reduce=reduce, boundary=boundary, nodata=None if value is None else {"a": value})
                        api.window_reduce("a", {"a": x[:64, :64]}, **kw)
                        sec = _median_time(lambda: api.window_reduce("a", {"a": x}, **kw), repeats)
                        cell: dict[str, Any] = {
                            "W": w, "reduce": reduce, "boundary": boundary, "dtype": dtype, "nodata": nd,
                            "seconds": sec, "mpix_s": n * n / 1e6 / sec,
                            "vs_int_sum": sec / base / WEIGHT.get(reduce, 1), "int_sum_seconds": base,
                        }
                        ref = _scipy(reduce, boundary, w) if scipy and not nd else None
                        if ref is not None:
                            cell["scipy_seconds"] = _median_time(lambda: ref(x), repeats)
                            cell["x_scipy"] = cell["scipy_seconds"] / sec
                        cells.append(cell)
                        if echo:
                            echo(grid_row(cell))
    return {"n": n, "repeats": repeats, "cells": cells}


def grid_row(c: dict[str, Any]) -> str:
    scipy = f"{c['scipy_seconds']:.3f} | {c['x_scipy']:.1f}" if "scipy_seconds" in c else "— | —"
    return (
        f"| {c['W']} | {c['reduce']} | {c['boundary']} | {c['dtype']} | {'yes' if c['nodata'] else 'no'} | "
        f"{c['seconds']:.3f} | {c['mpix_s']:.0f} | {c['vs_int_sum']:.2f} | {scipy} |"
    )


def grid_table(results: dict[str, Any]) -> str:
    """The grid as a Markdown table, and the cells that miss the targets (within 2× of the
    integer shrink sum per statistic; at least 3× scipy where it has an equivalent)."""
    head = ("| W | reduce | boundary | dtype | nodata | s | Mpix/s | × int shrink sum (per statistic) | "
            "scipy s | × faster than scipy |")
    lines = [f"kernel grid: {results['n']}², one thread, median of {results['repeats']}", "", head,
             "|" + "---|" * (head.count("|") - 1)]
    lines += [grid_row(c) for c in results["cells"]]
    slow = [c for c in results["cells"] if c["vs_int_sum"] > 2]
    behind = [c for c in results["cells"] if c.get("x_scipy", 3) < 3]
    lines.append("")
    lines.append(f"cells over 2× the integer shrink sum per statistic: {len(slow)} of {len(results['cells'])}")
    lines.append(f"cells under 3× scipy's speed (where scipy has an equivalent): {len(behind)} of "
                 f"{sum('x_scipy' in c for c in results['cells'])}")
    return "\n".join(lines + [""] + grid_summary(results["cells"]))


def grid_summary(cells: Sequence[dict[str, Any]]) -> list[str]:
    """Per reducer and input dtype: the median and the worst ratio to the integer shrink sum
    (per statistic) and the fewest times faster than scipy, over boundaries, nodata and W."""
    out = ["| reduce | dtype | cells | × int shrink sum: median | worst | × scipy: fewest |", "|---|---|---|---|---|---|"]
    keys = sorted({(c["reduce"], c["dtype"]) for c in cells}, key=lambda k: (REDUCERS.index(k[0]), DTYPES.index(k[1])))
    for red, dt in keys:
        sel = [c for c in cells if (c["reduce"], c["dtype"]) == (red, dt)]
        ratios = sorted(c["vs_int_sum"] for c in sel)
        xs = [c["x_scipy"] for c in sel if "x_scipy" in c]
        fewest = f"{min(xs):.1f}" if xs else "—"
        out.append(f"| {red} | {dt} | {len(sel)} | {statistics.median(ratios):.2f} | {ratios[-1]:.2f} | {fewest} |")
    return out
