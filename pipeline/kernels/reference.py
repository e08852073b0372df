"""Per-block window reductions: pure numpy, no I/O, no dask.

Geometry convention (shared with :mod:`pipeline.plan.planner`): along an axis, the window of size ``W``
centred on pixel ``i`` covers ``i - lo … i + hi`` with ``lo = W // 2`` and ``hi = W - 1 - lo``
(the seed's ``start = i - W//2; stop = start + W``).  A kernel receives a block of data that
already carries whatever neighbouring pixels exist (the halo), and computes the result for a
contiguous range of *local* centres ``start … stop-1``.  Windows are truncated to the data it is
given: since the halo is at least as wide as the window arm, truncation happens only at the image
border, which is exactly the ``shrink`` rule.

Sums are O(1) per pixel whatever ``W``.  Integer sums are prefix-sum differences in the output
dtype: prefix sums may wrap around, but their differences are exact modulo 2**bits, hence exact
whenever the true window sum fits the dtype (the plan guarantees it).  Float sums are formed from
each window's own values (block prefix and suffix sums, :mod:`pipeline.kernels.blocksum`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline.kernels import blocksum


def window_sum_1d(x: np.ndarray, axis: int, lo: int, hi: int, start: int, stop: int) -> np.ndarray:
    """Sums of ``x`` over windows ``[c - lo, c + hi]`` (clipped to the data) for local centres
    ``c`` in ``[start, stop)`` along ``axis``.  The result has ``x.dtype`` and ``stop - start``
    elements along ``axis``."""
    n = x.shape[axis]
    if not (0 <= start <= stop <= n):
        raise ValueError(f"centres [{start}, {stop}) outside data of length {n}")
    if lo == 0 and hi == 0:
        return _take(x, axis, slice(start, stop)).copy()
    if x.dtype.kind in "fc":  # each window's sum from its own values (:mod:`pipeline.kernels.blocksum`)
        return blocksum.clipped_sum(x, axis, lo, hi, start, stop)
    shape = list(x.shape)
    shape[axis] = n + 1
    prefix = np.empty(shape, dtype=x.dtype)
    _take(prefix, axis, slice(0, 1))[...] = 0
    with np.errstate(over="ignore"):
        np.cumsum(x, axis=axis, dtype=x.dtype, out=_take(prefix, axis, slice(1, None)))
        return _window_diff(prefix, axis, lo, hi, start, stop, n)


def _window_diff(prefix: np.ndarray, axis: int, lo: int, hi: int, start: int, stop: int, n: int) -> np.ndarray:
    """``prefix[min(c+hi, n-1) + 1] - prefix[max(c-lo, 0)]`` for ``c`` in ``[start, stop)``.

    Interior centres (whole window inside the data) are one vectorised slice subtraction; only
    the few centres whose window is clipped by the data's ends use fancy indexing."""
    out_shape = list(prefix.shape)
    out_shape[axis] = stop - start
    out = np.empty(out_shape, dtype=prefix.dtype)
    i0 = min(max(lo, start), stop)  # first interior centre
    i1 = max(min(n - 1 - hi, stop - 1) + 1, i0)  # one past the last interior centre
    if i1 > i0:
        np.subtract(
            _take(prefix, axis, slice(i0 + hi + 1, i1 + hi + 1)),
            _take(prefix, axis, slice(i0 - lo, i1 - lo)),
            out=_take(out, axis, slice(i0 - start, i1 - start)),
        )
    edge = np.r_[np.arange(start, i0), np.arange(i1, stop)]
    if edge.size:
        upper = np.minimum(edge + hi, n - 1) + 1
        lower = np.maximum(edge - lo, 0)
        index = [slice(None)] * out.ndim
        index[axis] = edge - start
        out[tuple(index)] = np.take(prefix, upper, axis=axis) - np.take(prefix, lower, axis=axis)
    return out


def _take(a: np.ndarray, axis: int, sl: slice) -> np.ndarray:
    index = [slice(None)] * a.ndim
    index[axis] = sl
    return a[tuple(index)]


def window_sum(
    x: np.ndarray,
    axes: Sequence[int],
    lo: Sequence[int],
    hi: Sequence[int],
    start: Sequence[int],
    stop: Sequence[int],
) -> np.ndarray:
    """Separable window sum over several axes (see :func:`window_sum_1d`)."""
    out = x
    for ax, l, h, s, e in zip(axes, lo, hi, start, stop):
        out = window_sum_1d(out, ax, l, h, s, e)
    return out


# --------------------------------------------------------------------------------------------
# General reductions: every reducer, any footprint, missing pixels.
#
# These kernels take a field that has already been extended (padded or haloed) so that every
# requested centre has its whole window inside the data: pixels outside the image are either
# padding values (scipy.ndimage's modes) or marked missing (``shrink``).  The window axes are
# the last ``k`` (two for footprints and weights, two or more for rectangles).  ``missing`` (bool, same shape, or None when no pixel is missing) marks
# pixels the reducers skip.


@dataclass(frozen=True)
class Window:
    """A window over the last ``k = len(lo)`` axes: arms ``lo``/``hi``, the centres
    ``[start, stop)`` per axis, and its footprint: a rectangle (``runs`` and ``taps`` None; any
    ``k >= 2``), row runs ``(dy, a, b)`` (offsets ``dx`` in ``a … b`` of row ``dy``; disks,
    weights' non-zero taps), or weighted taps ``(dy, dx, w)`` (weighted sums); runs and taps
    are 2-D."""

    lo: tuple[int, ...]
    hi: tuple[int, ...]
    start: tuple[int, ...]
    stop: tuple[int, ...]
    runs: tuple[tuple[int, int, int], ...] | None = None
    taps: tuple[tuple[int, int, int | float], ...] | None = None

    @property
    def out_shape(self) -> tuple[int, ...]:
        return tuple(e - s for s, e in zip(self.start, self.stop))

    k = property(lambda self: len(self.lo), doc="The number of window axes.")

    def shifted(self, dy: int, dx: int) -> tuple[slice, slice]:
        """Index of the data at offset ``(dy, dx)`` from every centre."""
        return (
            slice(self.start[0] + dy, self.stop[0] + dy),
            slice(self.start[1] + dx, self.stop[1] + dx),
        )


def footprint_runs(fp: np.ndarray, lo: Sequence[int]) -> tuple[tuple[int, int, int], ...]:
    """Decompose a boolean footprint into row runs ``(dy, a, b)`` of offsets from the centre."""
    runs = []
    for r, row in enumerate(np.asarray(fp, dtype=bool)):
        c = 0
        while c < row.size:
            if row[c]:
                e = c
                while e + 1 < row.size and row[e + 1]:
                    e += 1
                runs.append((r - lo[0], c - lo[1], e - lo[1]))
                c = e + 1
            else:
                c += 1
    return tuple(runs)


def weight_taps(weights: np.ndarray, lo: Sequence[int]) -> tuple[tuple[int, int, int | float], ...]:
    """The non-zero weights as taps ``(dy, dx, w)``."""
    w = np.asarray(weights, dtype=object)
    return tuple(
        (r - lo[0], c - lo[1], w[r, c]) for r in range(w.shape[0]) for c in range(w.shape[1]) if w[r, c] != 0
    )


def _prefix_x(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    p = np.empty(x.shape[:-1] + (x.shape[-1] + 1,), dtype=dtype)
    p[..., 0] = 0
    with np.errstate(over="ignore"):
        np.cumsum(x, axis=-1, dtype=dtype, out=p[..., 1:])
    return p


def footprint_sum(x: np.ndarray, win: Window, dtype: npt.DTypeLike) -> np.ndarray:
    """Sums of ``x`` (cast to ``dtype``) over the window's footprint (taps: weighted) for every
    centre.  Rectangles: separable running sums, O(1) per pixel; row runs: one running-sum
    difference per footprint row, O(rows); taps: O(taps).  Integer sums wrap only in
    intermediates and are exact whenever the result fits ``dtype``."""
    dt: np.dtype = np.dtype(dtype)
    if win.taps is not None:
        out = np.zeros(x.shape[:-2] + win.out_shape, dtype=dt)
        with np.errstate(over="ignore", invalid="ignore"):
            for dy, dx, w in win.taps:
                term = x[(..., *win.shifted(dy, dx))].astype(dt, copy=False)
                if w == 1:
                    out += term
                else:
                    out += term * dt.type(w)
        return out
    if win.runs is None:
        n = x.ndim
        return window_sum(x.astype(dt, copy=False), range(n - win.k, n), win.lo, win.hi, win.start, win.stop)
    if dt.kind == "f":  # each window's sum from its own values
        return blocksum.runs_sum(x.astype(dt, copy=False), win.runs, win.shifted, win.out_shape)
    p = _prefix_x(x, dt)
    out = np.zeros(x.shape[:-2] + win.out_shape, dtype=dt)
    with np.errstate(over="ignore"):
        for dy, a, b in win.runs:
            ys, _ = win.shifted(dy, 0)
            out += p[..., ys, win.start[1] + b + 1 : win.stop[1] + b + 1]
            out -= p[..., ys, win.start[1] + a : win.stop[1] + a]
    return out


def _float_sum(x: np.ndarray, win: Window) -> np.ndarray:
    """Float64 window sums, each from its own window's values: an infinity reaches only the
    windows that hold it (+inf and -inf together: NaN)."""
    return footprint_sum(x.astype(np.float64, copy=False), win, np.float64)


def running_extreme(x: np.ndarray, length: int, axis: int, op: str) -> np.ndarray:
    """``min`` (or ``max``) of ``x[j : j + length]`` along ``axis`` for every ``j`` in
    ``0 … n - length``: the van Herk/Gil-Werman algorithm (block-wise prefix and suffix extremes,
    three comparisons per element whatever ``length``), in numpy so that it is exact for every
    dtype (scipy.ndimage's filters go through float64, which rounds int64 beyond 2**53)."""
    ufunc = np.minimum if op == "min" else np.maximum
    x = np.moveaxis(x, axis, -1)
    n = x.shape[-1]
    if length == 1:
        return np.moveaxis(x, -1, axis)
    nb = -(-n // length)
    pad = nb * length - n
    if pad:
        x = np.concatenate([x, np.broadcast_to(x[..., -1:], x.shape[:-1] + (pad,))], axis=-1)
    blocks = x.reshape(x.shape[:-1] + (nb, length))
    g = ufunc.accumulate(blocks, axis=-1).reshape(x.shape)
    h = ufunc.accumulate(blocks[..., ::-1], axis=-1)[..., ::-1].reshape(x.shape)
    out = ufunc(h[..., : n - length + 1], g[..., length - 1 : n])
    return np.moveaxis(out, -1, axis)


def footprint_extreme(x: np.ndarray, win: Window, op: str) -> np.ndarray:
    """Minimum (``op="min"``) or maximum over the footprint: separable van Herk/Gil-Werman
    running extremes (:func:`running_extreme`), O(1) per pixel per axis for rectangles, O(rows)
    for row runs.  The data must already hold every window whole."""
    pick = np.minimum if op == "min" else np.maximum
    runs = win.runs
    if runs is None:
        y = x
        for i, ax in enumerate(range(x.ndim - win.k, x.ndim)):
            keep = [slice(None)] * x.ndim
            keep[ax] = slice(win.start[i] - win.lo[i], win.stop[i] + win.hi[i])
            y = running_extreme(y[tuple(keep)], win.lo[i] + win.hi[i] + 1, ax, op)
        return np.ascontiguousarray(y)
    out = None
    by_run: dict[tuple[int, int], list[int]] = {}
    for dy, a, b in runs:
        by_run.setdefault((a, b), []).append(dy)
    for (a, b), dys in by_run.items():
        f = running_extreme(x, b - a + 1, -1, op)  # f[..., j] covers j … j + b - a
        for dy in dys:
            part = f[(..., *win.shifted(dy, a))]
            out = part.copy() if out is None else pick(out, part, out=out)
    assert out is not None  # a footprint has at least one run
    return out


def identity(dtype: np.dtype, op: str):
    """The value that never wins a min (``op="min"``) or max."""
    if dtype.kind == "f":
        return np.inf if op == "min" else -np.inf
    if dtype.kind == "b":
        return op == "min"
    info = np.iinfo(dtype)
    return info.max if op == "min" else info.min


def reduce_stats(
    field: np.ndarray,
    missing: np.ndarray | None,
    win: Window,
    stats: Sequence[str],
    *,
    area: int,
    bounds: tuple[int, int] | None,
    sum_dtype: np.dtype,
) -> dict[str, np.ndarray | None]:
    """Every statistic in ``stats`` over the window, skipping ``missing`` pixels.

    Returns, per statistic, the raw result and under the key ``"_empty"`` a boolean array of the
    windows without any valid pixel (or None).  ``bounds``: exact bounds of an integer field
    (None for floats); ``sum_dtype``: the dtype integer sums are exact in; ``area``: pixels in
    the footprint.  mean/var/std are float64 (population variance, ``ddof=0``)."""
    valid = None if missing is None else ~missing
    is_int = field.dtype.kind in "biu"
    out: dict[str, np.ndarray | None] = {}  # and "_empty": a bool array or None
    count_win = win if win.taps is None else Window(win.lo, win.hi, win.start, win.stop, runs=win.runs)
    if valid is not None:
        n = footprint_sum(valid.view(np.uint8) if valid.dtype == bool else valid, count_win, np.int32)
        empty = n == 0
    else:
        n = np.full(field.shape[: field.ndim - win.k] + win.out_shape, area, dtype=np.int32)
        empty = None
    out["_empty"] = empty
    if "count" in stats:
        out["count"] = n
    zeroed = field if valid is None else np.where(valid, field, field.dtype.type(0))
    wide = _exact_int(win, bounds, area) if is_int else None
    sums = None  # the sums when "sum" is wanted
    if "sum" in stats:
        sums = footprint_sum(zeroed, win, sum_dtype) if is_int else _float_sum(zeroed, win)
        out["sum"] = sums
    if "mean" in stats:
        out["mean"] = _mean(field, zeroed, valid, win, n, sums, wide)
    if "var" in stats or "std" in stats:
        var = _variance(field, valid, win, n, bounds, area)
        if "var" in stats:
            out["var"] = var
        if "std" in stats:
            out["std"] = np.sqrt(var)
    for op in ("min", "max"):
        if op in stats:
            x = field if valid is None else np.where(valid, field, identity(field.dtype, op))
            out[op] = footprint_extreme(x, count_win, op)
    return out


def _exact_int(win: Window, bounds: tuple[int, int] | None, area: int) -> np.dtype | None:
    """int64 when every (weighted) window sum of an integer field within ``bounds`` is exact in
    it (integer weights only), else None."""
    assert bounds is not None  # integer fields come with their bounds
    mag = max(abs(bounds[0]), abs(bounds[1]))
    if win.taps is None:
        return np.dtype(np.int64) if area * mag < 2**63 else None
    if all(float(w).is_integer() for *_, w in win.taps) and sum(abs(int(w)) for *_, w in win.taps) * mag < 2**63:
        return np.dtype(np.int64)
    return None


def _mean(field: np.ndarray, zeroed: np.ndarray, valid: np.ndarray | None, win: Window, n: np.ndarray, sums: np.ndarray | None, wide: np.dtype | None) -> np.ndarray:
    """Window means (float64): the sums (exact in ``wide`` for integer fields where it exists,
    else float64) over the count of valid pixels, or over their summed weights."""
    if sums is not None and (sums.dtype.kind == "f" or wide is not None):
        s = sums
    elif wide is not None:
        s = footprint_sum(zeroed, win, wide)
    else:
        s = _float_sum(zeroed, win)
    with np.errstate(invalid="ignore", divide="ignore"):
        if win.taps is not None:
            wwin = Window(win.lo, win.hi, win.start, win.stop, taps=win.taps)
            denom = footprint_sum(np.ones(field.shape, np.float64) if valid is None else valid.astype(np.float64), wwin, np.float64)
            return s.astype(np.float64) / denom
        return s.astype(np.float64) / n


def _variance(field: np.ndarray, valid: np.ndarray | None, win: Window, n: np.ndarray, bounds, area: int) -> np.ndarray:
    """Population variance, numerically stable: the data are shifted by a representative value
    of the block (the median of its valid pixels) before the sums of ``d`` and ``d**2``.
    Integer fields whose shifted sums fit int64 (judged from the block's value range) are summed
    exactly; then ``n*S2 - S1**2`` is exact too when it fits int64, and the variance carries a
    single rounding.  Never negative; NaN for windows without valid pixels or
    holding an infinity."""
    sel = field if valid is None else field[valid]
    if field.dtype.kind in "biu":
        # |d| <= span, the range of this block's valid values (at most the dtype bounds' span)
        span = int(sel.max()) - int(sel.min()) if sel.size else 0
        shift: float = int(round(float(np.median(sel)))) if sel.size else 0  # an int here, a float below
        if area * span * span < 2**63:
            d = field.astype(np.int64) - shift
            if valid is not None:
                d[~valid] = 0
            s1 = footprint_sum(d, win, np.int64)
            s2 = footprint_sum(d * d, win, np.int64)
            with np.errstate(invalid="ignore", divide="ignore"):
                if area * area * span * span < 2**63:
                    num = n.astype(np.int64) * s2 - s1 * s1
                    var = num.astype(np.float64) / (n.astype(np.float64) ** 2)
                else:
                    m = s1 / n
                    var = s2 / n - m * m
            return np.where(n > 0, np.maximum(var, 0.0), np.nan)
        x = field.astype(np.float64) - float(shift)
        bad = None
    else:
        x = field.astype(np.float64)
        fin = np.isfinite(x) if valid is None else (np.isfinite(x) | ~valid)
        bad = None
        if not fin.all():
            bad = footprint_sum((~fin).view(np.uint8), win, np.int32) > 0
            x = np.where(fin, x, 0.0)
        good = sel[np.isfinite(sel)] if sel.dtype.kind == "f" else sel
        shift = float(np.median(good)) if good.size else 0.0
        x -= shift
    if valid is not None:
        x[~valid] = 0.0
    s1 = footprint_sum(x, win, np.float64)
    s2 = footprint_sum(x * x, win, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = s1 / n
        var = s2 / n - m * m
    var = np.where(n > 0, np.maximum(var, 0.0), np.nan)
    # a window of equal values has variance exactly 0 (rounding would leave ~eps * shift**2)
    fw = Window(win.lo, win.hi, win.start, win.stop, runs=win.runs)
    lo = footprint_extreme(x if valid is None else np.where(valid, x, np.inf), fw, "min")
    hi = footprint_extreme(x if valid is None else np.where(valid, x, -np.inf), fw, "max")
    var[lo == hi] = 0.0
    if bad is not None:
        var[bad] = np.nan
    return var
