"""The window statistics of one block's field, given where its pixels are missing: the compiled
kernels (:mod:`pipeline.kernels.fastwin`) where they apply, else the numpy reference (a padded copy,
then :func:`pipeline.kernels.reference.reduce_stats`); shared by :mod:`pipeline.kernels.ops` and
:mod:`pipeline.kernels.winexpr`."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from pipeline.kernels import fastwin, overflow, reference
from pipeline.plan.planner import Plan
from pipeline.plan.registry import FLOAT64, fit


class Finite:
    """Whether float arrays are all finite (one float64 sum each: one pass, no temporary) and
    where they are NaN, remembered per array so that a block's field and inputs (often the same
    array) are checked once."""

    def __init__(self) -> None:
        self._seen: dict[int, tuple[np.ndarray, bool]] = {}
        self._nan: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}

    def __call__(self, x: np.ndarray) -> bool:
        hit = self._seen.get(id(x))
        if hit is not None and hit[0] is x:
            return hit[1]
        ok = bool(np.isfinite(np.sum(x, dtype=np.float64)))
        self._seen[id(x)] = (x, ok)
        return ok

    def nan_mask(self, x: np.ndarray) -> np.ndarray | None:
        """Where ``x`` (float) is NaN, or None when nowhere."""
        hit = self._nan.get(id(x))
        if hit is not None and hit[0] is x:
            return hit[1]
        m = None
        if not self(x):
            m = np.isnan(x)
            m = m if m.any() else None
        self._nan[id(x)] = (x, m)
        return m


def missing_pixels(plan: Plan, arrays: Mapping[str, np.ndarray], field: np.ndarray, finite: Finite) -> np.ndarray | None:
    """Missing pixels: NaN in a float input, an input's nodata value, NaN in a float field; None
    when no pixel is missing (integer inputs without nodata: no check at all)."""
    if not plan.missing_possible:
        return None
    missing = None
    seen: list[np.ndarray] = []  # the NaN masks already in (the field is often an input itself)
    for name in plan.expr.names:
        x = np.asarray(arrays[name])
        nd = plan.nodata.get(name)
        m = finite.nan_mask(x) if x.dtype.kind == "f" else None
        if m is not None:
            seen.append(m)
        if nd is not None:
            eq = x == nd
            if eq.any():
                m = eq if m is None else (m | eq)
        if m is not None:  # (a NaN mask is only kept when it marks something)
            missing = np.broadcast_to(m, field.shape) if missing is None else (missing | m)
    if field.dtype.kind == "f":
        m = finite.nan_mask(field)
        if m is not None and not any(m is s for s in seen):
            missing = m if missing is None else (missing | m)
    return missing


def _work_dtype(plan: Plan, dtype: np.dtype) -> np.dtype:
    """A dtype for the field that also holds ``cval`` (boundary 'constant'): float64 where the
    window's values are not integers (:attr:`Plan.window_bounds` is None)."""
    if not plan.bnd.fills:
        return dtype
    if dtype.kind == "f":
        return FLOAT64
    bounds = plan.window_bounds
    return (fit(*bounds, dtype) if bounds is not None else None) or FLOAT64


def field_stats(plan: Plan, field: np.ndarray, missing: np.ndarray | None, ranges, finite: Finite) -> dict[str, np.ndarray]:
    """Every statistic of ``plan`` over ``field`` (missing where ``missing``) for the centres
    ``ranges`` (:meth:`Plan.centres`), each in its output dtype."""
    axes = plan.window_axes
    k = len(axes)
    nd = field.ndim
    dest = tuple(range(nd - k, nd))
    f = np.moveaxis(field, axes, dest)
    m = None if missing is None else np.moveaxis(missing, axes, dest)
    lo, hi = list(plan.lo), list(plan.hi)
    start = [ranges[ax][0] for ax in axes]
    stop = [ranges[ax][1] for ax in axes]
    if k == 1:  # a 1-D window: a length-1 row axis
        f, m = f[..., None, :], (None if m is None else m[..., None, :])
        lo, hi, start, stop = [0] + lo, [0] + hi, [0] + start, [1] + stop

    def stats(g: np.ndarray) -> dict[str, np.ndarray | None]:
        raw = None
        if k <= 2:  # the compiled kernels are 2-D; more window axes take the separable numpy path
            raw = _compiled_stats(plan, g, m, lo, hi, start, stop, g.dtype.kind != "f" or finite(g))
        return _padded_stats(plan, g, m, lo, hi, start, stop) if raw is None else raw

    return _finish(plan, overflow.rescue(stats(f), f, stats), axes, k)


def _compiled_stats(plan: Plan, f: np.ndarray, m: np.ndarray | None, lo, hi, start, stop, all_finite: bool) -> dict[str, np.ndarray | None] | None:
    """Every statistic through the compiled kernels (:mod:`pipeline.kernels.fastwin`), the boundary applied
    in index space (no padded copy), plane by plane over leading axes; None where they do not
    apply (footprints, weights, uint64/object fields, float fields holding an infinity: the numpy
    path counts infinities apart)."""
    if plan.footprint is not None or plan.weights is not None or not fastwin.supports(f.dtype):
        return None
    if not all_finite:
        if np.isinf(f).any():
            return None
    bounds = plan.window_bounds if f.dtype.kind in "biu" else None
    area = plan.area
    lead = f.shape[:-2]
    out: dict[str, np.ndarray | None] = {}  # and "_empty": a bool array or None
    empty = None
    for idx in np.ndindex(*lead):
        raw = fastwin.plane_stats(
            f[idx], None if m is None else m[idx], lo, hi, start, stop, plan.boundary, plan.cval, plan.stats,
            area=area, bounds=bounds, dtypes=plan.out_dtypes,
        )
        e = raw.pop("_empty")
        if not lead:
            out, empty = raw, e
            break
        for st, r in raw.items():
            assert r is not None  # a statistic ("_empty" is popped)
            o = out.get(st)
            if o is None:  # not in out yet
                o = out[st] = np.empty(lead + r.shape, r.dtype)
            o[idx] = r
        if e is not None:
            if empty is None:
                empty = np.zeros(lead + e.shape, bool)
            empty[idx] = e
    out["_empty"] = empty
    return out


def _padded_stats(plan: Plan, f: np.ndarray, m: np.ndarray | None, lo, hi, start, stop) -> dict[str, np.ndarray | None]:
    """The numpy reference path: the block padded (``np.pad``) so that every window is whole, then
    :func:`pipeline.kernels.reference.reduce_stats`."""
    # extend the data so that every window is whole: padding at the image edges
    k = len(lo)  # the window axes are the last k
    pads = [(0, 0)] * (f.ndim - k)
    for i in range(k):
        n = f.shape[f.ndim - k + i]
        pads.append((max(0, lo[i] - start[i]), max(0, stop[i] - 1 + hi[i] - (n - 1))))
    if any(p != (0, 0) for p in pads):
        if not plan.bnd.pads:
            f = np.pad(f, pads)
            m = np.pad(np.zeros(f.shape, bool)[tuple(slice(a, f.shape[j] - b) for j, (a, b) in enumerate(pads))] if m is None else m, pads, constant_values=True)
        elif plan.bnd.fills:
            f = np.pad(f.astype(_work_dtype(plan, f.dtype), copy=False), pads, constant_values=plan.cval)
            m = None if m is None else np.pad(m, pads, constant_values=False)
        else:
            mode = plan.bnd.np_mode
            assert mode is not None  # the padding boundaries have an np.pad mode
            f = np.pad(f, pads, mode=mode)
            m = None if m is None else np.pad(m, pads, mode=mode)
        start = [s + pads[f.ndim - k + i][0] for i, s in enumerate(start)]
        stop = [e + pads[f.ndim - k + i][0] for i, e in enumerate(stop)]
    elif plan.bnd.fills:
        f = f.astype(_work_dtype(plan, f.dtype), copy=False)

    runs = taps = None
    lo2 = tuple(lo)
    if plan.footprint is not None:
        runs = reference.footprint_runs(np.array(plan.footprint, bool), lo2)
    if plan.weights is not None:
        taps = reference.weight_taps(np.array(plan.weights, dtype=object), lo2)
    win = reference.Window(lo2, tuple(hi), tuple(start), tuple(stop), runs=runs, taps=taps)
    area = plan.area
    bounds = plan.window_bounds if f.dtype.kind in "biu" else None
    return reference.reduce_stats(f, m, win, plan.stats, area=area, bounds=bounds, sum_dtype=plan.acc_dtype)


def _finish(plan: Plan, raw: dict[str, np.ndarray | None], axes, k: int) -> dict[str, np.ndarray]:
    """Raw statistics to outputs: each in its dtype, fill values in empty windows, window axes
    back in place."""
    empty = raw.pop("_empty")
    out = {}
    for st in plan.stats:
        r = raw[st]
        assert r is not None  # a statistic ("_empty" is popped)
        fill = plan.fill_values.get(st)
        dt = plan.out_dtypes[st]
        if r.dtype != dt:
            r = r.astype(dt)
        if empty is not None and fill is not None and st != "count":
            r[empty] = fill
        if k == 1:
            r = r[..., 0, :]
        out[st] = np.moveaxis(r, tuple(range(r.ndim - k, r.ndim)), axes)
    return out


