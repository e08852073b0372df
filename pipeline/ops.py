"""From a plan to results: the per-block computation and its dask wiring.

``compute_block`` is the whole per-block computation on numpy arrays (pointwise expression, then
the window reduction); ``build`` lays it over dask arrays with ``map_overlap`` so that each block
receives its halo, and returns the lazy result chunked exactly as the plan's output blocks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

import numpy as np

from . import fastsum, kernels
from .errors import InputError
from .plan import Plan


def compute_block(plan: Plan, arrays: Mapping[str, np.ndarray], block_index: Sequence[int]) -> np.ndarray:
    """The result block ``block_index`` from halo-extended input blocks (pure numpy, or the
    compiled fused window sum of :mod:`pipeline.fastsum` for integer sums over 2-D windows)."""
    if plan.reduce == "sum" and fastsum.supports(plan.expr.dtype, plan.ndim, plan.window_axes) and plan.out_dtype.kind == "i":
        names = plan.expr.names
        xs = [np.asarray(arrays[n]) for n in names]
        if all(x.shape == xs[0].shape for x in xs):
            ranges = plan.centres(block_index)
            ax = plan.window_axes

            def rows(lead: tuple, i0: int, i1: int) -> np.ndarray:
                return plan.expr.evaluate({n: x[lead][i0:i1] for n, x in zip(names, xs)})

            return fastsum.fused_window_sum(
                rows, xs[0].shape, plan.expr.dtype, plan.lo, plan.hi,
                [ranges[a][0] for a in ax], [ranges[a][1] for a in ax], plan.out_dtype,
            )
    field = plan.expr.evaluate(arrays)
    if field.dtype != plan.acc_dtype:
        field = field.astype(plan.acc_dtype)
    ranges = plan.centres(block_index)
    # non-window axes carry no halo: their range is the whole block
    reducer = kernels.REDUCERS[plan.reduce]
    return reducer(
        field,
        plan.window_axes,
        plan.lo,
        plan.hi,
        [ranges[ax][0] for ax in plan.window_axes],
        [ranges[ax][1] for ax in plan.window_axes],
    ).astype(plan.out_dtype, copy=False)


def _block(*blocks: np.ndarray, plan: Plan, block_id: tuple[int, ...] | None = None) -> np.ndarray:
    if block_id is None:  # dask probing the function for metadata
        return np.empty((0,) * plan.ndim, dtype=plan.out_dtype)
    return compute_block(plan, dict(zip(plan.expr.names, blocks)), block_id)


def build(plan: Plan, arrays: Mapping[str, "dask.array.Array"]):  # noqa: F821
    """The lazy result: inputs re-chunked explicitly to the plan's grid, then ``map_overlap``."""
    import dask.array as da

    xs = []
    for name in plan.expr.names:
        x = arrays[name]
        if tuple(x.shape) != plan.in_shape:
            raise InputError(f"shape {tuple(x.shape)} differs from the plan's {plan.in_shape}", where=name)
        xs.append(x.rechunk(plan.in_chunks))
    depth = dict(enumerate(plan.depth))
    return da.map_overlap(
        partial(_block, plan=plan),
        *xs,
        depth=depth,
        boundary="none",
        trim=False,
        align_arrays=False,
        allow_rechunk=False,
        chunks=plan.out_chunks,
        dtype=plan.out_dtype,
        meta=np.empty((0,) * plan.ndim, dtype=plan.out_dtype),
        token=f"window-{plan.reduce}",
    )
