"""The Python API: :func:`window_reduce` on arrays, :func:`run` on configs.

Both go through the same plan and the same per-block computation as the CLI.  This module only
composes the steps: the Python arguments checked and named in errors (:mod:`pipeline.api.args`),
xarray alignment (:mod:`pipeline.api.labelled`), the plan with int64 narrowing and the computation
(:mod:`pipeline.api.compute`); the engine (dask, numba) is imported on first use, so that
``import pipeline`` stays light.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Union

import numpy as np

from pipeline.api import labelled
from pipeline.api import nodata as input_nodata
from pipeline.api.args import SCIPY_MODES, as_arrays, as_inputs, footprint_error, plan_arguments
from pipeline.api.compute import RANGE_ATTRS, SCAN_BYTES, compute, kind, plan_narrowing
from pipeline.errors import ConfigError
from pipeline.plan import winplan

if TYPE_CHECKING:  # pragma: no cover
    import dask.array
    import xarray

    from pipeline.plan.planner import Plan
    from pipeline.runner.runconfig import RunResult

__all__ = ["RANGE_ATTRS", "SCAN_BYTES", "SCIPY_MODES", "Boundary", "Mode", "Reducer", "Result", "run", "window_reduce"]

Reducer = Literal["sum", "mean", "min", "max", "var", "std", "count"]
Boundary = Literal["shrink", "valid", "constant", "reflect", "mirror", "nearest", "wrap"]
#: scipy.ndimage ``mode`` names: each is exactly one of the boundaries
Mode = Literal["reflect", "constant", "nearest", "mirror", "wrap", "grid-mirror", "grid-constant", "grid-wrap"]
Result = Union[np.ndarray, "dask.array.Array", "xarray.DataArray", "xarray.Dataset", dict[str, Any]]


def window_reduce(
    op: str | Mapping[str, str],
    inputs: Mapping[str, Any] | xarray.Dataset,
    *,
    size: int | Sequence[int] | Mapping[str, int] | None = None,
    reduce: Reducer | Sequence[Reducer] = "sum",
    boundary: Boundary = "shrink",
    chunks: Literal["auto"] | int | Sequence[int] = "auto",
    cval: int | float = 0,
    shape: Literal["rect", "disk"] = "rect",
    weights: Sequence[Sequence[int | float]] | None = None,
    axes: Sequence[int | str] | None = None,
    nodata: Mapping[str, int | float | None] | None = None,
    dtype: str | np.dtype | type | Mapping[str, str | np.dtype | type] | None = None,
    fill_value: int | float | None = None,
    mode: Mode | None = None,
    footprint: Any = None,
    origin: int | Sequence[int] = 0,
) -> Result:
    """Reduce ``op`` (a pointwise expression of the named inputs) over a moving window.

    Parameters
    ----------
    op
        The expression, e.g. ``"a - b"`` or ``"where(m, t, 0)"`` (parsed, never eval'ed).
    inputs
        Names to arrays: numpy arrays or lists (the result is numpy), dask arrays (a lazy dask
        array), xarray DataArrays (a DataArray); or an ``xarray.Dataset`` (its data variables).
        xarray inputs are matched by dimension *name* and must have equal coordinates (as
        ``xr.apply_ufunc`` with ``join="exact"``); only the inputs ``op`` uses take part.
    size
        Window size: ``W``, one size per window axis, or a mapping ``{dim: W}`` (which also
        names the window axes, e.g. ``{"lat": 5, "lon": 3}``).  May be omitted with ``weights``
        or ``footprint``.  The window centred on pixel ``i`` covers ``i - W//2 … i - W//2 + W - 1``.
        At most 16,385 per side, as in configs (``weights`` and ``footprint`` too).
    reduce
        ``"sum"``, ``"mean"``, ``"min"``, ``"max"``, ``"var"``, ``"std"``, ``"count"`` or a
        list of them: then the result is an ``xarray.Dataset`` of one variable per statistic for
        xarray inputs, and a dict statistic -> array for numpy and dask inputs.
    boundary
        ``"shrink"`` truncates windows at the border (output shape = input shape); ``"valid"``
        keeps only whole windows (``W - 1`` smaller per axis); ``"constant"`` (with ``cval``),
        ``"reflect"``, ``"mirror"``, ``"nearest"`` and ``"wrap"`` extend the image as
        scipy.ndimage's modes of those names do.
    chunks
        Processing block side per window axis: ``"auto"`` keeps a dask input's chunks when they
        are at least as wide as the halo (numpy inputs: one block), or an int / one int per axis.
    cval
        The value outside the image for ``boundary="constant"``; ``cval=np.nan`` means "outside
        pixels are missing", which is ``boundary="shrink"``.
    shape
        ``"rect"`` or ``"disk"`` (the ellipse inscribed in the window).
    weights
        A matrix of weights (the window is its shape): weighted sum and mean; min, max and count
        over its non-zero entries.
    axes
        The window axes, as ints or dim names; by default the dims named ``y``/``x`` (or
        ``lat``/``lon``, ``latitude``/``longitude``, ``row``/``col``), else the two axes of a 2-D
        input; a >=3-D input without such names needs ``axes`` (never a guess).
    nodata
        Input name -> its nodata value (those pixels are missing; NaN always is); ``None``
        switches off what the input declares.  Every key must be an input name.  An input not
        named here has the nodata it declares, by the rule of configs: its attrs ``_FillValue``,
        else ``missing_value``, else ``nodata`` (xarray and zarr arrays; rioxarray's
        ``open_rasterio`` and ``rio.write_nodata``), else xarray's ``encoding["_FillValue"]``
        where the values are still the encoded ones (same dtype, not scaled: decoded values
        are NaN there already); a value no pixel of its dtype can hold is ignored.  The masked
        pixels of a ``numpy.ma`` array (netCDF4's default) are missing too: float ones become
        NaN, integer ones the nodata value (else a value no unmasked pixel holds).  A dask
        array of masked chunks is accepted when float or given an integer nodata.
    dtype
        Output dtype (one, or one per statistic); it must hold every result.  A float dtype also
        lets integer inputs too wide for exact integer sums be summed in floating point.
    fill_value
        The value of windows without a valid pixel in integer outputs.
    mode
        scipy.ndimage's name for ``boundary`` (``"reflect"``, ``"constant"``, ``"nearest"``,
        ``"mirror"``, ``"wrap"`` and their ``grid-`` forms).
    footprint
        scipy.ndimage's boolean footprint: the window pixels that count (``weights`` of 0/1).
        Its rows and columns (as those of ``weights``) run along the window axes in increasing
        order, whatever the order ``axes`` names them in, as in ``scipy.ndimage.correlate``.
    origin
        scipy.ndimage's ``origin``: an int, or one per window axis (in the order of ``axes``, as
        ``size``); the window on pixel ``i`` then covers ``i - W//2 - origin … i - W//2 -
        origin + W - 1`` (``-(W//2) <= origin <= (W-1)//2``).

    Returns
    -------
    A numpy array, a lazy dask array, or an ``xarray.DataArray`` named ``<name>_<stat>`` (for a
    bare input name; else the statistic) with the inputs' dims, coordinates and the attrs that
    stay true (``units`` dropped for var and count); several statistics: see ``reduce``.

    Integer inputs give exact integer results in a dtype chosen so that they cannot overflow;
    int64/uint64 inputs are narrowed to their actual value range when it is cheap to know
    (in-memory arrays, dask arrays up to 64 MiB, ``valid_min``/``valid_max`` attrs).  Errors
    raise :class:`~pipeline.PipelineError` (a ``ValueError``) naming the argument.

    >>> import numpy as np
    >>> window_reduce("a - b", {"a": np.ones((2, 3), np.uint8), "b": np.zeros((2, 3), np.uint8)}, size=3)
    array([[4, 6, 4],
           [4, 6, 4]], dtype=int32)
    """
    inputs = as_inputs(inputs)
    size, chunks, kw = plan_arguments(
        inputs, size=size, reduce=reduce, boundary=boundary, chunks=chunks, cval=cval, shape=shape, weights=weights,
        axes=axes, nodata=nodata, dtype=dtype, fill_value=fill_value, mode=mode, footprint=footprint, origin=origin,
    )
    arrays = as_arrays(inputs)
    names = winplan.op_names(op, {n: np.dtype(x.dtype) for n, x in arrays.items()})
    data, dims = labelled.align(names, arrays)
    kw["nodata"] = input_nodata.resolve(names, arrays, nodata)
    data = input_nodata.unmask(names, data, kw["nodata"])
    lazy = any(kind(data[n]) == "dask" for n in names)
    if not lazy:
        data = {n: np.asarray(data[n]) for n in names}
    try:
        data, plan = plan_narrowing(op, {n: data[n] for n in names}, dims, lazy, size, chunks, kw, arrays)
    except ConfigError as e:
        renamed = footprint_error(e) if footprint is not None else None
        if renamed is None:
            raise
        raise renamed from None
    return _result(compute(plan, data, lazy), plan, dims, names, arrays, plan.expr.text)


def _result(
    result: dict[str, Any], plan: Plan, dims: tuple[str, ...] | None, names: Sequence[str], arrays: Mapping[str, Any], op: str
) -> Result:
    """One statistic's array or all of them: numpy or dask as computed; for xarray inputs
    labelled DataArrays (several: one Dataset)."""
    if dims is None:
        return result if plan.multi else result[plan.stats[0]]
    wrapped = {st: labelled.wrap(r, plan, dims, names, arrays, op, st) for st, r in result.items()}
    if not plan.multi:
        return wrapped[plan.stats[0]]
    import xarray as xr

    return xr.Dataset({st: w.rename(st) for st, w in wrapped.items()})


def run(config: str | os.PathLike[str] | Mapping[str, Any]) -> RunResult:
    """Run a config given as a YAML path or a mapping (relative paths resolve against the
    file's folder, or the current directory for a mapping); returns the run's summary."""
    from pipeline.runner import runconfig

    return runconfig.run(config)
