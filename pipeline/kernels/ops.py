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
from pipeline.kernels import compiled, fastsum, fastwin, fieldstats, overflow, reference, winexpr
from pipeline.plan.planner import Plan

if TYPE_CHECKING:
    import dask.array


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
    if plan.results:  # window expressions
        return winexpr.compute(plan, arrays, block_index)
    fused = _fused_sum(plan, arrays, block_index)
    if fused is not None:
        return {"sum": fused}
    field = _evaluate(plan, arrays)
    shape = np.broadcast_shapes(field.shape, *(np.shape(arrays[n]) for n in plan.expr.names))
    if field.shape != shape:
        field = np.broadcast_to(field, shape)
    ranges = plan.centres(block_index)
    finite = fieldstats.Finite()
    missing = fieldstats.missing_pixels(plan, arrays, field, finite)
    if missing is None and field.dtype.kind == "f" and plan.stats == ("sum",) and not finite(field) and not np.isfinite(field).all():
        missing = np.zeros(field.shape, bool)  # infinities: the general path counts them apart
    if plan.plain_sum and missing is None and not fastwin.supports(field.dtype):
        return overflow.rescue({"sum": _numpy_sum(plan, field, ranges)}, field, lambda g: {"sum": _numpy_sum(plan, g, ranges)})  # type: ignore[return-value]

    return fieldstats.field_stats(plan, field, missing, ranges, finite)


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
