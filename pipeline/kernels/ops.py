"""From a plan to results: the per-block computation and its dask wiring.

``compute_block`` is the whole per-block computation on numpy arrays (pointwise expression, then
the window reduction); ``build`` lays it over dask arrays with ``map_overlap`` so that each block
receives its halo, and returns the lazy result chunked exactly as the plan's output blocks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from pipeline.errors import InputError
from pipeline.expr.nodes import Name
from pipeline.kernels import compiled, fastsum, fastwin, overflow, reference
from pipeline.plan.planner import Plan
from pipeline.plan.registry import FLOAT64, fit

if TYPE_CHECKING:
    import dask.array


class _Finite:
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


def _missing(plan: Plan, arrays: Mapping[str, np.ndarray], field: np.ndarray, finite: _Finite) -> np.ndarray | None:
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


def _numpy_sum(plan: Plan, field: np.ndarray, ranges) -> np.ndarray:
    """The numpy window sum (``kernels.window_sum``) of a plain sum whose field the compiled
    kernels do not take (uint64, object)."""
    if field.dtype != plan.acc_dtype:
        field = field.astype(plan.acc_dtype)
    return reference.window_sum(
        field,
        plan.window_axes,
        plan.lo,
        plan.hi,
        [ranges[ax][0] for ax in plan.window_axes],
        [ranges[ax][1] for ax in plan.window_axes],
    ).astype(plan.out_dtype, copy=False)


def _work_dtype(plan: Plan, dtype: np.dtype) -> np.dtype:
    """A dtype for the field that also holds ``cval`` (boundary 'constant'): float64 where the
    window's values are not integers (:attr:`Plan.window_bounds` is None)."""
    if not plan.bnd.fills:
        return dtype
    if dtype.kind == "f":
        return FLOAT64
    bounds = plan.window_bounds
    return (fit(*bounds, dtype) if bounds is not None else None) or FLOAT64


#: Blocks whose field takes at most this many bytes are evaluated whole, then summed in one
#: compiled call: the GIL is released for the whole block, so two threads run in parallel.  Larger blocks (an in-memory image
#: given to :func:`pipeline.window_reduce`) are evaluated a strip of rows at a time into a ring
#: buffer, so that the field is never held whole.
WHOLE_FIELD_BYTES = 2**25


def _fused_sum(plan: Plan, arrays: Mapping[str, np.ndarray], block_index: Sequence[int]) -> np.ndarray | None:
    """The compiled fused path (:mod:`pipeline.kernels.fastsum`) where it applies: an integer sum over a
    plain rectangular 2-D window, boundary shrink/valid, nothing missing, inputs of one shape;
    None elsewhere (the numpy path below is the reference it is tested against)."""
    if not (
        plan.plain_sum
        and not plan.missing_possible
        and plan.out_dtype.kind == "i"
        and fastsum.supports(plan.expr.dtype, plan.ndim, plan.window_axes)
    ):
        return None
    names = plan.expr.names
    xs = [np.asarray(arrays[n]) for n in names]
    if any(x.shape != xs[0].shape or x.ndim != plan.ndim for x in xs):
        return None
    ranges = plan.centres(block_index)
    ax = plan.window_axes

    start, stop = [ranges[a][0] for a in ax], [ranges[a][1] for a in ax]
    evaluate = compiled.pointwise(plan.expr) or plan.expr.evaluate
    if xs[0].size * plan.expr.dtype.itemsize <= WHOLE_FIELD_BYTES:
        field = evaluate(dict(zip(names, xs)))
        return fastsum.window_sum_2d(field, plan.lo, plan.hi, start, stop, plan.out_dtype)

    def rows(lead: tuple, i0: int, i1: int) -> np.ndarray:
        return evaluate({n: x[lead][i0:i1] for n, x in zip(names, xs)})

    return fastsum.fused_window_sum(
        rows, xs[0].shape, plan.expr.dtype, plan.lo, plan.hi,
        [ranges[a][0] for a in ax], [ranges[a][1] for a in ax], plan.out_dtype,
    )


def _evaluate(plan: Plan, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """The block's field: an integer expression of inputs of one shape through its compiled loop
    (:mod:`pipeline.kernels.compiled`: one pass, no numpy temporaries), else numpy; a bare input name is
    the input itself."""
    names = plan.expr.names
    if not isinstance(plan.expr.root, Name):
        xs = [np.asarray(arrays[n]) for n in names]
        if all(x.shape == xs[0].shape for x in xs):
            compiled_eval = compiled.pointwise(plan.expr)
            if compiled_eval is not None:
                return compiled_eval(dict(zip(names, xs)))
    return plan.expr.evaluate(arrays)


def compute_stats(plan: Plan, arrays: Mapping[str, np.ndarray], block_index: Sequence[int]) -> dict[str, np.ndarray]:
    """Every statistic of the block ``block_index`` from halo-extended input blocks, each in its
    output dtype.

    The one kernel dispatch point, in order: a plain sum (:attr:`Plan.plain_sum`) of an integer
    field with nothing missing takes the fused compiled sum (:mod:`pipeline.kernels.fastsum`); a plain
    sum of a field the compiled kernels do not take, the numpy window sum; everything else the
    compiled statistics (:mod:`pipeline.kernels.fastwin`) where they apply, else the numpy reference
    (a padded copy, then :func:`pipeline.kernels.reference.reduce_stats`)."""
    fused = _fused_sum(plan, arrays, block_index)
    if fused is not None:
        return {"sum": fused}
    field = _evaluate(plan, arrays)
    shape = np.broadcast_shapes(field.shape, *(np.shape(arrays[n]) for n in plan.expr.names))
    if field.shape != shape:
        field = np.broadcast_to(field, shape)
    ranges = plan.centres(block_index)
    finite = _Finite()
    missing = _missing(plan, arrays, field, finite)
    if missing is None and field.dtype.kind == "f" and plan.stats == ("sum",) and not finite(field) and not np.isfinite(field).all():
        missing = np.zeros(field.shape, bool)  # infinities: the general path counts them apart
    if plan.plain_sum and missing is None and not fastwin.supports(field.dtype):
        return overflow.rescue({"sum": _numpy_sum(plan, field, ranges)}, field, lambda g: {"sum": _numpy_sum(plan, g, ranges)})  # type: ignore[return-value]

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


def pack(plan: Plan, stats: Mapping[str, np.ndarray]) -> np.ndarray:
    """Several statistics as one uint8 block (their bytes side by side on a trailing axis), so
    that one dask task carries them all."""
    parts = [np.ascontiguousarray(stats[st], dtype=plan.out_dtypes[st]) for st in plan.stats]
    shape = parts[0].shape
    return np.concatenate([p.reshape(shape + (1,)).view(np.uint8) for p in parts], axis=-1)


def unpack(plan: Plan, packed: np.ndarray) -> dict[str, np.ndarray]:
    """Inverse of :func:`pack`."""
    out = {}
    offset = 0
    for st in plan.stats:
        dt = plan.out_dtypes[st]
        part = np.ascontiguousarray(packed[..., offset : offset + dt.itemsize])
        out[st] = part.view(dt)[..., 0]
        offset += dt.itemsize
    return out


def packed_itemsize(plan: Plan) -> int:
    return sum(plan.out_dtypes[st].itemsize for st in plan.stats)


def compute_block(plan: Plan, arrays: Mapping[str, np.ndarray], block_index: Sequence[int]) -> np.ndarray:
    """The result block ``block_index`` from halo-extended input blocks (pure numpy): the one
    statistic's array, or for several statistics their :func:`pack`-ed bytes."""
    stats = compute_stats(plan, arrays, block_index)
    if plan.multi:
        return pack(plan, stats)
    return stats[plan.stats[0]]


def _meta(plan: Plan) -> np.ndarray:
    if plan.multi:
        return np.empty((0,) * (plan.ndim + 1), dtype=np.uint8)
    return np.empty((0,) * plan.ndim, dtype=plan.out_dtype)


def _block(*blocks: np.ndarray, plan: Plan, block_id: tuple[int, ...] | None = None) -> np.ndarray:
    if block_id is None:  # dask probing the function for metadata
        return _meta(plan)
    return compute_block(plan, dict(zip(plan.expr.names, blocks)), block_id[: plan.ndim])


def build(plan: Plan, arrays: Mapping[str, dask.array.Array]):
    """The lazy result: inputs re-chunked explicitly to the plan's grid, then ``map_overlap``."""
    import dask.array as da

    xs = []
    for name in plan.expr.names:
        x = arrays[name]
        expected = plan.in_shapes.get(name, plan.in_shape)
        if tuple(x.shape) != tuple(expected):
            raise InputError(f"shape {tuple(x.shape)} differs from the plan's {tuple(expected)}", where=name)
        if tuple(x.shape) != plan.in_shape:  # numpy broadcasting: each source chunk read once
            x = da.broadcast_to(x, plan.in_shape)
        xs.append(x.rechunk(plan.in_chunks))
    depth = dict(enumerate(plan.depth))
    boundary = {ax: ("periodic" if ax in plan.wrap_axes else "none") for ax in range(plan.ndim)}
    chunks = plan.out_chunks
    if plan.multi:
        chunks = tuple(chunks) + ((packed_itemsize(plan),),)
    return da.map_overlap(
        partial(_block, plan=plan),
        *xs,
        depth=depth,
        boundary=boundary if plan.wrap_axes else "none",
        trim=False,
        align_arrays=False,
        allow_rechunk=False,
        chunks=chunks,
        new_axis=[plan.ndim] if plan.multi else None,
        dtype=np.uint8 if plan.multi else plan.out_dtype,
        meta=_meta(plan),
        token=f"window-{plan.reduce}",
    )


def build_stats(plan: Plan, arrays: Mapping[str, dask.array.Array]) -> dict[str, dask.array.Array]:
    """The lazy result per statistic; several statistics share one map_overlap (one read of the
    inputs, one computation per block)."""
    result = build(plan, arrays)
    if not plan.multi:
        return {plan.stats[0]: result}
    out = {}
    for st in plan.stats:
        out[st] = result.map_blocks(
            lambda b, st=st: unpack(plan, b)[st],
            drop_axis=plan.ndim,
            dtype=plan.out_dtypes[st],
            meta=np.empty((0,) * plan.ndim, dtype=plan.out_dtypes[st]),
        )
    return out
