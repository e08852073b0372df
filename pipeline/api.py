"""The Python API: :func:`window_reduce` on arrays, :func:`run` on configs.

Both go through the same plan and the same per-block computation as the CLI.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import metadata, ops, runner
from .errors import ConfigError, InputError
from .plan import ArraySpec, make_plan


def _kind(x: Any) -> str:
    if type(x).__module__.startswith("xarray") and hasattr(x, "dims"):
        return "xarray"
    if type(x).__module__.startswith("dask") and hasattr(x, "chunks"):
        return "dask"
    return "numpy"


def window_reduce(
    op: str,
    inputs: Mapping[str, Any],
    *,
    size: int | Sequence[int] | None = None,
    reduce: str | Sequence[str] = "sum",
    boundary: str = "shrink",
    chunks: str | int | Sequence[int] = "auto",
    cval: int | float = 0,
    shape: str = "rect",
    weights: Sequence[Sequence[int | float]] | None = None,
    axes: Sequence[int | str] | None = None,
    nodata: Mapping[str, int | float | None] | None = None,
    dtype: str | Mapping[str, str] | None = None,
    fill_value: int | float | None = None,
):
    """Reduce ``op`` (a pointwise expression of the named inputs) over a moving window.

    ``inputs`` maps names to numpy arrays (returns numpy), dask arrays (returns a lazy dask
    array) or xarray DataArrays (returns a DataArray with the inputs' dims and coordinates).
    ``size`` is ``W`` or ``(rows, cols)``; the window runs over the axes named ``y``/``x``
    (or ``lat``/``lon``, ``latitude``/``longitude``, ``row``/``col``) of xarray inputs, else over
    the two axes of 2-D inputs; a >=3-D input without such names needs ``axes``.  The window
    centred on pixel ``i`` covers ``i - W//2 … i - W//2 + W - 1``.  ``boundary="shrink"``
    truncates windows at the border (output shape = input shape); ``"valid"`` keeps only whole
    windows (``W - 1`` smaller per axis); ``constant`` (with ``cval``), ``reflect``, ``mirror``,
    ``nearest`` and ``wrap`` extend the image as scipy.ndimage does.  Integer inputs give exact
    integer results in a dtype chosen so that they cannot overflow.

    ``reduce``: sum, mean, min, max, var, std, count, or a list of them (then the result is a
    dict statistic -> array).  ``shape="disk"`` or ``weights`` (a matrix; ``size`` may be
    omitted) change the footprint; ``axes`` names the two window axes (names need xarray
    inputs); ``nodata`` maps input names to their nodata value (NaN always is missing);
    ``dtype`` and ``fill_value`` as ``output.dtype`` and ``output.fill_value`` in a config.

    >>> import numpy as np
    >>> window_reduce("a - b", {"a": np.ones((2, 3), np.uint8), "b": np.zeros((2, 3), np.uint8)}, size=3)
    array([[4, 6, 4],
           [4, 6, 4]], dtype=int32)
    """
    if not isinstance(inputs, Mapping) or not inputs:
        raise InputError("inputs must be a non-empty mapping of names to arrays", where="inputs")
    kinds = {name: _kind(x) for name, x in inputs.items()}
    template = next((inputs[n] for n, k in kinds.items() if k == "xarray"), None)
    data = {n: (x.data if kinds[n] == "xarray" else x) for n, x in inputs.items()}
    lazy = any(k == "dask" or (k == "xarray" and _kind(data[n]) == "dask") for n, k in kinds.items())
    if not lazy:
        data = {n: np.asarray(x) for n, x in data.items()}

    specs = {}
    for name, x in data.items():
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            raise InputError(f"is a {type(x).__name__}, not an array", where=f"inputs.{name}")
        chunks_of = None
        if lazy:
            chunks_of = tuple(max(c) for c in x.chunks) if hasattr(x, "chunks") and x.chunks else None
        else:
            chunks_of = tuple(x.shape)  # one block: the whole array
        dims = tuple(inputs[name].dims) if kinds[name] == "xarray" else None
        specs[name] = ArraySpec(name, tuple(x.shape), np.dtype(x.dtype), chunks_of, dims, source=f"inputs.{name}")

    kw = dict(
        reduce=reduce, boundary=boundary, cval=cval, shape=shape, weights=weights, axes=axes,
        nodata=nodata, dtype=dtype, fill_value=fill_value,
    )
    if not lazy and chunks == "auto":
        # one block: the whole array (window axes taken from a first plan)
        probe = _plan(op, specs, size=size, **kw)
        full = probe.in_shape
        chunks = [max(1, full[ax]) for ax in probe.window_axes]
        if axes is not None:  # chunks follow the order the axes were given in
            order = [probe.window_axes.index(a) for a in _axis_ids(axes, full, specs)]
            chunks = [chunks[i] for i in order]
    plan = _plan(op, specs, size=size, chunks=chunks, **kw)

    if lazy:
        import dask.array as da

        arrays = {n: (data[n] if _kind(data[n]) == "dask" else da.from_array(np.asarray(data[n]))) for n in plan.expr.names}
        result = ops.build_stats(plan, arrays)
    else:
        result = _compute_numpy(plan, {n: data[n] for n in plan.expr.names})

    if template is not None:
        result = {st: _wrap(r, template, plan, st) for st, r in result.items()}
    return result if plan.multi else result[plan.stats[0]]


def _plan(op, specs, **kw):
    """:func:`make_plan`, with errors about the window axes naming this function's ``axes``."""
    try:
        return make_plan(op, specs, **kw)
    except ConfigError as e:
        if e.where != "window.axes":
            raise
        raise ConfigError(e.message.replace("window.axes", "axes"), where="axes") from None


def _axis_ids(axes, shape, specs):
    from .plan import window_axes

    dims = next((s.dims for s in specs.values() if s.dims and len(s.dims) == len(shape)), None)
    return window_axes(axes, len(shape), dims, len(axes))


def _compute_numpy(plan, arrays):
    """In memory: one block (the default), or the blocks asked for, computed one by one."""
    if all(len(c) == 1 for c in plan.in_chunks):
        return ops.compute_stats(plan, arrays, (0,) * plan.ndim)
    import dask.array as da

    lazy = ops.build_stats(plan, {n: da.from_array(a) for n, a in arrays.items()})
    import dask

    return dict(zip(lazy, dask.compute(*lazy.values(), scheduler="sync")))


def _wrap(result: Any, template: Any, plan, statistic: str) -> Any:
    import xarray as xr

    coords = {}
    for name, coord in template.coords.items():
        if not set(coord.dims) <= set(template.dims):
            continue
        index = {}
        for dim in coord.dims:
            ax = template.dims.index(dim)
            if plan.boundary == "valid" and ax in plan.window_axes:
                i = plan.window_axes.index(ax)
                index[dim] = slice(plan.lo[i], plan.in_shape[ax] - plan.hi[i])
        coords[name] = coord.isel(index) if index else coord
    # the template's attributes that stay true of the result (see pipeline.metadata); its
    # grid_mapping where the coordinate it names is carried
    attrs = metadata.output_attrs(
        template.attrs, statistic=statistic, single_input=plan.expr.text.strip() in plan.expr.names, fill=None, dtype=result.dtype
    )
    gm = template.attrs.get("grid_mapping")
    if isinstance(gm, str) and gm in coords:
        attrs["grid_mapping"] = gm
    return xr.DataArray(result, dims=template.dims, coords=coords, attrs=attrs)


def run(config: str | os.PathLike[str] | Mapping[str, Any]) -> runner.RunResult:
    """Run a config given as a YAML path or a mapping (relative paths resolve against the
    file's folder, or the current directory for a mapping)."""
    return runner.run(config)
