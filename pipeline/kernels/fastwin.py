"""Fast rectangular window statistics for every reducer, boundary and dtype: compiled loops (numba,
``nogil``), no I/O, no dask, no padded copies.

The boundary is applied in *index space*: an index map per axis (:func:`index_map`) says, for
every position of the extended data (``start - lo … stop - 1 + hi``), which pixel of the data it
reads, or that it holds ``cval`` (``constant``) or nothing (``shrink``/``valid``).  The kernels
gather each extended row through the column map once, so no padded copy of the block is made.

* :mod:`pipeline.kernels.moments` — count, sum, mean, var, std: running column sums and row sums,
  O(1) per pixel whatever the window, each statistic finished row by row into its output.
  Integer fields are summed exactly in an integer accumulator, floats in float64; var/std use
  the stable shifted form.
* :mod:`pipeline.kernels.extreme` — min, max: van Herk/Gil-Werman down the columns, doubling (or van
  Herk) along the rows, exact in the result's dtype.

:func:`plane_stats` chooses the accumulators and shifts and calls them.  Semantics are those of
:func:`pipeline.kernels.reference.reduce_stats` on the ``np.pad``-extended block (the tests compare both with
the brute-force reference).  numba is optional: without it :data:`AVAILABLE` is False and callers
keep the numpy path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from pipeline.kernels import blocked
from pipeline.kernels import extreme as extreme_k
from pipeline.kernels import moments as moments_k
from pipeline.kernels.fastsum import AVAILABLE
from pipeline.kernels.moments import SUM_FLOAT, SUM_INT
from pipeline.plan import registry

__all__ = ["AVAILABLE", "index_map", "plane_stats", "supports"]

#: index-map codes: the position holds ``cval`` / holds nothing (skipped, like a missing pixel)
CVAL, NONE = -1, -2


def index_map(n: int, lo: int, hi: int, start: int, stop: int, boundary: str) -> np.ndarray:
    """Source index along an axis of length ``n`` of every extended position ``start - lo …
    stop - 1 + hi``, as ``np.pad`` with the boundary's mode (:mod:`pipeline.plan.registry`) would read
    it, or :data:`CVAL` (a boundary filling with ``cval``) / :data:`NONE` (one that does not
    pad) outside the data."""
    bnd = registry.boundary(boundary)
    i = np.arange(start - lo, stop + hi, dtype=np.int64)
    if not bnd.pads or bnd.fills:
        return np.where((i >= 0) & (i < n), i, CVAL if bnd.fills else NONE)
    mode = bnd.np_mode
    if mode == "edge":
        return np.clip(i, 0, n - 1)
    if mode == "wrap":
        return i % n
    if mode == "symmetric":
        j = i % (2 * n)
        return np.where(j < n, j, 2 * n - 1 - j)
    if mode == "reflect":
        if n == 1:
            return np.zeros_like(i)
        j = i % (2 * n - 2)
        return np.where(j < n, j, 2 * n - 2 - j)
    raise AssertionError(f"no index map for np.pad mode {mode!r}")  # a new PadMode must add one


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


def extreme(x, missing, rmap, cmap, off, w, cval, op: str, dtype: np.dtype) -> np.ndarray:
    """Minimum (``op="min"``) or maximum over ``w = (w0, w1)`` windows of one 2-D plane ``x``
    extended through the index maps, in ``dtype`` (which holds every value and ``cval``; float16
    is computed in float32, then rounded: rounding is monotonic, so the extreme is the same);
    windows without a valid pixel hold the dtype's identity (the caller fills them)."""
    from pipeline.kernels.reference import identity
    from pipeline.plan.dtypes import computable

    x, miss, use = _plane_args(x, missing)
    dtype = computable(dtype)
    nr, nc = rmap.size - w[0] + 1, cmap.size - w[1] + 1
    out = np.empty((nr, nc), dtype)
    if not (nr and nc):
        return out
    ident = dtype.type(identity(dtype, op))
    cv = dtype.type(cval) if np.isfinite(cval) or dtype.kind == "f" else ident
    extreme_k.run_extreme(x, miss, use, rmap, cmap, *_interior(cmap, x.shape[1], off), cv, ident, w, out, op == "max")
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




def _value_range(x: np.ndarray, missing: np.ndarray | None, cval, bounds: tuple[int, int]) -> tuple[int, int]:
    """The range of the values the windows read (valid pixels, and ``cval`` where the boundary
    fills with it): the variance's sums are exact whenever this range allows, as on the numpy
    path (the dtype's bounds would send int32 data of a small range to float64 sums)."""
    vals = x if missing is None else x[~missing]
    if not vals.size:
        return bounds
    lo, hi = int(vals.min()), int(vals.max())
    if cval is not None and float(cval).is_integer():
        lo, hi = min(lo, int(cval)), max(hi, int(cval))
    return lo, hi


def _axis_counts(m: np.ndarray, k: int) -> np.ndarray:
    """Positions holding something (not :data:`NONE`) in each run of ``k`` along an index map."""
    c = np.concatenate([[0], np.cumsum(m != NONE, dtype=np.int32)])
    return (c[k:] - c[:-k]).astype(np.int32)


def _accumulator(stats: Sequence[str], is_int: bool, wide: bool, dtypes: Mapping[str, np.dtype], x, missing, bounds, area: int):
    """``(acc, shift, smode, exact_var)``: the accumulator dtype, the shift of the values, how a
    window's sum is formed (:data:`SUM_INT` exact, :data:`SUM_FLOAT`) and whether the variance is
    formed exactly in int64.

    var/std: the data shifted by a representative value (the median of a subsample of the valid
    values), so that the sums of squares stay small; integer fields whose shifted values
    ``|v - shift| <= span`` keep every window's sum of squares within int64 are summed exactly.
    Otherwise: integer sums in the sum's own dtype (a sum alone) or int64, else float64."""
    if "var" in stats or "std" in stats:
        sel = _sample(x, missing)
        if is_int:
            shift = int(round(float(np.median(sel)))) if sel.size else 0
            span = max(int(bounds[1]) - shift, shift - int(bounds[0]), 0)
            if area * span * span < 2**62:
                return np.dtype(np.int64), shift, (SUM_INT if wide else SUM_FLOAT), area * area * span * span < 2**63
            return np.dtype(np.float64), float(shift), SUM_FLOAT, False
        return np.dtype(np.float64), float(np.median(sel)) if sel.size else 0.0, SUM_FLOAT, False
    if is_int and "sum" in stats and dtypes["sum"].kind == "i" and "mean" not in stats:
        return dtypes["sum"], 0, SUM_INT, False  # the sum's own dtype: every window sum fits it
    if is_int and (wide or "mean" not in stats):
        return np.dtype(np.int64), 0, SUM_INT, False
    return np.dtype(np.float64), 0.0, SUM_FLOAT, False


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
    as :func:`pipeline.kernels.reference.reduce_stats` (with ``"_empty"``) but taking the block before
    any padding: ``boundary``/``cval`` are applied in index space.  ``dtypes``: the dtype each
    statistic is returned in (integer sums are exact in it, min/max hold every value)."""
    h, wd = x.shape
    if not registry.boundary(boundary).fills:
        cval = 0  # never read
    rmap = index_map(h, lo[0], hi[0], start[0], stop[0], boundary)
    cmap = index_map(wd, lo[1], hi[1], start[1], stop[1], boundary)
    w = (lo[0] + hi[0] + 1, lo[1] + hi[1] + 1)
    off = start[1] - lo[1]  # extended column l is data column l + off
    out: dict[str, np.ndarray | None] = {"_empty": None}
    moments = [st for st in stats if registry.REDUCERS[st].family == "moments"]
    if bounds is not None and x.dtype.kind in "biu" and ("var" in stats or "std" in stats):
        bounds = _value_range(x, missing, cval if registry.boundary(boundary).fills else None, bounds)
    if missing is not None or (moments and moments != ["count"]):  # holes: counted, for "_empty"
        out.update(_moments(x, missing, rmap, cmap, off, w, cval, stats, area=area, bounds=bounds, dtypes=dtypes))
    elif moments:  # a count without holes: from the index maps
        out["count"] = np.multiply.outer(_axis_counts(rmap, w[0]), _axis_counts(cmap, w[1]))
    for op in stats:
        if registry.REDUCERS[op].family == "extremes":
            out[op] = extreme(x, missing, rmap, cmap, off, w, cval, op, dtypes[op])
    return out


def _moments(x, missing, rmap, cmap, off, w, cval, stats, *, area, bounds, dtypes) -> dict[str, np.ndarray | None]:
    """count/sum/mean/var/std through :mod:`pipeline.kernels.moments`, and ``"_empty"``."""
    is_int = x.dtype.kind in "biu" and bounds is not None and float(cval).is_integer()
    # integer window sums fit int64 (else the mean is summed in float64, as the numpy path does)
    wide = is_int and area * max(abs(int(bounds[0])), abs(int(bounds[1]))) < 2**63
    acc, shift, smode, exact = _accumulator(stats, is_int, wide, dtypes, x, missing, bounds, area)
    holes = missing is not None
    xs, miss, use = _plane_args(x, missing)
    want = {"n": holes and "count" in stats, "empty": holes, "sum": "sum" in stats, "mean": "mean" in stats, "var": "var" in stats, "std": "std" in stats}
    counts = (_axis_counts(rmap, w[0]), _axis_counts(cmap, w[1]))
    coef = moments_k.rounding_coef(area, w[1], rmap.size, cmap.size)
    res, flagged = window_moments(
        xs, miss, use, rmap, cmap, _interior(cmap, x.shape[1], off), w, cval, shift, acc,
        counts=counts, want=want, smode=smode, exact_var=exact, coef=coef,
    )
    if flagged and not exact:
        # a window of equal values has variance exactly 0 (rounding would leave ~eps*shift**2);
        # only windows whose computed variance is within rounding of 0 can be such windows
        dt = np.dtype(np.float64)
        flat = extreme(x, missing, rmap, cmap, off, w, cval, "min", dt)
        flat -= extreme(x, missing, rmap, cmap, off, w, cval, "max", dt)
        equal = flat == 0
        del flat
        for st in ("var", "std"):
            if st in res:
                res[st][equal] = 0.0
    out: dict[str, np.ndarray | None] = {"_empty": None}
    if holes:
        empty = res["empty"]
        out["_empty"] = empty if empty.any() else None
    if "count" in stats:
        out["count"] = res["n"] if holes else np.multiply.outer(*counts)
    for st in ("sum", "mean", "var", "std"):
        if st in stats:
            out[st] = res[st]
    return out


_DUMMY_F = np.empty((1, 1), np.float64)
_DUMMY_I = np.empty((1, 1), np.int32)
_DUMMY_B = np.empty((1, 1), np.bool_)


def window_moments(
    x: np.ndarray,
    miss: np.ndarray,
    use_miss: bool,
    rmap: np.ndarray,
    cmap: np.ndarray,
    interior: tuple[int, int],
    w: tuple[int, int],
    cval,
    shift,
    acc: np.dtype,
    *,
    counts: tuple[np.ndarray, np.ndarray],
    want: dict[str, bool],
    smode: int,
    exact_var: bool,
    coef: float,
) -> tuple[dict[str, np.ndarray], int]:
    """Run the kernel; returns the wanted outputs among ``"n"`` (counts), ``"empty"`` (windows
    without a valid pixel), ``"sum"``, ``"mean"``, ``"var"``, ``"std"`` (``want``) and the number of windows whose float variance is within
    rounding of 0."""
    acc = np.dtype(acc)
    w0, w1 = w
    nr, nc = rmap.size - w0 + 1, cmap.size - w1 + 1
    ew = cmap.size
    want2 = want["var"] or want["std"]
    holes = use_miss
    shape = (nr, nc)
    n_out = np.empty(shape, np.int32) if want["n"] else _DUMMY_I
    empty_out = np.empty(shape, np.bool_) if want["empty"] else _DUMMY_B
    sum_dtype = acc if smode == SUM_INT else np.dtype(np.float64)  # exact in the accumulator, else float64
    sum_out = np.empty(shape if want["sum"] else (1, 1), sum_dtype)
    mean_out = np.empty(shape, np.float64) if want["mean"] else _DUMMY_F
    var_out = np.empty(shape, np.float64) if want["var"] else _DUMMY_F
    std_out = np.empty(shape, np.float64) if want["std"] else _DUMMY_F
    acc_stats = np.zeros(2, np.float64)
    outs: tuple[np.ndarray, ...] = (n_out, empty_out, sum_out, mean_out, var_out, std_out)
    flags = (want["n"], want["empty"], want["sum"], want["mean"], want["var"], want["std"], exact_var)
    want1 = want2 or want["sum"] or want["mean"]
    if nr and nc and acc.kind == "f" and want1:  # float sums: each window's from its own values
        blocked.moments(x, miss, use_miss, rmap, cmap, interior, w, float(cval), float(shift), want2, holes,
                             counts, outs, flags, coef, acc_stats)
    elif nr and nc:
        moments_k.moments_jit(
            x, miss, use_miss, rmap, cmap, interior[0], interior[1], acc.type(cval), acc.type(shift), float(shift),
            w0, w1, want1, want2, holes, counts[0], counts[1],
            np.zeros((2, ew), acc), np.zeros(ew, np.int32), np.zeros((6, ew), acc), np.zeros((3, ew), np.int32),
            np.empty(nc, np.int32), smode, outs, flags, coef, acc_stats,
        )
    named: dict[str, np.ndarray] = dict(zip(("n", "empty", "sum", "mean", "var", "std"), outs))
    return {k: v for k, v in named.items() if want[k]}, int(acc_stats[0])
