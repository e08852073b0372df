"""Fast exact 2-D window sums for integer fields: one fused pass, no I/O, no dask.

The reference path (:mod:`pipeline.kernels.reference`) takes prefix sums along each axis with numpy:
several full-size temporaries and passes over memory.  Here one compiled loop (numba, ``nogil``
so that two threads really run in parallel) slides a column-sum vector down the rows and a
running sum along each row: every input value is read twice, every output written once, and the
cost per pixel does not depend on the window size.  Semantics are exactly those of
:func:`pipeline.kernels.reference.window_sum` over the last two axes (windows clipped to the data given;
centres ``[start, stop)`` per axis), and the tests compare the two.

Sums are accumulated in int64 (the plan guarantees that every true window sum fits the output
dtype; partial sums that transiently exceed it wrap and come back, as in two's complement).

numba is optional at import time: without it :data:`AVAILABLE` is False and callers keep the
numpy path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pipeline.kernels.jit import AVAILABLE, compile_into, numba

__all__ = ["AVAILABLE", "numba", "fused_window_sum", "supports", "window_sum_2d"]


def _init_col(ring, m, col, a, b, j0, j1):  # pragma: no cover - compiled
    """col[j0:j1] = sum of ring rows a..b (row i lives at ring[i % m])."""
    for j in range(j0, j1):
        col[j] = 0
    for i in range(a, b + 1):
        fi = ring[i % m]
        for j in range(j0, j1):
            col[j] += fi[j]


def _rows(ring, m, col, d, out, rs, re, r0, h, lo0, hi0, wd, lo1, hi1, c0, c1, j0, j1):  # pragma: no cover - compiled
    """Output rows ``rs .. re-1`` (local centres; ``out`` row ``r - r0``): slide the column sums
    ``col`` down from row ``rs - 1`` (already summed, unless ``rs == r0``) and run along each
    row.  Sums wrap modulo 2**bits: exact for every window sum that fits the output dtype."""
    k0 = min(max(c0, lo1 + 1), c1)  # centres whose window leaves no column behind ...
    k1 = max(min(c1, wd - hi1), k0)  # ... and takes no column beyond the data: [k0, k1)
    for r in range(rs, re):
        if r > r0:
            add = r + hi0
            sub = r - lo0 - 1
            if add < h and sub >= 0:
                fa = ring[add % m]
                fs = ring[sub % m]
                for j in range(j0, j1):
                    col[j] += fa[j] - fs[j]
            elif add < h:
                fa = ring[add % m]
                for j in range(j0, j1):
                    col[j] += fa[j]
            elif sub >= 0:
                fs = ring[sub % m]
                for j in range(j0, j1):
                    col[j] -= fs[j]
        o = out[r - r0]
        s = col[0] * 0
        for j in range(max(c0 - lo1, 0), min(c0 + hi1, wd - 1) + 1):
            s += col[j]
        o[0] = s
        for c in range(c0 + 1, k0):
            if c + hi1 < wd:
                s += col[c + hi1]
            if c - lo1 - 1 >= 0:
                s -= col[c - lo1 - 1]
            o[c - c0] = s
        # interior: differences first (vectorised), then one running sum (a short dependency chain)
        cs = max(k0, c0 + 1)
        n = k1 - cs
        if n > 0:
            ca = col[cs + hi1 : cs + hi1 + n]
            cb = col[cs - lo1 - 1 : cs - lo1 - 1 + n]
            for c in range(n):
                d[c] = ca[c] - cb[c]
            oo = o[cs - c0 : cs - c0 + n]
            for c in range(n):
                s += d[c]
                oo[c] = s
        for c in range(max(k1, c0 + 1), c1):
            if c + hi1 < wd:
                s += col[c + hi1]
            if c - lo1 - 1 >= 0:
                s -= col[c - lo1 - 1]
            o[c - c0] = s


compile_into(globals(), ["_init_col", "_rows"])
_init_col_jit: Any = _init_col if AVAILABLE else None
_rows_jit: Any = _rows if AVAILABLE else None

#: Output rows per step of the fused loop: the expression is evaluated for the rows entering the
#: window, a few at a time, into a ring buffer of ``STRIP + W + 1`` rows that stays in cache.
STRIP = 32


def supports(dtype: np.dtype, ndim: int, axes) -> bool:
    """Whether the fast path applies: numba present, integer sums, a 2-D window on the last two
    axes."""
    dtype = np.dtype(dtype)
    return AVAILABLE and dtype.kind in "iub" and ndim >= 2 and tuple(axes) == (ndim - 2, ndim - 1)


def fused_window_sum(
    field: Callable[[tuple, int, int], np.ndarray],
    shape: tuple[int, ...],
    field_dtype: np.dtype,
    lo: Sequence[int],
    hi: Sequence[int],
    start: Sequence[int],
    stop: Sequence[int],
    out_dtype: np.dtype,
) -> np.ndarray:
    """Window sums over the last two axes of an integer field given by rows: ``field(lead, i0,
    i1)`` returns rows ``i0 .. i1-1`` (second-to-last axis) of the field at leading index
    ``lead``.  Same contract as :func:`pipeline.kernels.reference.window_sum` with ``axes = (-2, -1)``;
    the whole field is never held, only a ring of ``STRIP + W + 1`` rows."""
    (lo0, lo1), (hi0, hi1), (r0, c0), (r1, c1) = lo, hi, start, stop
    h, wd = shape[-2:]
    if not (0 <= r0 <= r1 <= h and 0 <= c0 <= c1 <= wd):
        raise ValueError(f"centres [{r0}:{r1}, {c0}:{c1}] outside data of shape {(h, wd)}")
    out = np.empty(tuple(shape[:-2]) + (r1 - r0, c1 - c0), dtype=out_dtype)
    if out.size == 0:
        return out
    field_dtype = np.dtype(np.uint8) if np.dtype(field_dtype) == np.bool_ else np.dtype(field_dtype)
    m = STRIP + lo0 + hi0 + 2
    ring = np.empty((m, wd), dtype=field_dtype)
    col = np.empty(wd, dtype=out.dtype)
    d = np.empty(wd, dtype=out.dtype)
    j0 = max(c0 - lo1, 0)
    j1 = min(c1 - 1 + hi1, wd - 1) + 1
    o3 = out.reshape((-1,) + out.shape[-2:])
    for k, lead in enumerate(np.ndindex(*shape[:-2])):
        ready = max(r0 - lo0, 0)  # rows [first, ready) of the field are in the ring

        def fill(upto: int) -> None:
            nonlocal ready
            while ready < upto:
                i1 = min(upto, ready + STRIP, (ready // m + 1) * m)  # no wrap inside one piece
                piece = field(lead, ready, i1)
                ring[ready % m : ready % m + (i1 - ready)] = piece.view(np.uint8) if piece.dtype == np.bool_ else piece
                ready = i1

        fill(min(r0 + hi0, h - 1) + 1)
        _init_col_jit(ring, m, col, max(r0 - lo0, 0), min(r0 + hi0, h - 1), j0, j1)
        for rs in range(r0, r1, STRIP):
            re = min(rs + STRIP, r1)
            fill(min(re - 1 + hi0, h - 1) + 1)
            _rows_jit(ring, m, col, d, o3[k], rs, re, r0, h, lo0, hi0, wd, lo1, hi1, c0, c1, j0, j1)
    return out


def window_sum_2d(x: np.ndarray, lo, hi, start, stop, out_dtype) -> np.ndarray:
    """Window sums of an integer array ``x`` over its last two axes (same contract as
    :func:`fused_window_sum`), in one compiled call per 2-D plane: with the field already in
    memory there is nothing to evaluate between rows, and one long ``nogil`` call lets two
    threads run truly in parallel (per-strip calls left them waiting on each other)."""
    (lo0, lo1), (hi0, hi1), (r0, c0), (r1, c1) = lo, hi, start, stop
    h, wd = x.shape[-2:]
    if not (0 <= r0 <= r1 <= h and 0 <= c0 <= c1 <= wd):
        raise ValueError(f"centres [{r0}:{r1}, {c0}:{c1}] outside data of shape {(h, wd)}")
    out = np.empty(tuple(x.shape[:-2]) + (r1 - r0, c1 - c0), dtype=out_dtype)
    if out.size == 0:
        return out
    if x.dtype == np.bool_:
        x = x.view(np.uint8)
    col = np.empty(wd, dtype=out.dtype)
    d = np.empty(wd, dtype=out.dtype)
    j0 = max(c0 - lo1, 0)
    j1 = min(c1 - 1 + hi1, wd - 1) + 1
    x3 = x.reshape((-1,) + x.shape[-2:])
    o3 = out.reshape((-1,) + out.shape[-2:])
    for k in range(x3.shape[0]):
        plane = x3[k]
        _init_col_jit(plane, h, col, max(r0 - lo0, 0), min(r0 + hi0, h - 1), j0, j1)
        _rows_jit(plane, h, col, d, o3[k], r0, r1, r0, h, lo0, hi0, wd, lo1, hi1, c0, c1, j0, j1)
    return out
