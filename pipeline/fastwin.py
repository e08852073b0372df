"""Fast rectangular window statistics for every reducer, boundary and dtype: compiled loops (numba,
``nogil``), no I/O, no dask, no padded copies.

The boundary is applied in *index space*: an index map per axis (:func:`index_map`) says, for
every position of the extended data (``start - lo … stop - 1 + hi``), which pixel of the data it
reads, or that it holds ``cval`` (``constant``) or nothing (``shrink``/``valid``).  The kernels
gather each extended row through the column map once, so no padded copy of the block is made.

* :func:`moments` — the count of valid pixels and the running sums of ``v - shift`` and
  ``(v - shift)**2``: a column-sum vector slides down the rows (add the row entering, subtract the
  row leaving), then a running sum along each row; O(1) per pixel whatever the window.  Integer
  fields are summed in int64 (exact whenever the true sum fits; transient wrap-around comes
  back), floats in float64.
* :func:`extreme` — van Herk/Gil-Werman running minimum/maximum, rows then columns, three
  comparisons per pixel per axis whatever the window, in the result's dtype (exact for every
  integer dtype), over strips of rows so that the temporaries stay a fraction of the block.

Semantics are those of :func:`pipeline.kernels.reduce_stats` on the ``np.pad``-extended block
(the tests compare both with the brute-force reference).  numba is optional: without it
:data:`AVAILABLE` is False and callers keep the numpy path.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .fastsum import AVAILABLE, numba

#: index-map codes: the position holds ``cval`` / holds nothing (skipped, like a missing pixel)
CVAL, NONE = -1, -2

#: output rows per strip of the running extremes
STRIP = 64


def index_map(n: int, lo: int, hi: int, start: int, stop: int, boundary: str) -> np.ndarray:
    """Source index along an axis of length ``n`` of every extended position ``start - lo …
    stop - 1 + hi`` (as ``np.pad`` would read it: reflect = 'symmetric', mirror = 'reflect',
    nearest = 'edge', wrap), or :data:`CVAL`/:data:`NONE` outside the data."""
    i = np.arange(start - lo, stop + hi, dtype=np.int64)
    inside = (i >= 0) & (i < n)
    if boundary in ("shrink", "valid", "constant"):
        return np.where(inside, i, CVAL if boundary == "constant" else NONE)
    if boundary == "nearest":
        return np.clip(i, 0, n - 1)
    if boundary == "wrap":
        return i % n
    if boundary == "reflect":
        j = i % (2 * n)
        return np.where(j < n, j, 2 * n - 1 - j)
    if boundary == "mirror":
        if n == 1:
            return np.zeros_like(i)
        j = i % (2 * n - 2)
        return np.where(j < n, j, 2 * n - 2 - j)
    raise ValueError(f"unknown boundary {boundary!r}")


def _load(x, miss, use_miss, rs, cmap, cval, shift, v, m):  # pragma: no cover - compiled
    """Extended row ``rs`` (a source row or a code) into ``v`` (value - shift, 0 where nothing)
    and ``m`` (1 where a valid pixel)."""
    z = shift - shift
    if rs == NONE:
        for l in range(cmap.size):
            v[l] = z
            m[l] = 0
        return
    for l in range(cmap.size):
        c = cmap[l]
        if c >= 0 and rs >= 0:
            if use_miss and miss[rs, c]:
                v[l] = z
                m[l] = 0
            else:
                v[l] = x[rs, c]
                v[l] -= shift
                m[l] = 1
        elif c == NONE:
            v[l] = z
            m[l] = 0
        else:
            v[l] = cval - shift
            m[l] = 1


def _moments(x, miss, use_miss, rmap, cmap, cval, shift, w0, w1, want2, n_out, s1_out, s2_out,
             colc, col1, col2, va, ma, vs, ms):  # pragma: no cover - compiled
    """Counts and running sums over ``w0 × w1`` windows of the extended data (see module doc).
    ``n_out``/``s1_out``/``s2_out``: (rows, cols) results; ``s2_out`` only when ``want2``."""
    nr, nc = s1_out.shape
    ew = cmap.size
    z = shift - shift
    for l in range(ew):
        colc[l] = 0
        col1[l] = z
        col2[l] = z
    for k in range(nr + w0 - 1):
        _load(x, miss, use_miss, rmap[k], cmap, cval, shift, va, ma)
        if k >= w0:
            _load(x, miss, use_miss, rmap[k - w0], cmap, cval, shift, vs, ms)
            if want2:
                for l in range(ew):
                    colc[l] += ma[l] - ms[l]
                    col1[l] += va[l] - vs[l]
                    col2[l] += va[l] * va[l] - vs[l] * vs[l]
            else:
                for l in range(ew):
                    colc[l] += ma[l] - ms[l]
                    col1[l] += va[l] - vs[l]
        else:
            if want2:
                for l in range(ew):
                    colc[l] += ma[l]
                    col1[l] += va[l]
                    col2[l] += va[l] * va[l]
            else:
                for l in range(ew):
                    colc[l] += ma[l]
                    col1[l] += va[l]
        if k < w0 - 1:
            continue
        r = k - w0 + 1
        sc = 0
        s1 = z
        s2 = z
        for l in range(w1):
            sc += colc[l]
            s1 += col1[l]
            s2 += col2[l]
        n_out[r, 0] = sc
        s1_out[r, 0] = s1
        for c in range(1, nc):
            sc += colc[c + w1 - 1] - colc[c - 1]
            s1 += col1[c + w1 - 1] - col1[c - 1]
            n_out[r, c] = sc
            s1_out[r, c] = s1
        if want2:
            s2_out[r, 0] = s2
            for c in range(1, nc):
                s2 += col2[c + w1 - 1] - col2[c - 1]
                s2_out[r, c] = s2


def _extreme(x, miss, use_miss, rmap, cmap, cval, ident, w0, w1, is_max, out, buf, g, t, tg, th):  # pragma: no cover - compiled
    """Running minimum (maximum when ``is_max``) over ``w0 × w1`` windows of the extended data:
    van Herk/Gil-Werman along each row into ``t``, then down the columns of ``t``, a strip of
    output rows at a time.  Pixels that are missing or outside (:data:`NONE`) hold ``ident``."""
    nr, nc = out.shape
    ew = cmap.size
    strip = t.shape[0] - w0 + 1
    for r0 in range(0, nr, strip):
        r1 = min(r0 + strip, nr)
        ne = r1 - r0 + w0 - 1
        for k in range(ne):
            rs = rmap[r0 + k]
            for l in range(ew):
                c = cmap[l]
                if rs == NONE or c == NONE:
                    buf[l] = ident
                elif c >= 0 and rs >= 0:
                    if use_miss and miss[rs, c]:
                        buf[l] = ident
                    else:
                        buf[l] = x[rs, c]
                else:
                    buf[l] = cval
            # forward (g) and backward (buf, in place) extremes within blocks of w1
            for b in range(0, ew, w1):
                e = min(b + w1, ew)
                a = buf[b]
                g[b] = a
                for l in range(b + 1, e):
                    v = buf[l]
                    if (v > a) if is_max else (v < a):
                        a = v
                    g[l] = a
                for l in range(e - 2, b - 1, -1):
                    v = buf[l + 1]
                    if (v > buf[l]) if is_max else (v < buf[l]):
                        buf[l] = v
            tk = t[k]
            for c in range(nc):
                a = buf[c]
                v = g[c + w1 - 1]
                tk[c] = v if ((v > a) if is_max else (v < a)) else a
        # down the columns of t: blocks of w0 rows
        for b in range(0, ne, w0):
            e = min(b + w0, ne)
            for c in range(nc):
                tg[b, c] = t[b, c]
                th[e - 1, c] = t[e - 1, c]
            for k in range(b + 1, e):
                for c in range(nc):
                    a = tg[k - 1, c]
                    v = t[k, c]
                    tg[k, c] = v if ((v > a) if is_max else (v < a)) else a
            for k in range(e - 2, b - 1, -1):
                for c in range(nc):
                    a = th[k + 1, c]
                    v = t[k, c]
                    th[k, c] = a if ((a > v) if is_max else (a < v)) else v
        for r in range(r1 - r0):
            for c in range(nc):
                a = th[r, c]
                v = tg[r + w0 - 1, c]
                out[r0 + r, c] = v if ((v > a) if is_max else (v < a)) else a


if AVAILABLE:
    _jit = numba.njit(nogil=True, cache=True, boundscheck=False)
    _load = _jit(_load)
    _moments_jit = _jit(_moments)
    _extreme_jit = _jit(_extreme)
else:  # pragma: no cover
    _moments_jit = _extreme_jit = None

_NO_MISS = np.zeros((1, 1), np.bool_)


def supports(dtype: np.dtype) -> bool:
    """Whether the compiled kernels take a field of this dtype (not uint64, object, complex)."""
    dtype = np.dtype(dtype)
    return AVAILABLE and (dtype.kind in "biuf") and dtype != np.uint64 and dtype.itemsize <= 8


def _plane_args(x: np.ndarray, missing: np.ndarray | None):
    if x.dtype == np.bool_:
        x = x.view(np.uint8)
    if not (x.flags.c_contiguous or x.flags.f_contiguous) or x.dtype.byteorder not in "=|":
        x = np.ascontiguousarray(x, dtype=x.dtype.newbyteorder("="))
    if missing is None:
        return x, _NO_MISS, False
    return x, np.ascontiguousarray(missing, dtype=np.bool_), True


def moments(x, missing, rmap, cmap, w, cval, shift, acc: np.dtype, want2: bool):
    """Counts (int32), sums of ``v - shift`` and, with ``want2``, of its squares (``acc`` dtype:
    int64 or float64) over ``w = (w0, w1)`` windows of one 2-D plane ``x`` extended through the
    index maps; ``missing`` (or None) marks skipped pixels."""
    x, miss, use = _plane_args(x, missing)
    acc = np.dtype(acc)
    nr, nc = rmap.size - w[0] + 1, cmap.size - w[1] + 1
    n = np.empty((nr, nc), np.int32)
    s1 = np.empty((nr, nc), acc)
    s2 = np.empty((nr, nc) if want2 else (1, 1), acc)
    ew = cmap.size
    bufs = [np.empty(ew, np.int32), np.empty(ew, acc), np.empty(ew, acc)]
    rows = [np.empty(ew, acc), np.empty(ew, np.int32), np.empty(ew, acc), np.empty(ew, np.int32)]
    if nr and nc:
        _moments_jit(x, miss, use, rmap, cmap, acc.type(cval), acc.type(shift), w[0], w[1], want2, n, s1, s2, *bufs, *rows)
    return n, s1, (s2 if want2 else None)


def extreme(x, missing, rmap, cmap, w, cval, op: str, dtype: np.dtype) -> np.ndarray:
    """Minimum (``op="min"``) or maximum over ``w = (w0, w1)`` windows of one 2-D plane ``x``
    extended through the index maps, in ``dtype`` (which holds every value and ``cval``);
    windows without a valid pixel hold the dtype's identity (the caller fills them)."""
    from .kernels import _identity

    x, miss, use = _plane_args(x, missing)
    dtype = np.dtype(dtype)
    nr, nc = rmap.size - w[0] + 1, cmap.size - w[1] + 1
    out = np.empty((nr, nc), dtype)
    if not (nr and nc):
        return out
    ew = cmap.size
    strip = min(nr, max(STRIP, w[0]))
    ne = strip + w[0] - 1
    t, tg, th = (np.empty((ne, nc), dtype) for _ in range(3))
    ident = dtype.type(_identity(dtype, op))
    cv = dtype.type(cval) if np.isfinite(cval) or dtype.kind == "f" else ident
    _extreme_jit(x, miss, use, rmap, cmap, cv, ident, w[0], w[1], op == "max", out,
                 np.empty(ew, dtype), np.empty(ew, dtype), t, tg, th)
    return out


def plane_stats(
    x: np.ndarray,
    missing: np.ndarray | None,
    lo: Sequence[int],
    hi: Sequence[int],
    start: Sequence[int],
    stop: Sequence[int],
    boundary: str,
    cval,
    stats: Sequence[str],
    *,
    area: int,
    bounds: tuple[int, int] | None,
    dtypes: dict[str, np.dtype],
) -> dict[str, np.ndarray]:
    """Every statistic of ``stats`` over the rectangular window of one 2-D plane, same contract
    as :func:`pipeline.kernels.reduce_stats` (with ``"_empty"``) but taking the block before
    any padding: ``boundary``/``cval`` are applied in index space.  ``dtypes``: the dtype each
    statistic is returned in (integer sums are exact in it, min/max hold every value)."""
    h, wd = x.shape
    if boundary != "constant":
        cval = 0  # never read
    rmap = index_map(h, lo[0], hi[0], start[0], stop[0], boundary)
    cmap = index_map(wd, lo[1], hi[1], start[1], stop[1], boundary)
    w = (lo[0] + hi[0] + 1, lo[1] + hi[1] + 1)
    is_int = x.dtype.kind in "biu" and bounds is not None and float(cval).is_integer()
    holes = missing is not None or boundary in ("shrink", "valid")
    out: dict[str, np.ndarray] = {}
    n = None
    need_var = "var" in stats or "std" in stats
    need_sum = "sum" in stats or "mean" in stats
    if need_var:
        n, s1, s2, shift, span = _shifted_moments(x, missing, rmap, cmap, w, cval, bounds, is_int, area)
        exact = s1.dtype.kind == "i"
        if need_sum:
            if s1.dtype.kind == "i":
                sums = s1 + n.astype(np.int64) * np.int64(shift)
            else:
                sums = s1 + n * float(shift)
    elif need_sum or holes:
        n, sums, _ = moments(x, missing, rmap, cmap, w, cval, 0, np.int64 if is_int else np.float64, False)
    empty = None
    if n is not None and holes:
        empty = n == 0
        if not empty.any():
            empty = None
    out["_empty"] = empty
    if "count" in stats:
        out["count"] = n if n is not None else np.full((rmap.size - w[0] + 1, cmap.size - w[1] + 1), area, np.int32)
    if "sum" in stats:
        out["sum"] = sums
    if "mean" in stats:
        with np.errstate(invalid="ignore", divide="ignore"):
            out["mean"] = np.divide(sums, n, dtype=np.float64)
    if need_var:
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            if s1.dtype.kind == "i" and area * area * span * span < 2**63:
                s2 *= n  # n * S2 - S1**2 is exact: one rounding below
                s1 *= s1
                s2 -= s1
                del s1
                var = s2.astype(np.float64)
                del s2
                var /= np.square(n, dtype=np.float64)
            else:
                nf = n.astype(np.float64)
                s1, s2 = s1.astype(np.float64, copy=False), s2.astype(np.float64, copy=False)
                s1 /= nf
                s2 /= nf
                del nf
                s1 *= s1
                s2 -= s1
                del s1
                var = s2 if s2.dtype == np.float64 else s2.astype(np.float64)
                del s2
            np.maximum(var, 0.0, out=var)
            if not exact:
                # a window of equal values has variance exactly 0 (rounding would leave ~eps*shift**2)
                dt = np.dtype(np.float64)
                lo_ = extreme(x, missing, rmap, cmap, w, cval, "min", dt)
                lo_ -= extreme(x, missing, rmap, cmap, w, cval, "max", dt)
                var[lo_ == 0] = 0.0
                del lo_
            if empty is not None:
                var[empty] = np.nan
        if "var" in stats:
            out["var"] = var
        if "std" in stats:
            out["std"] = np.sqrt(var) if "var" in stats else np.sqrt(var, out=var)
    for op in ("min", "max"):
        if op in stats:
            out[op] = extreme(x, missing, rmap, cmap, w, cval, op, dtypes[op])
    return out


def _sample(x: np.ndarray, missing: np.ndarray | None, target: int = 1 << 16) -> np.ndarray:
    """The valid, finite values of a regular subsample of about ``target`` pixels."""
    step = max(1, int((x.size / target) ** 0.5))
    sel = x[::step, ::step]
    if missing is not None:
        sel = sel[~missing[::step, ::step]]
    if sel.dtype.kind == "f":
        sel = sel[np.isfinite(sel)]
    return sel.ravel()


def _shifted_moments(x, missing, rmap, cmap, w, cval, bounds, is_int, area):
    """Count, shifted sums and sums of squares for the variance: the data shifted by a
    representative value (the median of a subsample of the valid values), so that the sums of
    squares stay small.  Integer fields whose shifted values ``|v - shift| <= span`` (from the
    field's exact bounds, cval included) keep every window's sum of squares within int64 are
    summed exactly.  Returns ``(n, s1, s2, shift, span)``."""
    sel = _sample(x, missing)
    if is_int:
        shift = int(round(float(np.median(sel)))) if sel.size else 0
        span = max(int(bounds[1]) - shift, shift - int(bounds[0]), 0)
        if area * span * span < 2**62:
            n, s1, s2 = moments(x, missing, rmap, cmap, w, cval, shift, np.int64, True)
            return n, s1, s2, shift, span
        shift = float(shift)
    else:
        shift = float(np.median(sel)) if sel.size else 0.0
    n, s1, s2 = moments(x, missing, rmap, cmap, w, float(cval), shift, np.float64, True)
    return n, s1, s2, shift, 0
