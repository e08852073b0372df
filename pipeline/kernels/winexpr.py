"""Window expressions on one block: every distinct window term from one halo read, then each
result's formula per pixel.

Each distinct pointwise expression of the plan's terms (:attr:`Plan.parts`) is evaluated once on
the block and its statistics computed by the same kernels as single statistics
(:func:`pipeline.kernels.fieldstats.field_stats`: exact integer sums for integer fields, every
boundary), under one missing-pixel mask shared by every term (a pixel counts in a window when
every input the results use is valid there and every term's value is not NaN), so that the terms
of one window always see the same pixels.  Each result's formula is then evaluated in float64
(or its exact integer type) on the terms and the centre pixels; it is NaN where a window has
fewer valid pixels than the formula needs or, for a formula using centre values, where the
centre pixel is missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from pipeline.expr.evaluate import evaluate
from pipeline.kernels import compiled, fieldstats
from pipeline.plan.planner import Plan


def _field(part: Plan, xs: Mapping[str, np.ndarray]) -> np.ndarray:
    """The part's pointwise field on the block: its compiled loop where there is one, else numpy."""
    args = {n: xs[n] for n in part.expr.names}
    run = compiled.pointwise(part.expr)
    return run(args) if run is not None else part.expr.evaluate(args)


def _joint_missing(plan: Plan, xs: Mapping[str, np.ndarray], fields: Sequence[np.ndarray], shape, finite: fieldstats.Finite) -> np.ndarray | None:
    """Where any input the results use is missing or any term's field is NaN; None: nowhere."""
    missing = fieldstats.missing_pixels(plan, xs, np.broadcast_to(np.False_, shape), finite)
    for f in fields:
        m = finite.nan_mask(f) if f.dtype.kind == "f" else None
        if m is not None:
            missing = m if missing is None else (missing | m)
    return missing


def compute(plan: Plan, arrays: Mapping[str, np.ndarray], block_index: Sequence[int]) -> dict[str, np.ndarray]:
    """Every result of the block ``block_index`` from halo-extended input blocks, each in its
    output dtype."""
    shape = np.broadcast_shapes(*(np.shape(arrays[n]) for n in plan.expr.names))
    xs = {n: np.broadcast_to(np.asarray(arrays[n]), shape) for n in plan.expr.names}
    ranges = plan.centres(block_index)
    finite = fieldstats.Finite()
    fields = {text: np.broadcast_to(_field(part, xs), shape) for text, part in plan.parts.items()}
    missing = _joint_missing(plan, xs, list(fields.values()), shape, finite)
    dtypes = {t.key: t.dtype for res in plan.results.values() for t in res.terms}
    terms: dict[str, np.ndarray] = {}
    for text, part in plan.parts.items():
        for st, arr in fieldstats.field_stats(part, fields[text], missing, ranges, finite).items():
            key = f"{st}({text})"
            terms[key] = arr.astype(dtypes.get(key, arr.dtype), copy=False)  # cast once, used many times
    centre = tuple(slice(a, b) for a, b in ranges)
    values: dict[str, np.ndarray] = {**{n: x[centre] for n, x in xs.items()}, **terms}
    count = next((arr for key, arr in terms.items() if key.startswith("count(")), None)
    shape = _out_shape(ranges)
    out = {}
    for name, res in plan.results.items():
        r = _formula(res, values, shape, plan.out_dtypes[name])
        bad = _undefined(res, count, None if missing is None else missing[centre])
        if bad is not None:
            r[bad] = np.nan
        out[name] = r
    return out


#: elements per strip of rows the formula is evaluated on: its temporaries stay in cache
STRIP = 2**15


def _formula(res, values: Mapping[str, np.ndarray], shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """The formula of ``res`` on ``values`` (terms and centre pixels, all of ``shape``) as
    ``dtype``, a strip of rows at a time."""
    out = np.empty(shape, dtype)
    if not shape or out.size == 0:
        out[...] = evaluate(res.root, values, res.dtype)
        return out
    step = max(1, STRIP // max(1, out[0].size))
    for r0 in range(0, shape[0], step):
        part = {k: v[r0 : r0 + step] for k, v in values.items()}
        out[r0 : r0 + step] = evaluate(res.root, part, res.dtype)
    return out


def _out_shape(ranges) -> tuple[int, ...]:
    return tuple(b - a for a, b in ranges)


def _undefined(res, count: np.ndarray | None, centre_missing: np.ndarray | None) -> np.ndarray | None:
    """Where the result ``res`` is undefined: too few valid pixels, or a missing centre pixel it uses."""
    bad = None
    if res.min_count > 0 and count is not None:
        bad = count < res.min_count
    if res.centre and centre_missing is not None:
        bad = centre_missing if bad is None else (bad | centre_missing)
    return bad
