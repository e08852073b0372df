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

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import _fastextreme
from .fastsum import AVAILABLE, numba

#: index-map codes: the position holds ``cval`` / holds nothing (skipped, like a missing pixel)
CVAL, NONE = -1, -2


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


def _load(x, miss, use_miss, rs, cmap, li0, li1, cval, shift, v, m):  # pragma: no cover - compiled
    """Extended row ``rs`` (a source row or a code) into ``v`` (value - shift, 0 where nothing)
    and ``m`` (1 where a valid pixel).  Positions ``li0 … li1-1`` read the data's columns
    ``l + cmap[li0] - li0`` (the interior: a contiguous loop)."""
    z = shift - shift
    ew = cmap.size
    if rs == NONE:
        for l in range(ew):
            v[l] = z
            m[l] = 0
        return
    if rs >= 0 and li1 > li0:
        off = cmap[li0] - li0
        xr = x[rs]
        if use_miss:
            mr = miss[rs]
            for l in range(li0, li1):
                bad = mr[l + off]
                v[l] = z if bad else xr[l + off] - shift
                m[l] = 0 if bad else 1
        else:
            for l in range(li0, li1):
                v[l] = xr[l + off] - shift
                m[l] = 1
        _load_part(x, miss, use_miss, rs, cmap, 0, li0, cval, shift, v, m)
        _load_part(x, miss, use_miss, rs, cmap, li1, ew, cval, shift, v, m)
    else:
        _load_part(x, miss, use_miss, rs, cmap, 0, ew, cval, shift, v, m)


def _load_part(x, miss, use_miss, rs, cmap, l0, l1, cval, shift, v, m):  # pragma: no cover - compiled
    """Positions ``l0 … l1-1`` of :func:`_load`, through the column map."""
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


def _moments(x, miss, use_miss, rmap, cmap, li0, li1, cval, shift, w0, w1, want_n, want2, n_out, s1_out,
             s2_out, colc, col1, col2, va, ma, vs, ms):  # pragma: no cover - compiled
    """Counts and running sums over ``w0 × w1`` windows of the extended data (see module doc).
    ``n_out``/``s1_out``/``s2_out``: (rows, cols) results; ``n_out`` only when ``want_n``,
    ``s2_out`` only when ``want2``.  Rows of the data without missing pixels update the interior
    columns straight from ``x``; the rest goes through :func:`_load`."""
    nr, nc = s1_out.shape
    ew = cmap.size
    z = shift - shift
    for l in range(ew):
        colc[l] = 0
        col1[l] = z
        col2[l] = z
    for k in range(nr + w0 - 1):
        ra = rmap[k]
        rs = rmap[k - w0] if k >= w0 else NONE
        if not use_miss and ra >= 0 and (rs >= 0 or k < w0) and li1 > li0:
            off = cmap[li0] - li0
            xa = x[ra]
            if k >= w0:
                xs = x[rs]
                if want2:
                    for l in range(li0, li1):
                        da = xa[l + off] - shift
                        ds = xs[l + off] - shift
                        col1[l] += da - ds
                        col2[l] += da * da - ds * ds
                else:
                    for l in range(li0, li1):
                        col1[l] += (z + xa[l + off]) - xs[l + off]
            else:
                for l in range(li0, li1):
                    da = xa[l + off] - shift
                    col1[l] += da
                    colc[l] += 1
                    if want2:
                        col2[l] += da * da
            _edge(x, miss, use_miss, ra, rs, cmap, 0, li0, cval, shift, want2, colc, col1, col2, va, ma, vs, ms)
            _edge(x, miss, use_miss, ra, rs, cmap, li1, ew, cval, shift, want2, colc, col1, col2, va, ma, vs, ms)
        else:
            _load(x, miss, use_miss, ra, cmap, li0, li1, cval, shift, va, ma)
            _load(x, miss, use_miss, rs, cmap, li0, li1, cval, shift, vs, ms)
            for l in range(ew):
                colc[l] += ma[l] - ms[l]
                col1[l] += va[l] - vs[l]
                if want2:
                    col2[l] += va[l] * va[l] - vs[l] * vs[l]
        if k < w0 - 1:
            continue
        r = k - w0 + 1
        _run(col1, w1, s1_out[r], va)
        if want_n:
            _run(colc, w1, n_out[r], ma)
        if want2:
            _run(col2, w1, s2_out[r], vs)


def _edge(x, miss, use_miss, ra, rs, cmap, l0, l1, cval, shift, want2, colc, col1, col2, va, ma, vs, ms):  # pragma: no cover - compiled
    """Column sums at positions ``l0 … l1-1``: add extended row ``ra``, remove row ``rs``."""
    if l1 <= l0:
        return
    _load_part(x, miss, use_miss, ra, cmap, l0, l1, cval, shift, va, ma)
    _load_part(x, miss, use_miss, rs, cmap, l0, l1, cval, shift, vs, ms)
    for l in range(l0, l1):
        colc[l] += ma[l] - ms[l]
        col1[l] += va[l] - vs[l]
        if want2:
            col2[l] += va[l] * va[l] - vs[l] * vs[l]


def _run(col, w1, o, d):  # pragma: no cover - compiled
    """``o[c] = col[c] + … + col[c + w1 - 1]``: the differences first (vectorised), then one
    running sum (a short dependency chain); ``d`` is scratch."""
    nc = o.size
    s = col[0] - col[0]
    for l in range(w1):
        s += col[l]
    o[0] = s
    for c in range(1, nc):
        d[c] = col[c + w1 - 1] - col[c - 1]
    for c in range(1, nc):
        s += d[c]
        o[c] = s


def _variance(n, s1, s2, exact, var):  # pragma: no cover - compiled
    """Population variance from the count and the sums of ``d`` and ``d**2``, never negative:
    ``exact`` (integer sums whose ``n*S2 - S1**2`` fits int64): that difference, then a single
    rounding; else ``S2/n - (S1/n)**2`` in float64.  NaN where ``n`` is 0."""
    for i in range(var.shape[0]):
        for j in range(var.shape[1]):
            k = n[i, j]
            if k == 0:
                var[i, j] = np.nan
                continue
            if exact:
                v = float(np.int64(k) * s2[i, j] - s1[i, j] * s1[i, j]) / (float(k) * float(k))
            else:
                kf = float(k)
                m = s1[i, j] / kf
                v = s2[i, j] / kf - m * m
            var[i, j] = v if v > 0.0 else 0.0


# numba dispatchers (None without numba: the callers check AVAILABLE first)
_moments_jit: Any
_variance_jit: Any
if AVAILABLE:
    assert numba is not None
    _jit = numba.njit(nogil=True, cache=True, boundscheck=False)
    _load_part = _jit(_load_part)
    _run = _jit(_run)
    _edge = _jit(_edge)
    _load = _jit(_load)
    _moments_jit = _jit(_moments)
    _variance_jit = _jit(_variance)
else:  # pragma: no cover
    _moments_jit = _variance_jit = None

_NO_MISS = np.zeros((1, 1), np.bool_)


def _interior(cmap: np.ndarray, n: int, off: int) -> tuple[int, int]:
    """The positions ``[li0, li1)`` of a column map (position ``l`` is data column ``l + off``,
    :func:`index_map`'s ``start - lo``) that lie inside the data, where ``cmap[l] = l + off``."""
    li0, li1 = max(0, -off), min(cmap.size, n - off)
    return (li0, li1) if li1 > li0 else (0, 0)


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


def moments(x, missing, rmap, cmap, off, w, cval, shift, acc: np.dtype, want2: bool, want_n: bool = True):
    """Counts (int32; None unless ``want_n``), sums of ``v - shift`` and, with ``want2``, of its
    squares (``acc`` dtype: an integer dtype in which every window sum fits, or float64) over
    ``w = (w0, w1)`` windows of one 2-D plane ``x`` extended through the index maps, whose
    column ``l`` is ``x``'s column ``l + off`` inside the data; ``missing`` (or None) marks
    skipped pixels."""
    x, miss, use = _plane_args(x, missing)
    acc = np.dtype(acc)
    nr, nc = rmap.size - w[0] + 1, cmap.size - w[1] + 1
    n = np.empty((nr, nc) if want_n else (1, 1), np.int32)
    s1 = np.empty((nr, nc), acc)
    s2 = np.empty((nr, nc) if want2 else (1, 1), acc)
    ew = cmap.size
    bufs = [np.empty(ew, np.int32), np.empty(ew, acc), np.empty(ew, acc)]
    rows = [np.empty(ew, acc), np.empty(ew, np.int32), np.empty(ew, acc), np.empty(ew, np.int32)]
    if nr and nc:
        _moments_jit(x, miss, use, rmap, cmap, *_interior(cmap, x.shape[1], off), acc.type(cval), acc.type(shift), w[0], w[1], want_n, want2, n, s1, s2, *bufs, *rows)
    return (n if want_n else None), s1, (s2 if want2 else None)


def extreme(x, missing, rmap, cmap, off, w, cval, op: str, dtype: np.dtype) -> np.ndarray:
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
    ident = dtype.type(_identity(dtype, op))
    cv = dtype.type(cval) if np.isfinite(cval) or dtype.kind == "f" else ident
    _fastextreme.run_extreme(x, miss, use, rmap, cmap, *_interior(cmap, x.shape[1], off), cv, ident, w, out, op == "max")
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
    dtypes: Mapping[str, np.dtype],
) -> dict[str, np.ndarray | None]:
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
    off = start[1] - lo[1]  # extended column l is data column l + off
    is_int = x.dtype.kind in "biu" and bounds is not None and float(cval).is_integer()
    holes = missing is not None  # else the count is separable: counted from the index maps
    out: dict[str, np.ndarray | None] = {}  # and "_empty": a bool array or None
    n = None
    need_var = "var" in stats or "std" in stats
    need_sum = "sum" in stats or "mean" in stats
    # integer window sums fit int64 (else the mean is summed in float64, as the numpy path does)
    wide = is_int and bounds is not None and area * max(abs(int(bounds[0])), abs(int(bounds[1]))) < 2**63
    if need_var:
        n, s1, s2, shift, span = _shifted_moments(x, missing, rmap, cmap, off, w, cval, bounds, is_int, area)
        if n is None:
            n = _map_counts(rmap, cmap, w)
        exact = s1.dtype.kind == "i"
        if need_sum:
            if s1.dtype.kind == "i" and wide:
                sums = s1 + n.astype(np.int64) * np.int64(shift)
            elif s1.dtype.kind == "i":  # window sums beyond int64: float64, as the numpy path
                sums = s1.astype(np.float64) + n * float(shift)
            else:
                sums = s1 + n * float(shift)
    elif need_sum or holes:
        acc: np.dtype = np.dtype(np.float64)
        if is_int and "sum" in stats and dtypes["sum"].kind == "i" and "mean" not in stats:
            acc = dtypes["sum"]  # the sum's own dtype: every window sum fits it
        elif is_int and (wide or "mean" not in stats):
            acc = np.dtype(np.int64)
        n, sums, _ = moments(x, missing, rmap, cmap, off, w, cval, 0, acc, False, want_n=holes)
    if n is None and ("count" in stats or "mean" in stats):
        n = _map_counts(rmap, cmap, w)
    empty = None
    if n is not None and holes:
        empty = n == 0
        if not empty.any():
            empty = None
    out["_empty"] = empty
    if "count" in stats:
        out["count"] = n
    if "sum" in stats:
        out["sum"] = sums
    if "mean" in stats:
        assert n is not None  # counted above whenever the mean is wanted
        with np.errstate(invalid="ignore", divide="ignore"):
            out["mean"] = np.divide(sums, n, dtype=np.float64)
    if need_var:
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            s2max = 0.0 if exact else float(np.max(s2, initial=0.0))
            var = np.empty(s1.shape, np.float64)
            _variance_jit(n, s1, s2, bool(exact and area * area * span * span < 2**63), var)
            del s1, s2
            if not exact and np.any(var <= _rounding_bound(s2max, area, w[1], rmap.size, cmap.size)):
                # a window of equal values has variance exactly 0 (rounding would leave ~eps*shift**2);
                # only windows whose computed variance is within rounding of 0 can be such windows
                dt = np.dtype(np.float64)
                lo_ = extreme(x, missing, rmap, cmap, off, w, cval, "min", dt)
                lo_ -= extreme(x, missing, rmap, cmap, off, w, cval, "max", dt)
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
            out[op] = extreme(x, missing, rmap, cmap, off, w, cval, op, dtypes[op])
    return out


def _map_counts(rmap: np.ndarray, cmap: np.ndarray, w) -> np.ndarray:
    """Pixels per window when nothing is missing: the positions that hold something (not
    :data:`NONE`) along each axis, multiplied."""

    def along(m: np.ndarray, k: int) -> np.ndarray:
        c = np.concatenate([[0], np.cumsum(m != NONE, dtype=np.int32)])
        return (c[k:] - c[:-k]).astype(np.int32)

    return np.multiply.outer(along(rmap, w[0]), along(cmap, w[1]))


def _rounding_bound(s2max: float, area: int, w1: int, rows: int, cols: int) -> float:
    """An upper bound of the rounding error of a variance from the running float64 sums: every
    partial sum of squares is at most ``s2max`` (the largest window's), every partial sum of
    ``|d|`` at most ``sqrt(area * s2max)``; each of the at most ``steps`` additions along a
    result's path (``rows`` column-sum updates of each of the ``w1`` columns it adds, ``cols``
    row-sum updates) errs by at most ``eps`` times its magnitude.  Generous by a factor 8."""
    steps = (w1 + 1) * (rows + 1) + cols + area
    return 8.0 * np.finfo(np.float64).eps * steps * s2max * (1.0 + 2.0 * math.sqrt(area))


def _sample(x: np.ndarray, missing: np.ndarray | None, target: int = 1 << 16) -> np.ndarray:
    """The valid, finite values of a regular subsample of about ``target`` pixels."""
    step = max(1, int((x.size / target) ** 0.5))
    sel = x[::step, ::step]
    if missing is not None:
        sel = sel[~missing[::step, ::step]]
    if sel.dtype.kind == "f":
        sel = sel[np.isfinite(sel)]
    return sel.ravel()


def _shifted_moments(x, missing, rmap, cmap, off, w, cval, bounds, is_int, area):
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
            n, s1, s2 = moments(x, missing, rmap, cmap, off, w, cval, shift, np.int64, True, missing is not None)
            return n, s1, s2, shift, span
        shift = float(shift)
    else:
        shift = float(np.median(sel)) if sel.size else 0.0
    n, s1, s2 = moments(x, missing, rmap, cmap, off, w, float(cval), shift, np.float64, True, missing is not None)
    return n, s1, s2, shift, 0
