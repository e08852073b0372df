"""Compiled float window moments (count, sum, mean, var, std) in which every window's sums are
formed from the values inside that window only (numba, ``nogil``).

A float running sum (add the value entering, subtract the value leaving) keeps the rounding of
every value it ever held: after ``1e16`` has left, ``1 + 1`` reads 0.  Here sums are the van
Herk/Gil-Werman scheme applied to ``+``: the extended data are cut into blocks of ``W`` along an
axis, and a window starting at ``i`` (inside block ``b``) is the suffix sum of ``b`` from ``i``
plus the prefix sum of block ``b + 1`` up to ``i + W - 1``: both partial sums hold values of that
window only, so its result carries at most ``W`` roundings of its own magnitude, and a value
that overflows or is huge touches only the windows that hold it.  Three additions per value and
axis (prefix, suffix, their sum) instead of two, still O(1) per pixel whatever ``W``.

Down the rows, the suffix sums of the previous block of rows are kept (``W0`` rows of one strip
of :data:`STRIP` output columns, so that they stay in cache) while the prefix sums of the current
block are accumulated; along each output row the same scheme runs over the column sums.  Counts
are integers (exact whatever the order).  Each output row is finished by
:func:`pipeline._fastmoments._finish`, as for integer fields.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._fastmoments import NONE, SUM_FLOAT, _finish, _run
from ._jit import AVAILABLE, compile_into

#: output columns per strip: the kept suffix sums (``W0`` rows of a strip) stay in cache
STRIP = 512


def _edge(x, miss, use_miss, rk, c, cval, shift):  # pragma: no cover - compiled
    """``(value - shift, 1)`` of extended position (row ``rk``, column ``c``: data indices or
    codes), or ``(0, 0)`` where it holds nothing or a missing pixel."""
    z = shift - shift
    if c >= 0 and rk >= 0:
        if use_miss and miss[rk, c]:
            return z, 0
        return x[rk, c] - shift, 1
    if c == NONE or rk == NONE:
        return z, 0
    return cval - shift, 1


def _add_row(x, miss, use_miss, rk, cmap, p0, p1, li0, li1, cval, shift, want2, holes, base,
             s1, s2, sc, o1, o2, oc):  # pragma: no cover - compiled
    """Positions ``p0 … p1-1`` of extended row ``rk`` (at index ``l - p0``): ``o = s + row`` where
    ``base``, else ``o = row``, for ``d = value - shift``, ``d**2`` (``want2``) and the count
    (``holes``).  ``[li0, li1)``: the positions read straight from the data (``cmap`` contiguous)."""
    z = shift - shift
    i0, i1 = max(p0, li0), min(p1, li1)
    if rk < 0 or i1 <= i0:
        i0 = i1 = p1
    for l in range(p0, i0):
        v, m = _edge(x, miss, use_miss, rk, cmap[l], cval, shift)
        q = l - p0
        o1[q] = (s1[q] if base else z) + v
        if want2:
            o2[q] = (s2[q] if base else z) + v * v
        if holes:
            oc[q] = (sc[q] if base else 0) + m
    if i1 > i0:
        xr = x[rk]
        a = cmap[i0] - i0
        if use_miss:
            mr = miss[rk]
            for l in range(i0, i1):
                g = not mr[a + l]
                v = xr[a + l] - shift if g else z
                q = l - p0
                o1[q] = (s1[q] if base else z) + v
                if want2:
                    o2[q] = (s2[q] if base else z) + v * v
                oc[q] = (sc[q] if base else 0) + (1 if g else 0)
        else:
            for l in range(i0, i1):
                v = xr[a + l] - shift
                q = l - p0
                o1[q] = (s1[q] if base else z) + v
                if want2:
                    o2[q] = (s2[q] if base else z) + v * v
            if holes:
                for l in range(i0, i1):
                    oc[l - p0] = (sc[l - p0] if base else 0) + 1
    for l in range(i1, p1):
        v, m = _edge(x, miss, use_miss, rk, cmap[l], cval, shift)
        q = l - p0
        o1[q] = (s1[q] if base else z) + v
        if want2:
            o2[q] = (s2[q] if base else z) + v * v
        if holes:
            oc[q] = (sc[q] if base else 0) + m


def _run_blocked(col, w1, o, g, h):  # pragma: no cover - compiled
    """``o[c] = col[c] + … + col[c + w1 - 1]`` from that window's values only: prefix sums ``g``
    and suffix sums ``h`` within blocks of ``w1``; ``o[c] = h[c] + g[c + w1 - 1]``, or ``h[c]``
    alone where ``c`` starts a block (every window starts in a whole block)."""
    nc = o.size
    if w1 == 1:
        for c in range(nc):
            o[c] = col[c]
        return
    ew = nc + w1 - 1
    nf = ew // w1  # whole blocks
    for b in range(nf):
        g[b * w1] = col[b * w1]
    for j in range(1, w1):
        for b in range(nf):
            i = b * w1 + j
            g[i] = g[i - 1] + col[i]
    t = nf * w1
    if t < ew:
        g[t] = col[t]
        for i in range(t + 1, ew):
            g[i] = g[i - 1] + col[i]
    ns = (nc + w1 - 1) // w1  # blocks in which windows start
    for b in range(ns):
        h[b * w1 + w1 - 1] = col[b * w1 + w1 - 1]
    for j in range(w1 - 2, -1, -1):
        for b in range(ns):
            i = b * w1 + j
            h[i] = h[i + 1] + col[i]
    for c in range(nc):
        o[c] = h[c] + g[c + w1 - 1]
    for c in range(0, nc, w1):
        o[c] = h[c]


def _strip(x, miss, use_miss, rmap, cmap, li0, li1, cval, shift, fshift, w0, w1, want2, holes, rcount, ccount,
           c0, c1, suf, sufc, cols, colc, rows, rowc, outs, flags, coef, acc_stats):  # pragma: no cover - compiled
    """Output columns ``c0 … c1-1`` of every output row (see the module docstring)."""
    ner = rmap.size
    p0, p1 = c0, c1 + w1 - 1
    ne, nc = p1 - p0, c1 - c0
    pre1, pre2, col1, col2 = cols[0][:ne], cols[1][:ne], cols[2][:ne], cols[3][:ne]
    g, h, r1, r2 = rows[0], rows[1], rows[2][:nc], rows[3][:nc]
    prec, colcv, dn, rn = rowc[0][:ne], colc[:ne], rowc[1], rowc[2][:nc]
    for b0 in range(0, ner, w0):
        if b0 > 0 and w0 > 1:  # suffix sums of the previous block of rows
            for i in range(w0 - 1, -1, -1):
                j = min(i + 1, w0 - 1)
                _add_row(x, miss, use_miss, rmap[b0 - w0 + i], cmap, p0, p1, li0, li1, cval, shift, want2, holes,
                         i < w0 - 1, suf[0, j], suf[1, j], sufc[j], suf[0, i], suf[1, i], sufc[i])
        for k in range(b0, min(b0 + w0, ner)):
            _add_row(x, miss, use_miss, rmap[k], cmap, p0, p1, li0, li1, cval, shift, want2, holes,
                     k > b0, pre1, pre2, prec, pre1, pre2, prec)
            r = k - w0 + 1
            if r < 0:
                continue
            i = k - b0 + 1  # the window's rows: suffix i of the previous block, this block's prefix
            s1, s2, sc = pre1, pre2, prec
            if i < w0:
                for q in range(ne):
                    col1[q] = suf[0, i, q] + pre1[q]
                if want2:
                    for q in range(ne):
                        col2[q] = suf[1, i, q] + pre2[q]
                if holes:
                    for q in range(ne):
                        colcv[q] = sufc[i, q] + prec[q]
                s1, s2, sc = col1, col2, colcv
            _run_blocked(s1, w1, r1, g, h)
            if want2:
                _run_blocked(s2, w1, r2, g, h)
            if holes:
                _run(sc, w1, rn, dn)
            else:
                rk = rcount[r]
                for c in range(nc):
                    rn[c] = rk * ccount[c0 + c]
            _finish(r, rn, r1, r2, shift, fshift, SUM_FLOAT, outs, flags, coef, acc_stats)


def _moments_blocked(x, miss, use_miss, rmap, cmap, li0, li1, cval, shift, fshift, w0, w1, want2, holes, rcount, ccount,
                     suf, sufc, cols, colc, rows, rowc, outs, flags, coef, acc_stats):  # pragma: no cover - compiled
    """Every strip of :data:`STRIP` output columns through :func:`_strip`."""
    n_out, empty_out, sum_out, mean_out, var_out, std_out = outs
    nct = cmap.size - w1 + 1
    for c0 in range(0, nct, STRIP):
        c1 = min(c0 + STRIP, nct)
        # (the (1, 1) placeholders of statistics not wanted are sliced too, never written)
        so = (n_out[:, c0:c1], empty_out[:, c0:c1], sum_out[:, c0:c1], mean_out[:, c0:c1], var_out[:, c0:c1], std_out[:, c0:c1])
        _strip(x, miss, use_miss, rmap, cmap, li0, li1, cval, shift, fshift, w0, w1, want2, holes, rcount, ccount,
               c0, c1, suf, sufc, cols, colc, rows, rowc, so, flags, coef, acc_stats)


compile_into(globals(), ["_edge", "_add_row", "_run_blocked", "_strip", "_moments_blocked"])
_moments_blocked_jit: Any = _moments_blocked if AVAILABLE else None


def moments(x, miss, use_miss, rmap, cmap, interior, w, cval: float, shift: float, want2: bool, holes: bool,
            counts, outs, flags, coef: float, acc_stats: np.ndarray) -> None:
    """Run the kernel over a float64 accumulator (arguments as
    :func:`pipeline._fastmoments.window_moments` forms them), finishing into ``outs``."""
    w0, w1 = w
    nct = cmap.size - w1 + 1
    ne = min(STRIP, nct) + w1 - 1
    suf = np.empty((2, w0, ne), np.float64)
    sufc = np.empty((w0, ne) if holes else (w0, 1), np.int32)
    _moments_blocked_jit(
        x, miss, use_miss, rmap, cmap, interior[0], interior[1], cval, shift, shift, w0, w1, want2, holes,
        counts[0], counts[1], suf, sufc, np.empty((4, ne), np.float64), np.empty(ne, np.int32),
        np.empty((4, ne), np.float64), np.empty((3, ne), np.int32), outs, flags, coef, acc_stats,
    )
