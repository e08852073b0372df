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

Down the rows, one strip of :data:`STRIP` output columns at a time (bounding the buffers), each
block of ``W0`` rows is loaded once into one of two row buffers, which becomes its suffix sums
when the block is whole, while the next block's prefix sums are accumulated in the other: every
step is a pass over a contiguous row (vectorised).  Along each output row the same scheme runs
over the column sums, four blocks side by side (windows up to :data:`DIRECT` wide: summed
directly).  Counts are integers (exact whatever the order): a running sum down the rows, the
integer running sum along them.  Each output row is finished by
:func:`pipeline.kernels.moments._finish`, as for integer fields.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.kernels.jit import AVAILABLE, compile_into
from pipeline.kernels.moments import NONE, SUM_FLOAT, _finish, _run

#: output columns per strip (bounds the row buffers, ``3 W0`` rows of a strip; 2048 measured
#: faster than 512 on 2048-wide blocks, W up to 63: fewer calls per output row)
STRIP = 2048

#: window widths up to this are summed directly along the rows (``w1 - 1`` vectorised passes
#: cost less than the block prefix/suffix chains)
DIRECT = 8


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


def _load(x, miss, use_miss, rk, cmap, p0, p1, li0, li1, cval, shift, holes, v, m):  # pragma: no cover - compiled
    """Positions ``p0 … p1-1`` of extended row ``rk`` into ``v`` (``value - shift``, 0 where
    nothing) and, where ``holes``, ``m`` (1 where a valid pixel).  ``[li0, li1)``: the positions
    read straight from the data (``cmap`` contiguous there)."""
    z = shift - shift
    i0, i1 = max(p0, li0), min(p1, li1)
    if rk < 0 or i1 <= i0:
        i0 = i1 = p1
    for l in range(p0, i0):
        e, mk = _edge(x, miss, use_miss, rk, cmap[l], cval, shift)
        v[l - p0] = e
        if holes:
            m[l - p0] = mk
    if i1 > i0:
        a = cmap[i0] - i0
        xr = x[rk][a + i0 : a + i1]
        vo = v[i0 - p0 : i1 - p0]
        if use_miss:
            mr = miss[rk][a + i0 : a + i1]
            mo = m[i0 - p0 : i1 - p0]
            for q in range(i1 - i0):
                g = not mr[q]
                vo[q] = xr[q] - shift if g else z
                mo[q] = 1 if g else 0
        else:
            for q in range(i1 - i0):
                vo[q] = xr[q] - shift
            if holes:
                m[i0 - p0 : i1 - p0] = 1
    for l in range(i1, p1):
        e, mk = _edge(x, miss, use_miss, rk, cmap[l], cval, shift)
        v[l - p0] = e
        if holes:
            m[l - p0] = mk


def _suffixes(v, s2, ne, w0, want2):  # pragma: no cover - compiled
    """Suffix sums of a whole block of ``w0`` loaded rows (first ``ne`` columns): ``s2[i]`` of
    the squares of rows ``i … w0-1`` (``want2``), then ``v[i]`` of the values, in place."""
    if want2:
        a = v[w0 - 1]
        o = s2[w0 - 1]
        for q in range(ne):
            o[q] = a[q] * a[q]
        for i in range(w0 - 2, -1, -1):
            a, n, o = v[i], s2[i + 1], s2[i]
            for q in range(ne):
                o[q] = n[q] + a[q] * a[q]
    for i in range(w0 - 2, -1, -1):
        a, n = v[i], v[i + 1]
        for q in range(ne):
            a[q] = n[q] + a[q]


def _step(a, sa, sb, prev, want2, p1, p2, o1, o2):  # pragma: no cover - compiled
    """Add loaded row ``a`` (and its squares, ``want2``) to the prefix sums ``p1``/``p2`` of the
    current block and, where ``prev``, the window's column sums ``o = suffix + prefix`` (``sa``,
    ``sb``: the previous block's suffix sums).  One pass per case, no branch inside."""
    ne = a.size
    if prev and want2:
        for q in range(ne):
            d = a[q]
            t1 = p1[q] + d
            t2 = p2[q] + d * d
            p1[q] = t1
            p2[q] = t2
            o1[q] = sa[q] + t1
            o2[q] = sb[q] + t2
    elif prev:
        for q in range(ne):
            t1 = p1[q] + a[q]
            p1[q] = t1
            o1[q] = sa[q] + t1
    elif want2:
        for q in range(ne):
            d = a[q]
            p1[q] = p1[q] + d
            p2[q] = p2[q] + d * d
    else:
        for q in range(ne):
            p1[q] = p1[q] + a[q]


def _block_prefixes(col, w1, ew, g):  # pragma: no cover - compiled
    """``g[i]``: the sum of ``col`` from the start of ``i``'s block of ``w1`` to ``i``, for
    ``i < ew``; four blocks side by side (each chain waits on itself, four do not; views, so
    that every index is a non-negative loop counter)."""
    nb = (ew + w1 - 1) // w1
    b = 0
    while (b + 4) * w1 <= ew:
        i = b * w1
        c0, c1, c2, c3 = col[i:], col[i + w1 :], col[i + 2 * w1 :], col[i + 3 * w1 :]
        g0, g1, g2, g3 = g[i:], g[i + w1 :], g[i + 2 * w1 :], g[i + 3 * w1 :]
        s0, s1, s2, s3 = c0[0], c1[0], c2[0], c3[0]
        g0[0], g1[0], g2[0], g3[0] = s0, s1, s2, s3
        for j in range(1, w1):
            s0 += c0[j]
            s1 += c1[j]
            s2 += c2[j]
            s3 += c3[j]
            g0[j], g1[j], g2[j], g3[j] = s0, s1, s2, s3
        b += 4
    for bb in range(b, nb):
        c0, g0 = col[bb * w1 :], g[bb * w1 :]
        s0 = c0[0]
        g0[0] = s0
        for j in range(1, min(w1, ew - bb * w1)):
            s0 += c0[j]
            g0[j] = s0


def _block_windows(col, w1, nc, g, o):  # pragma: no cover - compiled
    """``o[c]`` = the suffix sum of ``col`` from ``c`` to the end of its block plus ``g`` up to
    ``c + w1 - 1`` (the next block's prefix), or that suffix alone where ``c`` starts a block;
    the suffix chains of four blocks side by side."""
    e = w1 - 1
    b = 0
    while (b + 4) * w1 <= nc:
        i = b * w1
        c0, c1, c2, c3 = col[i:], col[i + w1 :], col[i + 2 * w1 :], col[i + 3 * w1 :]
        g0, g1, g2, g3 = g[i + e :], g[i + w1 + e :], g[i + 2 * w1 + e :], g[i + 3 * w1 + e :]
        o0, o1, o2, o3 = o[i:], o[i + w1 :], o[i + 2 * w1 :], o[i + 3 * w1 :]
        t0, t1, t2, t3 = c0[e], c1[e], c2[e], c3[e]
        o0[e], o1[e], o2[e], o3[e] = t0 + g0[e], t1 + g1[e], t2 + g2[e], t3 + g3[e]
        for j in range(e - 1, 0, -1):
            t0 += c0[j]
            t1 += c1[j]
            t2 += c2[j]
            t3 += c3[j]
            o0[j], o1[j], o2[j], o3[j] = t0 + g0[j], t1 + g1[j], t2 + g2[j], t3 + g3[j]
        o0[0], o1[0], o2[0], o3[0] = t0 + c0[0], t1 + c1[0], t2 + c2[0], t3 + c3[0]
        b += 4
    for bb in range(b, (nc + w1 - 1) // w1):
        c0, g0, o0 = col[bb * w1 :], g[bb * w1 + e :], o[bb * w1 :]
        n = nc - bb * w1  # windows starting in this block: j < n
        t0 = c0[e]
        for j in range(e, 0, -1):
            if j < e:
                t0 += c0[j]
            if j < n:
                o0[j] = t0 + g0[j]
        o0[0] = t0 + c0[0]


def _run_blocked(col, w1, o, g):  # pragma: no cover - compiled
    """``o[c] = col[c] + … + col[c + w1 - 1]`` from that window's values only: prefix sums ``g``
    within blocks of ``w1``, then each window as its block's suffix sum plus the next block's
    prefix sum, or the suffix alone where ``c`` starts a block (every window starts in a whole
    block).  Narrow windows (``w1 <=`` :data:`DIRECT`) are summed directly, left to right."""
    nc = o.size
    if w1 <= DIRECT:  # left to right, one vectorised pass per column of the window
        for c in range(nc):
            o[c] = col[c]
        for l in range(1, w1):
            a = col[l:]
            for c in range(nc):
                o[c] = o[c] + a[c]
        return
    _block_prefixes(col, w1, nc + w1 - 1, g)
    _block_windows(col, w1, nc, g, o)


def _strip(x, miss, use_miss, rmap, cmap, li0, li1, cval, shift, fshift, w0, w1, want2, holes, rcount, ccount,
           c0, c1, vb, s2, mb, cols, colc, rows, rowc, outs, flags, coef, acc_stats):  # pragma: no cover - compiled
    """Output columns ``c0 … c1-1`` of every output row (see the module docstring).  The rows of
    a block are loaded into ``vb[0]`` or ``vb[1]`` (alternately, with their counts ``mb``) and
    turned into suffix sums when the block is whole; the window ending at row ``j`` of a block
    is then the suffix ``j + 1`` of the previous block plus the prefix ``p1`` up to ``j``."""
    ner = rmap.size
    p0, p1 = c0, c1 + w1 - 1
    ne, nc = p1 - p0, c1 - c0
    pre1, pre2, col1, col2 = cols[0][:ne], cols[1][:ne], cols[2][:ne], cols[3][:ne]
    g, r1, r2 = rows[0], rows[1][:nc], rows[2][:nc]
    cnt, dn, rn = colc[:ne], rowc[1], rowc[2][:nc]
    for b0 in range(0, ner, w0):
        cur = (b0 // w0) % 2
        v, m, sp, mp = vb[cur], mb[cur], vb[1 - cur], mb[1 - cur]  # C rows: sliced one by one
        for k in range(b0, min(b0 + w0, ner)):
            j = k - b0
            vj = v[j][:ne]
            _load(x, miss, use_miss, rmap[k], cmap, p0, p1, li0, li1, cval, shift, holes, vj, m[j])
            if j == 0:
                pre1[:] = 0.0
                pre2[:] = 0.0
            prev = b0 > 0 and j < w0 - 1
            _step(vj, sp[j + 1 if prev else 0], s2[j + 1 if prev else 0], prev, want2, pre1, pre2, col1, col2)
            if holes:
                a, o = m[j], mp[j]
                if b0 == 0:
                    for q in range(ne):
                        cnt[q] = (cnt[q] if j > 0 else 0) + a[q]
                else:
                    for q in range(ne):
                        cnt[q] = cnt[q] + a[q] - o[q]
            r = k - w0 + 1
            if r < 0:
                continue
            s1, ss2 = (col1, col2) if prev else (pre1, pre2)
            _run_blocked(s1, w1, r1, g)
            if want2:
                _run_blocked(ss2, w1, r2, g)
            if holes:
                _run(cnt, w1, rn, dn)
            else:
                rk = rcount[r]
                for c in range(nc):
                    rn[c] = rk * ccount[c0 + c]
            _finish(r, rn, r1, r2, shift, fshift, SUM_FLOAT, outs, flags, coef, acc_stats)
        if b0 + w0 <= ner and w0 > 1:
            _suffixes(v, s2, ne, w0, want2)


def _moments_blocked(x, miss, use_miss, rmap, cmap, li0, li1, cval, shift, fshift, w0, w1, want2, holes, rcount, ccount,
                     vb, s2, mb, cols, colc, rows, rowc, outs, flags, coef, acc_stats):  # pragma: no cover - compiled
    """Every strip of :data:`STRIP` output columns through :func:`_strip`."""
    n_out, empty_out, sum_out, mean_out, var_out, std_out = outs
    nct = cmap.size - w1 + 1
    for c0 in range(0, nct, STRIP):
        c1 = min(c0 + STRIP, nct)
        # (the (1, 1) placeholders of statistics not wanted are sliced too, never written)
        so = (n_out[:, c0:c1], empty_out[:, c0:c1], sum_out[:, c0:c1], mean_out[:, c0:c1], var_out[:, c0:c1], std_out[:, c0:c1])
        _strip(x, miss, use_miss, rmap, cmap, li0, li1, cval, shift, fshift, w0, w1, want2, holes, rcount, ccount,
               c0, c1, vb, s2, mb, cols, colc, rows, rowc, so, flags, coef, acc_stats)


compile_into(globals(), ["_edge", "_load", "_suffixes", "_step", "_block_prefixes", "_block_windows", "_run_blocked", "_strip", "_moments_blocked"])
_moments_blocked_jit: Any = _moments_blocked if AVAILABLE else None


def moments(x, miss, use_miss, rmap, cmap, interior, w, cval: float, shift: float, want2: bool, holes: bool,
            counts, outs, flags, coef: float, acc_stats: np.ndarray) -> None:
    """Run the kernel over a float64 accumulator (arguments as
    :func:`pipeline.kernels.fastwin.window_moments` forms them), finishing into ``outs``."""
    w0, w1 = w
    nct = cmap.size - w1 + 1
    ne = min(STRIP, nct) + w1 - 1
    vb = np.empty((2, w0, ne), np.float64)
    s2 = np.empty((w0, ne) if want2 else (w0, 1), np.float64)
    mb = np.empty((2, w0, ne) if holes else (2, w0, 1), np.int32)
    _moments_blocked_jit(
        x, miss, use_miss, rmap, cmap, interior[0], interior[1], cval, shift, shift, w0, w1, want2, holes,
        counts[0], counts[1], vb, s2, mb, np.empty((4, ne), np.float64), np.empty(ne, np.int32),
        np.empty((3, ne), np.float64), np.empty((3, ne), np.int32), outs, flags, coef, acc_stats,
    )
