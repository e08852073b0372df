"""Compiled window moments (count, sum, mean, var, std) over rectangular windows (numba,
``nogil``), no I/O, each statistic finished row by row into its output: no full-size
intermediate sums.

A column-sum vector slides down the extended rows (add the row entering, subtract the row
leaving), then a running sum along each output row; O(1) per pixel whatever the window.  The
boundary is applied in index space (see :func:`pipeline.kernels.fastwin.index_map`): interior rows are
read straight from the block through slices (which vectorise), the few edge positions through
the column map.  The running sum along a row is split into :data:`CHAINS` interleaved segments,
each started from its own direct window sum, so that the additions do not wait on each other.

Integer fields are summed in an integer accumulator (exact whenever the true sums fit;
transient wrap-around comes back), floats in float64.  Values are shifted by ``shift`` before
summing (the variance's stable form: the sums of ``d = v - shift`` and ``d**2``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pipeline.kernels.jit import AVAILABLE, compile_into

#: index-map codes (see :func:`pipeline.kernels.fastwin.index_map`)
CVAL, NONE = -1, -2

#: independent running sums per output row (instruction-level parallelism)
CHAINS = 4

#: how a window's sum is formed from the shifted sums: exactly in the integer
#: accumulator (``s1 + n * shift``), or in float64
SUM_INT, SUM_FLOAT = 1, 2


def _load_part(x, miss, use_miss, rs, cmap, l0, l1, cval, shift, v, m):  # pragma: no cover - compiled
    """Positions ``l0 … l1-1`` of extended row ``rs`` (a data row or a code) through the column
    map into ``v`` (value - shift, 0 where nothing) and ``m`` (1 where a valid pixel)."""
    z = shift - shift
    for l in range(l0, l1):
        c = cmap[l]
        if c >= 0 and rs >= 0:
            if use_miss and miss[rs, c]:
                v[l] = z
                m[l] = 0
            else:
                v[l] = x[rs, c] - shift
                m[l] = 1
        elif c == NONE or rs == NONE:
            v[l] = z
            m[l] = 0
        else:
            v[l] = cval - shift
            m[l] = 1


def _update(x, miss, use_miss, ra, rs, cmap, l0, l1, cval, shift, want2, colc, col1, col2, va, ma, vs, ms):  # pragma: no cover - compiled
    """Column sums at positions ``l0 … l1-1``: add extended row ``ra``, remove row ``rs`` (codes
    allowed), through the column map."""
    if l1 <= l0:
        return
    _load_part(x, miss, use_miss, ra, cmap, l0, l1, cval, shift, va, ma)
    _load_part(x, miss, use_miss, rs, cmap, l0, l1, cval, shift, vs, ms)
    for l in range(l0, l1):
        colc[l] += ma[l] - ms[l]
        col1[l] += va[l] - vs[l]
        if want2:
            col2[l] += va[l] * va[l] - vs[l] * vs[l]


def _update_interior(xa, xs, has_sub, shift, want2, c1, c2, cc):  # pragma: no cover - compiled
    """Column sums of the interior (slices of equal length, no missing pixels): add data row
    ``xa``, remove ``xs`` when ``has_sub`` (else the window is still filling: count too)."""
    n = c1.size
    if has_sub:
        if want2:
            for i in range(n):
                da = xa[i] - shift
                ds = xs[i] - shift
                c1[i] += da - ds
                c2[i] += da * da - ds * ds
        else:
            for i in range(n):
                c1[i] += (xa[i] - shift) - (xs[i] - shift)
    else:
        for i in range(n):
            da = xa[i] - shift
            c1[i] += da
            cc[i] += 1
            if want2:
                c2[i] += da * da


def _update_masked(xa, ma, xs, ms, has_sub, shift, want2, c1, c2, cc):  # pragma: no cover - compiled
    """:func:`_update_interior` with missing pixels (``ma``/``ms`` True where missing): they add
    nothing and are not counted."""
    n = c1.size
    z = shift - shift
    for i in range(n):
        ga = not ma[i]
        da = xa[i] - shift if ga else z
        c1[i] += da
        cc[i] += 1 if ga else 0
        if want2:
            c2[i] += da * da
    if has_sub:
        for i in range(n):
            gs = not ms[i]
            ds = xs[i] - shift if gs else z
            c1[i] -= ds
            cc[i] -= 1 if gs else 0
            if want2:
                c2[i] -= ds * ds


def _count_masked(ma, ms, has_sub, cc):  # pragma: no cover - compiled
    """Column counts of the interior only (no sums wanted: the empty windows of min/max)."""
    for i in range(cc.size):
        cc[i] += 0 if ma[i] else 1
    if has_sub:
        for i in range(cc.size):
            cc[i] -= 0 if ms[i] else 1


def _run(col, w1, o, d):  # pragma: no cover - compiled
    """``o[c] = col[c] + … + col[c + w1 - 1]``: the differences first (vectorised, through
    slices), then :data:`CHAINS` (4) running sums side by side over four segments of the row, each
    started from its own direct sum (rows shorter than ``8 * w1``: one running sum)."""
    nc = o.size
    if nc == 0:
        return
    a = col[w1:]
    b = col[: nc - 1]
    for i in range(nc - 1):
        d[i] = a[i] - b[i]
    s0 = col[0] - col[0]
    for l in range(w1):
        s0 += col[l]
    o[0] = s0
    seg = (nc - 1) // CHAINS if nc >= 8 * w1 else 0
    if seg == 0:
        for i in range(nc - 1):
            s0 += d[i]
            o[i + 1] = s0
        return
    s1 = s2 = s3 = s0 - s0
    for l in range(w1):
        s1 += col[seg + l]
        s2 += col[2 * seg + l]
        s3 += col[3 * seg + l]
    o1, o2, o3 = o[seg:], o[2 * seg :], o[3 * seg :]
    d1, d2, d3 = d[seg:], d[2 * seg :], d[3 * seg :]
    o1[0] = s1
    o2[0] = s2
    o3[0] = s3
    for i in range(seg):  # o[p + i + 1] = o[p + i] + d[p + i] for the four segment starts p
        s0 += d[i]
        o[i + 1] = s0
        s1 += d1[i]
        o1[i + 1] = s1
        s2 += d2[i]
        o2[i + 1] = s2
        s3 += d3[i]
        o3[i + 1] = s3
    for i in range(CHAINS * seg, nc - 1):
        s3 += d[i]
        o[i + 1] = s3


def _row_max(a):  # pragma: no cover - compiled
    """The largest value of a float64 row, four maxima side by side (a single running maximum
    waits on itself at every element)."""
    n = a.size
    m0 = m1 = m2 = m3 = -np.inf
    q = n - n % 4
    for i in range(0, q, 4):
        m0 = max(m0, a[i])
        m1 = max(m1, a[i + 1])
        m2 = max(m2, a[i + 2])
        m3 = max(m3, a[i + 3])
    for i in range(q, n):
        m0 = max(m0, a[i])
    return max(max(m0, m1), max(m2, m3))


def _finish(r, rn, r1, r2, shift, fshift, smode, outs, flags, coef, acc_stats):  # pragma: no cover - compiled
    """Output row ``r`` of every wanted statistic from the row's counts ``rn`` and shifted sums
    ``r1``/``r2``.  ``outs = (n, sum, mean, var, std)`` arrays, ``flags`` says which are wanted
    (and whether the variance is ``exact``: integer sums whose ``n*S2 - S1**2`` fits int64).
    ``acc_stats = [windows whose float variance is within rounding of 0, largest S2 so far]``."""
    n_out, empty_out, sum_out, mean_out, var_out, std_out = outs
    want_n, want_empty, want_sum, want_mean, want_var, want_std, exact = flags
    nc = rn.size
    if want_n:
        o = n_out[r]
        for c in range(nc):
            o[c] = rn[c]
    if want_empty:
        e = empty_out[r]
        for c in range(nc):
            e[c] = rn[c] == 0
    so = sum_out[r] if want_sum else sum_out[0]
    mo = mean_out[r] if want_mean else mean_out[0]
    if (want_sum or want_mean) and smode == SUM_INT:  # exact: s1 + n * shift in the accumulator
        for c in range(nc):
            k = rn[c]
            sv = r1[c] + k * shift
            if want_sum:
                so[c] = sv
            if want_mean:
                mo[c] = float(sv) / float(k) if k != 0 else np.nan
    elif want_sum or want_mean:
        for c in range(nc):
            k = rn[c]
            fv = float(r1[c]) if fshift == 0.0 else float(r1[c]) + float(k) * fshift
            if want_sum:
                so[c] = fv
            if want_mean:
                mo[c] = fv / float(k) if k != 0 else np.nan
    if want_var or want_std:
        _finish_var(r1, r2, rn, var_out[r] if want_var else var_out[0], std_out[r] if want_std else std_out[0],
                    want_var, want_std, exact, coef, acc_stats)


def _finish_var(r1, r2, rn, vo, so, want_var, want_std, exact, coef, acc_stats):  # pragma: no cover - compiled
    """Population variances of a row into ``vo`` (``want_var``) and their square roots into
    ``so`` (``want_std``), never negative, NaN where no pixel: ``exact`` (integer sums whose
    ``n*S2 - S1**2`` fits int64): that difference, then one rounding; else ``S2/n - (S1/n)**2``
    in float64, counting into ``acc_stats[0]`` the windows within the rounding bound (``coef``
    times the largest ``S2`` so far, ``acc_stats[1]``) of 0."""
    nc = rn.size
    if exact:
        for c in range(nc):
            k = rn[c]
            v = float(np.int64(k) * r2[c] - r1[c] * r1[c]) / (float(k) * float(k)) if k != 0 else np.nan
            v = v if not v < 0.0 else 0.0
            if want_var:
                vo[c] = v
            if want_std:
                so[c] = math.sqrt(v)
        return
    acc_stats[1] = max(acc_stats[1], _row_max(r2))
    bound = coef * acc_stats[1]
    flagged = 0
    for c in range(nc):
        k = rn[c]
        inv = 1.0 / float(k) if k != 0 else np.nan
        m = r1[c] * inv
        v = r2[c] * inv - m * m
        v = v if not v < 0.0 else 0.0
        flagged += 1 if v <= bound else 0
        if want_var:
            vo[c] = v
        if want_std:
            so[c] = math.sqrt(v)
    acc_stats[0] += flagged


def _moments(x, miss, use_miss, rmap, cmap, li0, li1, cval, shift, fshift, w0, w1, want1, want2, holes, rcount, ccount,
             cols, colc, rows, rowc, rn, smode, outs, flags, coef, acc_stats):  # pragma: no cover - compiled
    """Counts and shifted sums over ``w0 × w1`` windows of the extended data, finished row by
    row into ``outs`` (see :func:`_finish`).  ``cols``: (2, ew) column sums of ``d``/``d**2``;
    ``colc``: (ew,) column counts; ``rows``: (6, ew) scratch (``va``, ``vs``, row sums of ``d``,
    of ``d**2``, differences); ``want1``: sums wanted (else only counts, for the empty windows);
    ``rowc``: (3, ew) int32 scratch; ``rn`` the row's counts;
    ``rcount``/``ccount``: pixels per window along each axis when nothing is missing."""
    nr = rcount.size
    nc = rn.size
    ew = cmap.size
    col1, col2 = cols[0], cols[1]
    va, vs, r1, r2, d = rows[0], rows[1], rows[2], rows[3], rows[4]
    ma, ms, dn = rowc[0], rowc[1], rowc[2]
    z = shift - shift
    for l in range(ew):
        colc[l] = 0
        col1[l] = z
        col2[l] = z
    ni = li1 - li0
    for k in range(nr + w0 - 1):
        ra = rmap[k]
        rs = rmap[k - w0] if k >= w0 else NONE
        if ra >= 0 and (rs >= 0 or k < w0) and ni > 0:
            a0 = cmap[li0]
            xa = x[ra][a0 : a0 + ni]
            xs = x[rs][a0 : a0 + ni] if k >= w0 else xa
            if use_miss and not want1:
                ma_ = miss[ra][a0 : a0 + ni]
                _count_masked(ma_, miss[rs][a0 : a0 + ni] if k >= w0 else ma_, k >= w0, colc[li0:li1])
            elif use_miss:
                ma_ = miss[ra][a0 : a0 + ni]
                ms_ = miss[rs][a0 : a0 + ni] if k >= w0 else ma_
                _update_masked(xa, ma_, xs, ms_, k >= w0, shift, want2, col1[li0:li1], col2[li0:li1], colc[li0:li1])
            else:
                _update_interior(xa, xs, k >= w0, shift, want2, col1[li0:li1], col2[li0:li1], colc[li0:li1])
            _update(x, miss, use_miss, ra, rs, cmap, 0, li0, cval, shift, want2, colc, col1, col2, va, ma, vs, ms)
            _update(x, miss, use_miss, ra, rs, cmap, li1, ew, cval, shift, want2, colc, col1, col2, va, ma, vs, ms)
        else:
            _update(x, miss, use_miss, ra, rs, cmap, 0, ew, cval, shift, want2, colc, col1, col2, va, ma, vs, ms)
        if k < w0 - 1:
            continue
        r = k - w0 + 1
        if want1:
            _run(col1, w1, r1[:nc], d)
        if want2:
            _run(col2, w1, r2[:nc], d)
        if holes:
            _run(colc, w1, rn, dn)
        else:
            rk = rcount[r]
            for c in range(nc):
                rn[c] = rk * ccount[c]
        _finish(r, rn, r1[:nc], r2[:nc], shift, fshift, smode, outs, flags, coef, acc_stats)


compile_into(globals(), ["_load_part", "_update", "_update_interior", "_update_masked", "_count_masked", "_run", "_row_max", "_finish_var", "_finish", "_moments"])
#: the compiled streaming kernel (None without numba); :func:`pipeline.kernels.fastwin.window_moments` calls it
moments_jit: Any = _moments if AVAILABLE else None


def rounding_coef(area: int, w1: int, rows: int, cols: int) -> float:
    """``bound / S2max``: an upper bound of the rounding error of a variance from the running
    float64 sums, per unit of the largest window sum of squares ``S2max`` met so far.  Every
    partial sum of squares is at most ``S2max``, every partial sum of ``|d|`` at most
    ``sqrt(area * S2max)``; each of the at most ``steps`` additions along a result's path errs by
    at most ``eps`` times its magnitude.  Generous by a factor 8."""
    steps = (w1 + 1) * (rows + 1) + cols + area
    return 8.0 * float(np.finfo(np.float64).eps) * steps * (1.0 + 2.0 * math.sqrt(area))
