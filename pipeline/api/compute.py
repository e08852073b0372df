"""The plan and the computation of :func:`pipeline.window_reduce` on in-memory and dask arrays:
the inputs' specs and block chunks, 8-byte integer inputs narrowed to their actual value range
(never a silent wrap), and the statistics computed (numpy) or built (dask).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from pipeline.api import labelled
from pipeline.api.args import api_error
from pipeline.errors import ConfigError, InputError, PipelineError
from pipeline.plan.dtypes import as_computable, stored_nodata
from pipeline.plan.planner import ArraySpec, Plan, make_plan

#: dask inputs up to this size are scanned for their value range when their dtype (int64, uint64)
#: is too wide for the window sums
SCAN_BYTES = 64 * 2**20
#: attrs that give an input's value range without reading it (CF, GDAL)
RANGE_ATTRS = (("valid_min", "valid_max"), ("actual_min", "actual_max"), ("STATISTICS_MINIMUM", "STATISTICS_MAXIMUM"))


def kind(x: Any) -> str:
    """``"xarray"``, ``"dask"`` or ``"numpy"`` (anything else is read as numpy)."""
    if labelled.is_xarray(x):
        return "xarray"
    if type(x).__module__.startswith("dask") and hasattr(x, "chunks"):
        return "dask"
    return "numpy"


def compute(plan: Plan, data: Mapping[str, Any], lazy: bool) -> dict[str, Any]:
    """The statistics: lazy dask arrays when any input is a dask array, else numpy arrays."""
    if lazy:
        import dask.array as da

        from pipeline.kernels import ops

        darrays = {n: (data[n] if kind(data[n]) == "dask" else da.from_array(np.asarray(data[n]))) for n in plan.expr.names}
        return ops.build_stats(plan, darrays)
    return _compute_numpy(plan, {n: data[n] for n in plan.expr.names})


def _plan(op: str, specs: Mapping[str, ArraySpec], size: Any, chunks: Any, kw: Mapping[str, Any]) -> Plan:
    """:func:`~pipeline.plan.planner.make_plan`, its errors speaking the API's argument names."""
    try:
        return make_plan(op, specs, size=size, chunks=chunks, **kw)
    except PipelineError as e:
        new = api_error(e)
        if new is e:
            raise
        raise new from None


def _specs(data: Mapping[str, Any], dims: tuple[str, ...] | None, lazy: bool) -> dict[str, ArraySpec]:
    specs = {}
    for name, x in data.items():
        chunks_of = None
        if lazy and kind(x) == "dask":
            chunks_of = tuple(max(c) for c in x.chunks)
        elif not lazy:
            chunks_of = tuple(x.shape)  # one block: the whole array
        own = dims if dims is not None and len(dims) == x.ndim else None
        specs[name] = ArraySpec(name, tuple(x.shape), np.dtype(x.dtype), chunks_of, own, source=f"inputs['{name}']")
    return specs


def _plan_with_chunks(op, data, dims, lazy, size, chunks, kw):
    specs = _specs(data, dims, lazy)
    auto = chunks == "auto"
    if auto:
        probe = _plan(op, specs, size, "auto", kw)
        ref = next((s for s in specs.values() if s.shape == probe.in_shape and s.chunks), None)
        if ref is not None:
            # numpy: one block; dask: the input's chunks (the plan widens any narrower than the halo)
            full = [max(1, ref.chunks[ax]) for ax in probe.window_axes]
            if kw.get("axes") is not None:  # chunks follow the order the axes were given in
                order = [probe.window_axes.index(a) for a in _axis_ids(kw["axes"], probe.in_shape, specs)]
                full = [full[i] for i in order]
            chunks = full
    plan = _plan(op, specs, size, chunks, kw)
    if auto:  # the input's chunks are not kept: say why
        for note in (*plan.notes, *_narrow_chunks(plan, data)):
            warnings.warn(f"window_reduce: the input's {note}", stacklevel=4)
    return plan


def _narrow_chunks(plan: Plan, data: Mapping[str, Any]) -> list[str]:
    """What a dask input's chunks narrower than the halo became (the plan's blocks are never
    narrower than the halo, so dask never re-chunks behind our back)."""
    notes = []
    for name, x in data.items():
        if kind(x) != "dask" or tuple(x.shape) != plan.in_shape:
            continue
        for i, ax in enumerate(plan.window_axes):
            h = max(plan.lo[i], plan.hi[i])
            given = tuple(x.chunks[ax])
            if len(given) > 1 and min(given) < h <= max(given) and given != plan.in_chunks[ax]:  # (else a plan note)
                notes.append(
                    f"'{name}' chunks {given} on axis {ax} include one narrower than the window's halo {h}; "
                    f"widened to {plan.in_chunks[ax]}"
                )
    return notes


def _axis_ids(axes, shape, specs):
    from pipeline.plan.planner import window_axes

    dims = next((s.dims for s in specs.values() if s.dims and len(s.dims) == len(shape)), None)
    return window_axes(axes, len(shape), dims, len(axes))


def _wide(x: Any) -> bool:
    return np.dtype(x.dtype).kind in "iu" and np.dtype(x.dtype).itemsize == 8


def plan_narrowing(op, data, dims, lazy, size, chunks, kw, originals):
    """The plan on the inputs as they are; when 8-byte integer inputs make it refuse (window
    sums beyond int64) or compute inexactly (an integer expression promoted to float64), the
    plan on those inputs narrowed to their actual value range, where that range is cheap to
    know; with a float ``dtype``, a refusal falls back to float64 inputs.  Inputs are first
    converted to their :func:`~pipeline.plan.dtypes.computable` dtype (native byte order, float16 as
    float32; a float16 input's nodata rounded to float16 first)."""
    nodata = kw.get("nodata")
    if nodata:
        kw = {**kw, "nodata": {n: stored_nodata(v, data[n].dtype) if n in data else v for n, v in nodata.items()}}
    data = {n: as_computable(x) for n, x in data.items()}
    wide = [n for n in data if _wide(data[n])]
    try:
        plan = _plan_with_chunks(op, data, dims, lazy, size, chunks, kw)
        if not wide or plan.expr.dtype.kind != "f":
            return data, plan
        refused = None
    except ConfigError as e:
        if not wide or e.where not in ("op", "weights"):
            raise
        refused = e
    narrowed = dict(data)
    unknown = []
    for n in wide:
        rng = _value_range(data[n], originals[n])
        if rng is None:
            unknown.append(n)
        else:
            narrowed[n] = _narrow(data[n], *rng, n)
    if len(unknown) < len(wide):
        try:
            plan2 = _plan_with_chunks(op, narrowed, dims, lazy, size, chunks, kw)
            if refused is not None or plan2.expr.dtype.kind != "f":
                return narrowed, plan2
        except ConfigError as e:
            if refused is None:
                return data, plan
            refused = e
    if refused is None:
        return data, plan
    user = kw.get("dtype")
    dts = list(user.values()) if isinstance(user, Mapping) else [user]
    if user is not None and all(np.dtype(d).kind == "f" for d in dts if d is not None):
        as_float = {n: (x.astype(np.float64) if n in wide else x) for n, x in data.items()}
        return as_float, _plan_with_chunks(op, as_float, dims, lazy, size, chunks, kw)
    why = f" (the values of {', '.join(unknown)} are not known without reading them)" if unknown else ""
    raise ConfigError(
        f"{refused.message}{why}; pass dtype='float64' for float sums, or cast the inputs to a "
        "narrower integer dtype (e.g. a.astype('int32'))",
        where=refused.where,
    ) from None


def _value_range(x: Any, original: Any) -> tuple[int, int] | None:
    """Exact ``(min, max)`` of an integer array when cheap: in memory, a dask array up to
    :data:`SCAN_BYTES`, or range attrs of an xarray input (checked as the blocks are read)."""
    if kind(x) != "dask":
        a = np.asarray(x)
        return int(a.min()), int(a.max())
    if x.nbytes <= SCAN_BYTES:
        import dask

        lo, hi = dask.compute(x.min(), x.max())
        return int(lo), int(hi)
    attrs = getattr(original, "attrs", {}) if labelled.is_xarray(original) else {}
    for pair in ("valid_range", "actual_range"):
        if pair in attrs and len(attrs[pair]) == 2:
            lo, hi = attrs[pair]
            return int(lo), int(hi)
    for lo_key, hi_key in RANGE_ATTRS:
        if lo_key in attrs and hi_key in attrs:
            return int(attrs[lo_key]), int(attrs[hi_key])
    return None


def _narrow_dtype(lo: int, hi: int) -> np.dtype:
    for dt in ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64"):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dt)
    return np.dtype("int64")  # pragma: no cover


def _checked_cast(block: np.ndarray, dtype: np.dtype, lo: int, hi: int, name: str) -> np.ndarray:
    if block.size and (block.min() < lo or block.max() > hi):
        raise InputError(f"holds values outside its declared range [{lo}, {hi}] (its range attrs)", where=f"inputs['{name}']")
    return block.astype(dtype)


def _narrow(x: Any, lo: int, hi: int, name: str) -> Any:
    """``x`` in the narrowest integer dtype holding ``[lo, hi]``; a range from attrs is checked
    block by block as the data are read (never a silent wrap)."""
    dt = _narrow_dtype(lo, hi)
    if kind(x) == "dask" and x.nbytes > SCAN_BYTES:
        return x.map_blocks(_checked_cast, dt, lo, hi, name, dtype=dt)
    return x.astype(dt)


def _compute_numpy(plan, arrays):
    """In memory: one block (the default), or the blocks asked for, computed one by one."""
    from pipeline.kernels import ops

    if all(len(c) == 1 for c in plan.in_chunks):
        return ops.compute_stats(plan, arrays, (0,) * plan.ndim)
    import dask
    import dask.array as da

    lazy = ops.build_stats(plan, {n: da.from_array(a) for n, a in arrays.items()})
    return dict(zip(lazy, dask.compute(*lazy.values(), scheduler="sync")))

