"""The Python API: :func:`window_reduce` on arrays, :func:`run` on configs.

Both go through the same plan and the same per-block computation as the CLI.  This module only
checks the Python arguments, prepares the arrays (xarray alignment in :mod:`pipeline.labelled`,
int64 narrowing here) and names API arguments in errors; the engine (dask, numba) is imported on
first use, so that ``import pipeline`` stays light.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Union

import numpy as np

from . import labelled
from .errors import ArgumentTypeError, ConfigError, InputError, PipelineError
from .expr import parse_expression
from .plan import ArraySpec, make_plan
from .registry import REDUCER_NAMES as REDUCERS

if TYPE_CHECKING:  # pragma: no cover
    import dask.array
    import xarray

    from .runner import RunResult

Reducer = Literal["sum", "mean", "min", "max", "var", "std", "count"]
Boundary = Literal["shrink", "valid", "constant", "reflect", "mirror", "nearest", "wrap"]
#: scipy.ndimage ``mode`` names: each is exactly one of the boundaries
Mode = Literal["reflect", "constant", "nearest", "mirror", "wrap", "grid-mirror", "grid-constant", "grid-wrap"]
Result = Union[np.ndarray, "dask.array.Array", "xarray.DataArray", "xarray.Dataset", dict[str, Any]]

SCIPY_MODES = {"reflect": "reflect", "grid-mirror": "reflect", "constant": "constant", "grid-constant": "constant",
               "nearest": "nearest", "mirror": "mirror", "wrap": "wrap", "grid-wrap": "wrap"}

#: dask inputs up to this size are scanned for their value range when their dtype (int64, uint64)
#: is too wide for the window sums
SCAN_BYTES = 64 * 2**20
#: attrs that give an input's value range without reading it (CF, GDAL)
RANGE_ATTRS = (("valid_min", "valid_max"), ("actual_min", "actual_max"), ("STATISTICS_MINIMUM", "STATISTICS_MAXIMUM"))

#: config keys -> the API argument a user passed
_API_NAMES = {
    "window.size": "size", "window.reduce": "reduce", "window.boundary": "boundary", "window.shape": "shape",
    "window.cval": "cval", "window.weights": "weights", "window.axes": "axes", "output.dtype": "dtype",
    "output.fill_value": "fill_value", "compute.chunks": "chunks",
}


def _kind(x: Any) -> str:
    if labelled.is_xarray(x):
        return "xarray"
    if type(x).__module__.startswith("dask") and hasattr(x, "chunks"):
        return "dask"
    return "numpy"


def window_reduce(
    op: str,
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
        Input name -> its nodata value (those pixels are missing; NaN always is).  Every key
        must be an input name.
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
    inputs = _as_inputs(inputs)
    size, axes = _check_size(size, axes)
    stats = _check_reduce(reduce)
    bnd, cval = _check_boundary(boundary, mode, cval)
    weights, size = _check_footprint(footprint, weights, size)
    _check_types(chunks, axes, fill_value)
    if nodata is not None:
        if not isinstance(nodata, Mapping):
            raise ArgumentTypeError(f"must be a mapping of input names to values, got {type(nodata).__name__}", where="nodata")
        for k in nodata:
            if k not in inputs:
                raise ConfigError(f"no input named {k!r} (inputs: {', '.join(map(str, inputs))})", where="nodata")

    arrays = {n: x for n, x in inputs.items()}
    for n, x in arrays.items():
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            try:
                arrays[n] = np.asarray(x)
            except (TypeError, ValueError):
                raise ArgumentTypeError(f"is a {type(x).__name__}, not an array", where=f"inputs['{n}']") from None
            if arrays[n].dtype == object:
                raise ArgumentTypeError(f"is a {type(x).__name__}, not an array", where=f"inputs['{n}']")
    names = parse_expression(op, {n: np.dtype(x.dtype) for n, x in arrays.items()}).names
    data, dims = labelled.align(names, arrays)
    if dims is not None:
        from . import accessor  # noqa: F401 - registers da.pipeline for later calls
    lazy = any(_kind(data[n]) == "dask" for n in names)
    if not lazy:
        data = {n: np.asarray(data[n]) for n in names}

    kw = dict(reduce=stats, boundary=bnd, cval=cval, shape=shape, weights=weights, axes=axes,
              nodata=nodata, dtype=dtype, fill_value=fill_value)
    try:
        data, plan = _plan_narrowing(op, {n: data[n] for n in names}, dims, lazy, size, chunks, kw, arrays)
    except ConfigError as e:
        if footprint is None or "weights" not in (e.where or "") + e.message:
            raise
        raise type(e)(e.message.replace("weights", "footprint"), where=(e.where or "").replace("weights", "footprint")) from None

    if lazy:
        import dask.array as da

        from . import ops

        darrays = {n: (data[n] if _kind(data[n]) == "dask" else da.from_array(np.asarray(data[n]))) for n in plan.expr.names}
        result = ops.build_stats(plan, darrays)
    else:
        result = _compute_numpy(plan, {n: data[n] for n in plan.expr.names})

    if dims is None:
        return result if plan.multi else result[plan.stats[0]]
    wrapped = {st: labelled.wrap(r, plan, dims, names, arrays, op, st) for st, r in result.items()}
    if not plan.multi:
        return wrapped[plan.stats[0]]
    import xarray as xr

    return xr.Dataset({st: w.rename(st) for st, w in wrapped.items()})


# ------------------------------------------------------------------------------ arguments


def _as_inputs(inputs: Any) -> dict[str, Any]:
    if labelled.is_dataset(inputs):
        out = {str(k): inputs[k] for k in inputs.data_vars}
    elif isinstance(inputs, Mapping):
        out = dict(inputs)
    else:
        raise ArgumentTypeError(
            f"must be a mapping of names to arrays or an xarray Dataset, got {type(inputs).__name__}", where="inputs"
        )
    if not out:
        raise ConfigError("must not be empty (a mapping of names to arrays)", where="inputs")
    for n, x in out.items():
        if not isinstance(n, str):
            raise ArgumentTypeError(f"names must be strings, got {n!r}", where="inputs")
        if labelled.is_dataset(x):
            first = next(iter(x.data_vars), "var")
            raise ArgumentTypeError(
                f"is an xarray Dataset; pass one variable (inputs={{'{n}': ds['{first}']}}) or the "
                "whole Dataset as inputs (its variables are the names)",
                where=f"inputs['{n}']",
            )
    return out


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _check_size(size: Any, axes: Any) -> tuple[Any, Any]:
    if size is None or _is_int(size):
        return size, axes
    if isinstance(size, Mapping):
        keys, values = list(size), list(size.values())
        if axes is not None and list(axes) != keys:
            raise ConfigError(f"names the window axes {keys}, axes names {list(axes)}; give one of them", where="size")
        size, axes = values, keys
    if isinstance(size, (str, bytes)) or not isinstance(size, Sequence | np.ndarray) or not all(map(_is_int, size)):
        raise ArgumentTypeError(
            f"must be an int, a sequence of ints or a mapping of dim names to ints, got {size!r}", where="size"
        )
    return [int(s) for s in size], axes


def _check_types(chunks: Any, axes: Any, fill_value: Any) -> None:
    if not (chunks == "auto" if isinstance(chunks, str) else _is_int(chunks) or (
            isinstance(chunks, Sequence | np.ndarray) and all(map(_is_int, chunks)))):
        raise ArgumentTypeError(f"must be 'auto', an int or one int per window axis, got {chunks!r}", where="chunks")
    if axes is not None and (isinstance(axes, (str, bytes)) or not isinstance(axes, Sequence | np.ndarray)
                             or not all(isinstance(a, str) or _is_int(a) for a in axes)):
        raise ArgumentTypeError(f"must be a sequence of axis numbers or dim names, got {axes!r}", where="axes")
    if fill_value is not None and (isinstance(fill_value, bool) or not isinstance(fill_value, (int, float, np.integer, np.floating))):
        raise ArgumentTypeError(f"must be a number, got {fill_value!r}", where="fill_value")


def _check_reduce(reduce: Any) -> tuple[str, ...]:
    items = [reduce] if isinstance(reduce, str) or callable(reduce) else reduce
    if not isinstance(items, Sequence | tuple):
        raise ArgumentTypeError(f"must be a reducer name or a list of them, got {reduce!r}", where="reduce")
    out = []
    for r in items:
        if callable(r):
            name = getattr(r, "__name__", "")
            guess = re.sub(r"^(nan|a)", "", name)
            hint = f"; use reduce={guess!r}" if guess in REDUCERS else ""
            raise ArgumentTypeError(f"must be a reducer name ({', '.join(REDUCERS)}), got the function {name or repr(r)}{hint}",
                                    where="reduce")
        if not isinstance(r, str):
            raise ArgumentTypeError(f"must be a reducer name ({', '.join(REDUCERS)}), got {r!r}", where="reduce")
        out.append(r)
    return tuple(out)


def _check_boundary(boundary: Any, mode: Any, cval: Any) -> tuple[str, Any]:
    if mode is not None:
        if boundary != "shrink":
            raise ConfigError("give either boundary or mode (scipy's name for it), not both", where="mode")
        if mode not in SCIPY_MODES:
            raise ConfigError(f"unknown mode {mode!r} (available: {', '.join(SCIPY_MODES)})", where="mode")
        boundary = SCIPY_MODES[mode]
    if not isinstance(boundary, str):
        raise ArgumentTypeError(f"must be a string, got {boundary!r}", where="boundary")
    if isinstance(cval, (float, np.floating)) and math.isnan(cval) and boundary == "constant":
        return "shrink", 0  # outside pixels are missing, as NaN pixels are: the shrunk window
    return boundary, cval


def _check_footprint(footprint: Any, weights: Any, size: Any) -> tuple[Any, Any]:
    if footprint is None:
        return weights, size
    if weights is not None:
        raise ConfigError("give either footprint or weights, not both", where="footprint")
    fp = np.asarray(footprint)
    if fp.ndim != 2 or fp.size == 0 or not (fp.dtype == bool or np.isin(fp, (0, 1)).all()):
        raise ConfigError(f"must be a non-empty 2-D boolean matrix, got shape {fp.shape} dtype {fp.dtype}", where="footprint")
    if size is not None and _is_int(size) and (int(size),) * 2 != fp.shape or (
        size is not None and not _is_int(size) and tuple(size) != fp.shape
    ):
        raise ConfigError(f"size {size} differs from the footprint's shape {list(fp.shape)}", where="size")
    if fp.all():  # the whole rectangle: a plain window (var and std too)
        return None, list(fp.shape)
    return fp.astype(int).tolist(), None


def _api_error(e: PipelineError) -> PipelineError:
    """``e`` with config keys replaced by the API arguments (``window.size`` -> ``size``)."""
    where = e.where or ""
    m = re.fullmatch(r"inputs\.(.+)\.nodata", where)
    if m:
        where = f"nodata['{m.group(1)}']"
    elif where.startswith("output.dtype."):
        where = f"dtype['{where.removeprefix('output.dtype.')}']"
    elif where.startswith("inputs.") and where[7:]:
        where = f"inputs['{where[7:]}']"
    else:
        where = _API_NAMES.get(where, where)
    message = e.message
    for key, arg in _API_NAMES.items():
        message = message.replace(key, arg)
    if (where, message) == (e.where or "", e.message):
        return e
    new = type(e)(message, where=where or None)
    return new


def _plan(op: str, specs: Mapping[str, ArraySpec], size: Any, chunks: Any, kw: Mapping[str, Any]):
    try:
        return make_plan(op, specs, size=size, chunks=chunks, **kw)
    except PipelineError as e:
        new = _api_error(e)
        if new is e:
            raise
        raise new from None


# ------------------------------------------------------------------------------ plan and int64


def _specs(data: Mapping[str, Any], dims: tuple[str, ...] | None, lazy: bool) -> dict[str, ArraySpec]:
    specs = {}
    for name, x in data.items():
        chunks_of = None
        if lazy and _kind(x) == "dask":
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
        for note in plan.notes:
            warnings.warn(f"window_reduce: the input's {note}", stacklevel=4)
    return plan


def _axis_ids(axes, shape, specs):
    from .plan import window_axes

    dims = next((s.dims for s in specs.values() if s.dims and len(s.dims) == len(shape)), None)
    return window_axes(axes, len(shape), dims, len(axes))


def _wide(x: Any) -> bool:
    return np.dtype(x.dtype).kind in "iu" and np.dtype(x.dtype).itemsize == 8


def _plan_narrowing(op, data, dims, lazy, size, chunks, kw, originals):
    """The plan on the inputs as they are; when 8-byte integer inputs make it refuse (window
    sums beyond int64) or compute inexactly (an integer expression promoted to float64), the
    plan on those inputs narrowed to their actual value range, where that range is cheap to
    know; with a float ``dtype``, a refusal falls back to float64 inputs."""
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
    if _kind(x) != "dask":
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
    if _kind(x) == "dask" and x.nbytes > SCAN_BYTES:
        return x.map_blocks(_checked_cast, dt, lo, hi, name, dtype=dt)
    return x.astype(dt)


def _compute_numpy(plan, arrays):
    """In memory: one block (the default), or the blocks asked for, computed one by one."""
    from . import ops

    if all(len(c) == 1 for c in plan.in_chunks):
        return ops.compute_stats(plan, arrays, (0,) * plan.ndim)
    import dask
    import dask.array as da

    lazy = ops.build_stats(plan, {n: da.from_array(a) for n, a in arrays.items()})
    return dict(zip(lazy, dask.compute(*lazy.values(), scheduler="sync")))


def run(config: str | os.PathLike[str] | Mapping[str, Any]) -> RunResult:
    """Run a config given as a YAML path or a mapping (relative paths resolve against the
    file's folder, or the current directory for a mapping); returns the run's summary."""
    from . import runner

    return runner.run(config)
