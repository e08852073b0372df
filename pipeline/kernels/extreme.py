"""Compiled running minimum/maximum over rectangular windows (numba, ``nogil``), no I/O.

Columns first, then rows, each extended row read once:

* **Down the columns**: van Herk/Gil-Werman over blocks of ``w0`` extended rows, streamed.  While
  the rows of block ``j + 1`` arrive, their running (prefix) extreme ``G`` is kept; the suffix
  extremes ``H`` of block ``j`` were computed when it ended.  Output row ``r`` (extended rows
  ``r … r + w0 - 1``) is ``pick(H[r], G[r + w0 - 1])``.  Every operation is one element-wise pass
  over a row (vectorised); two buffers of ``w0`` rows, no row computed twice.
* **Along each row**: for small windows, doubling: ``m2 = pick(v[c], v[c+1])``, ``m4 =
  pick(m2[c], m2[c+2])`` … up to the largest power of two ``p <= w1``, then ``o[c] = pick(mp[c],
  mp[c + w1 - p])``: ``log2(w1) + 1`` vectorised passes.  For wide windows van Herk along the row
  (three comparisons per pixel whatever the window).

Pixels missing or outside the data (index-map code ``NONE``) hold ``ident`` (the identity of the
comparison), positions of a ``constant`` boundary hold ``cval``; the comparison is exact in the
result's dtype (every integer dtype, floats without NaN: NaN is missing).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.kernels.jit import AVAILABLE, compile_into

#: index-map codes (see :func:`pipeline.kernels.fastwin.index_map`)
CVAL, NONE = -1, -2

#: Windows at most this wide are reduced along rows by doubling (``log2(w1) + 1`` vectorised
#: passes); wider ones by van Herk along the row (three scalar comparisons per pixel).
DOUBLING_MAX = 128


def _pick(a, b, is_max):  # pragma: no cover - compiled (inlined)
    """The larger (``is_max``) or the smaller of ``a`` and ``b``."""
    if is_max:
        return a if a > b else b
    return a if a < b else b


def _load_row(x, miss, use_miss, rs, cmap, li0, li1, cval, ident, buf):  # pragma: no cover - compiled
    """Extended row ``rs`` (a data row or a code) into ``buf`` through the column map: data,
    ``ident`` where missing or outside (``NONE``), ``cval`` at ``constant`` positions.  Positions
    ``li0 … li1-1`` are the interior (a contiguous copy)."""
    ew = cmap.size
    l0 = l1 = 0
    if rs >= 0 and li1 > li0:
        # slices, not offset indices: the copy then vectorises
        a = cmap[li0]
        xr = x[rs][a : a + li1 - li0]
        br = buf[li0:li1]
        if use_miss:
            mr = miss[rs][a : a + li1 - li0]
            for i in range(li1 - li0):
                br[i] = ident if mr[i] else xr[i]
        else:
            for i in range(li1 - li0):
                br[i] = xr[i]
        l0, l1 = li0, li1
    _load_edge(x, miss, use_miss, rs, cmap, 0, l0 if l1 > l0 else ew, cval, ident, buf)
    if l1 > l0:
        _load_edge(x, miss, use_miss, rs, cmap, l1, ew, cval, ident, buf)


def _load_edge(x, miss, use_miss, rs, cmap, a, b, cval, ident, buf):  # pragma: no cover - compiled
    """Positions ``a … b-1`` of :func:`_load_row`, through the column map."""
    for l in range(a, b):
        c = cmap[l]
        if rs == NONE or c == NONE:
            buf[l] = ident
        elif c >= 0 and rs >= 0:
            buf[l] = ident if (use_miss and miss[rs, c]) else x[rs, c]
        else:
            buf[l] = cval


def _double(src, dst, span, n, is_max):  # pragma: no cover - compiled
    """``dst[c] = pick(src[c], src[c + span])`` for ``c < n``."""
    sh = src[span:]
    for c in range(n):
        dst[c] = _pick(src[c], sh[c], is_max)


def _finish_row(a, o, d, is_max):  # pragma: no cover - compiled
    """``o[c] = pick(a[c], a[c + d])``."""
    ad = a[d:]
    for c in range(o.size):
        o[c] = _pick(a[c], ad[c], is_max)


def _along_row(v, o, w1, tmp, g, is_max):  # pragma: no cover - compiled
    """``o[c] = extreme(v[c : c + w1])`` for every ``c < o.size`` (``v`` holds ``o.size + w1 - 1``
    values); ``tmp`` and ``g`` are scratch rows as long as ``v``."""
    nc = o.size
    ew = nc + w1 - 1
    if w1 == 1:
        for c in range(nc):
            o[c] = v[c]
        return
    if w1 <= DOUBLING_MAX:
        # ping-pong between tmp and g through slices (in-place updates and offset indices do not
        # vectorise): after each pass, a[c] = extreme(v[c : c + span])
        n = ew - 1
        v1 = v[1:]
        for c in range(n):
            tmp[c] = _pick(v[c], v1[c], is_max)
        span = 2
        while 2 * span <= w1:  # tmp -> g -> tmp ...: each pass between two distinct rows
            _double(tmp, g, span, ew - 2 * span + 1, is_max)
            span *= 2
            if 2 * span > w1:
                _finish_row(g, o, w1 - span, is_max)
                return
            _double(g, tmp, span, ew - 2 * span + 1, is_max)
            span *= 2
        _finish_row(tmp, o, w1 - span, is_max)
        return
    # van Herk/Gil-Werman: forward (g) and backward (tmp) extremes within blocks of w1
    for b in range(0, ew, w1):
        e = min(b + w1, ew)
        a = v[b]
        g[b] = a
        for l in range(b + 1, e):
            a = _pick(v[l], a, is_max)
            g[l] = a
        a = v[e - 1]
        tmp[e - 1] = a
        for l in range(e - 2, b - 1, -1):
            a = _pick(v[l], a, is_max)
            tmp[l] = a
    for c in range(nc):
        o[c] = _pick(tmp[c], g[c + w1 - 1], is_max)


def _extreme(x, miss, use_miss, rmap, cmap, li0, li1, cval, ident, w0, w1, out, rows, hprev, grow, vrow, tmp, g, is_max):  # pragma: no cover - compiled
    """Running minimum (or maximum) over ``w0 × w1`` windows of the extended data into ``out``
    (see the module doc).  ``rows``/``hprev``: ``(w0, ew)`` buffers (the current block's rows,
    the previous block's suffix extremes); ``grow``, ``vrow``, ``tmp``, ``g``: rows of ``ew``."""
    nr = out.shape[0]
    ew = cmap.size
    for k in range(nr + w0 - 1):
        j = k % w0
        cur = rows[j]
        _load_row(x, miss, use_miss, rmap[k], cmap, li0, li1, cval, ident, cur)
        if j == 0:
            for l in range(ew):
                grow[l] = cur[l]
        else:
            for l in range(ew):
                grow[l] = _pick(cur[l], grow[l], is_max)
        if k >= w0 - 1:
            if j == w0 - 1:  # output row k - w0 + 1 starts a block: its extreme is G
                _along_row(grow, out[k - w0 + 1], w1, tmp, g, is_max)
            else:
                hp = hprev[j + 1]
                for l in range(ew):
                    vrow[l] = _pick(hp[l], grow[l], is_max)
                _along_row(vrow, out[k - w0 + 1], w1, tmp, g, is_max)
        if j == w0 - 1:  # the block is complete: its suffix extremes, for the next block's rows
            last = rows[w0 - 1]
            hl = hprev[w0 - 1]
            for l in range(ew):
                hl[l] = last[l]
            for i in range(w0 - 2, -1, -1):
                hi, hn, ri = hprev[i], hprev[i + 1], rows[i]
                for l in range(ew):
                    hi[l] = _pick(ri[l], hn[l], is_max)


# the comparison inlined so that its loop-invariant branch is hoisted and the loops vectorise
compile_into(globals(), ["_load_edge", "_load_row", "_double", "_finish_row", "_along_row", "_extreme"], inline=["_pick"])
_extreme_jit: Any = _extreme if AVAILABLE else None


def run_extreme(x, miss, use_miss, rmap, cmap, li0, li1, cval, ident, w, out, is_max: bool) -> None:
    """Fill ``out`` (``(rmap.size - w0 + 1, cmap.size - w1 + 1)``) with the running extremes."""
    w0, w1 = w
    ew = cmap.size
    dt = out.dtype
    rows = np.empty((w0, ew), dt)
    hprev = np.empty((w0, ew), dt)
    grow, vrow, tmp, g = (np.empty(ew, dt) for _ in range(4))
    _extreme_jit(x, miss, use_miss, rmap, cmap, li0, li1, cval, ident, w0, w1, out, rows, hprev, grow, vrow, tmp, g, is_max)
