"""The arguments of :func:`pipeline.window_reduce`: their types checked, translated into the
plan's keywords (scipy's ``mode`` and ``footprint``, ``size`` as a mapping), and the plan's
errors renamed from config keys to the arguments a caller passed (``output.dtype`` -> ``dtype``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence, Sized
from typing import Any

import numpy as np

from pipeline.api import labelled
from pipeline.errors import ArgumentTypeError, ConfigError, PipelineError
from pipeline.plan.dtypes import check_64_bits
from pipeline.plan.registry import REDUCER_NAMES as REDUCERS
from pipeline.plan.window import MAX_WINDOW

SCIPY_MODES = {"reflect": "reflect", "grid-mirror": "reflect", "constant": "constant", "grid-constant": "constant",
               "nearest": "nearest", "mirror": "mirror", "wrap": "wrap", "grid-wrap": "wrap"}

#: config keys -> the API argument a user passed
_API_NAMES = {
    "window.size": "size", "window.reduce": "reduce", "window.boundary": "boundary", "window.shape": "shape",
    "window.cval": "cval", "window.weights": "weights", "window.axes": "axes", "window.origin": "origin", "output.dtype": "dtype",
    "output.fill_value": "fill_value", "compute.chunks": "chunks",
}
#: what the plan says in config terms (YAML values, keys) -> the same in the API's terms; applied
#: before the key names above
_API_PHRASES = {
    "window.shape: disk": 'shape="disk"',
    "required key is missing": "is required unless weights or footprint is given",
}


def plan_arguments(
    inputs: Mapping[str, Any],
    *,
    size: Any,
    reduce: Any,
    boundary: Any,
    chunks: Any,
    cval: Any,
    shape: Any,
    weights: Any,
    axes: Any,
    nodata: Any,
    dtype: Any,
    fill_value: Any,
    mode: Any,
    footprint: Any,
    origin: Any = 0,
) -> tuple[Any, Any, dict[str, Any]]:
    """``size``, ``chunks`` and the other keywords of :func:`pipeline.plan.planner.make_plan`, from
    :func:`~pipeline.window_reduce`'s arguments (checked in the order they are documented)."""
    size, axes = _check_size(size, axes)
    stats = _check_reduce(reduce)
    bnd, cval = _check_boundary(boundary, mode, cval)
    weights, size = _check_footprint(footprint, weights, size)
    _check_limits(size, weights, cval, fill_value, "footprint" if footprint is not None else None)
    _check_types(chunks, axes, fill_value)
    _check_origin(origin)
    _check_nodata(nodata, inputs)
    kw = dict(reduce=stats, boundary=bnd, cval=cval, shape=shape, weights=weights, axes=axes,
              nodata=nodata, dtype=dtype, fill_value=fill_value, origin=origin if _is_int(origin) else [int(o) for o in origin])
    return size, chunks, kw


def as_inputs(inputs: Any) -> dict[str, Any]:
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


def as_arrays(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs with lists and other array-likes as numpy arrays (arrays are kept as given)."""
    arrays = dict(inputs)
    for n, x in arrays.items():
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            try:
                arrays[n] = np.asarray(x)
            except (TypeError, ValueError):
                raise ArgumentTypeError(f"is a {type(x).__name__}, not an array", where=f"inputs['{n}']") from None
            if arrays[n].dtype == object:
                raise ArgumentTypeError(f"is a {type(x).__name__}, not an array", where=f"inputs['{n}']")
    return arrays


def _check_nodata(nodata: Any, inputs: Mapping[str, Any]) -> None:
    if nodata is None:
        return
    if not isinstance(nodata, Mapping):
        raise ArgumentTypeError(f"must be a mapping of input names to values, got {type(nodata).__name__}", where="nodata")
    for k in nodata:
        if k not in inputs:
            raise ConfigError(f"no input named {k!r} (inputs: {', '.join(map(str, inputs))})", where="nodata")


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


def _check_limits(size: Any, weights: Any, cval: Any, fill_value: Any, footprint: str | None) -> None:
    """The bounds of configs (:data:`~pipeline.plan.window.MAX_WINDOW` per window side, integers in 64
    bits): a huge window fails here, not after minutes of work or an allocation of gigabytes."""
    sides = [] if size is None else [size] if _is_int(size) else list(size)
    if any(s > MAX_WINDOW for s in sides):
        raise ConfigError(f"{max(sides)} is larger than the largest window side, {MAX_WINDOW}", where=footprint or "size")
    if isinstance(weights, Sequence | np.ndarray) and (
        len(weights) > MAX_WINDOW or any(isinstance(r, Sized) and len(r) > MAX_WINDOW for r in weights)
    ):
        raise ConfigError(f"is larger than {MAX_WINDOW} per side, the largest window side", where=footprint or "weights")
    for where, value in (("cval", cval), ("fill_value", fill_value)):
        try:
            check_64_bits(value)
        except ValueError as e:
            raise ConfigError(str(e), where=where) from None


def _check_types(chunks: Any, axes: Any, fill_value: Any) -> None:
    if not (chunks == "auto" if isinstance(chunks, str) else _is_int(chunks) or (
            isinstance(chunks, Sequence | np.ndarray) and all(map(_is_int, chunks)))):
        raise ArgumentTypeError(f"must be 'auto', an int or one int per window axis, got {chunks!r}", where="chunks")
    if axes is not None and (isinstance(axes, (str, bytes)) or not isinstance(axes, Sequence | np.ndarray)
                             or not all(isinstance(a, str) or _is_int(a) for a in axes)):
        raise ArgumentTypeError(f"must be a sequence of axis numbers or dim names, got {axes!r}", where="axes")
    if fill_value is not None and (isinstance(fill_value, bool) or not isinstance(fill_value, (int, float, np.integer, np.floating))):
        raise ArgumentTypeError(f"must be a number, got {fill_value!r}", where="fill_value")


def _check_origin(origin: Any) -> None:
    if not (_is_int(origin) or (isinstance(origin, Sequence | np.ndarray) and not isinstance(origin, (str, bytes))
                                and len(origin) > 0 and all(map(_is_int, origin)))):
        raise ArgumentTypeError(f"must be an int or one int per window axis, got {origin!r}", where="origin")


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
    if not fp.any():
        raise ConfigError("must select at least one pixel (all are zero)", where="footprint")
    return fp.astype(int).tolist(), size  # all True: the plan makes it the plain window (var and std too)


def api_error(e: PipelineError) -> PipelineError:
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
    for config_text, api_text in (*_API_PHRASES.items(), *_API_NAMES.items()):
        message = message.replace(config_text, api_text)
    if (where, message) == (e.where or "", e.message):
        return e
    new = type(e)(message, where=where or None)
    return new


def footprint_error(e: ConfigError) -> ConfigError | None:
    """``e`` about ``weights`` (which a ``footprint`` became) as an error about ``footprint``;
    None when ``e`` is not about them."""
    if "weights" not in (e.where or "") + e.message:
        return None
    return type(e)(e.message.replace("weights", "footprint"), where=(e.where or "").replace("weights", "footprint"))
