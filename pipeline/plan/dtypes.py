"""Per statistic its output dtype, exact integer bounds and fill value (the registry's rule, room
for a fill value, ``output.dtype``), the inputs' nodata values, and the dtype an input is read
as (:func:`computable`); pure functions."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.errors import ConfigError
from pipeline.plan import registry
from pipeline.plan.registry import FLOAT64, fit

if TYPE_CHECKING:
    from pipeline.expr import Expr
    from pipeline.plan.planner import ArraySpec


def computable(dt: Any) -> np.dtype:
    """The dtype an input of dtype ``dt`` is computed in: native byte order (numba's kernels and
    the expression compiler take no other), and float16 widened to float32 (exactly: every
    float16 is a float32; numba has no float16 arithmetic).  Other dtypes as they are."""
    dt = np.dtype(dt)
    if dt.kind == "f" and dt.itemsize == 2:
        return np.dtype(np.float32)
    if dt.kind in "biuf" and not dt.isnative:
        return dt.newbyteorder("=")
    return dt


def as_computable(x: Any) -> Any:
    """``x`` (a numpy, dask or xarray array) in its :func:`computable` dtype; ``x`` itself when
    it already is."""
    dt = computable(x.dtype)
    return x if dt == x.dtype else x.astype(dt)


def stored_nodata(v: Any, stored: Any) -> Any:
    """Nodata value ``v`` of an input stored as ``stored``, as a pixel of it holds the value: for
    float16 (computed as float32) rounded to float16 first, as numpy compares a float16 array
    with a number (-9999 is -10000 in float16).  Anything else as it is."""
    if np.dtype(stored) != np.float16 or isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        return v
    with np.errstate(over="ignore"):
        return float(np.float16(v))


def _holds(dt: np.dtype, bounds: tuple[int, int] | None, is_float: bool) -> bool:
    """Whether ``dt`` holds every result: integer ``bounds`` exactly, or float results."""
    if is_float:
        return dt.kind == "f"
    assert bounds is not None  # integer results come with their bounds
    lo, hi = bounds
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return info.min <= lo and hi <= info.max
    if dt.kind == "f":
        limit = 2 ** (np.finfo(dt).nmant + 1)
        return -limit <= lo and hi <= limit
    if dt.kind == "b":
        return 0 <= lo and hi <= 1
    return False


def _user_dtype(name: str, stat: str, auto: np.dtype, bounds, is_float: bool, key: str) -> np.dtype:
    try:
        dt = np.dtype(name)
    except TypeError:
        raise ConfigError(f"unknown dtype {name!r}", where=key) from None
    if dt.kind not in "biuf":
        raise ConfigError(f"dtype {dt} is not supported (integer, float or bool)", where=key)
    dt = dt.newbyteorder("=")  # outputs are written and returned in native byte order
    if not _holds(dt, bounds, is_float):
        what = "floating-point results" if is_float else f"results in [{bounds[0]}, {bounds[1]}]"
        raise ConfigError(f"{dt} cannot hold the {stat} {what}; use {auto}", where=key)
    return dt


def check_64_bits(v: Any) -> Any:
    """``v``, where an integer fits in 64 bits; beyond (a 4,000-digit hex literal) ValueError, not
    an overflow later (``cval``, ``fill_value``: configs and the API)."""
    if isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**64:
        raise ValueError(f"an integer of {v.bit_length()} bits does not fit in 64 bits")
    return v


def _nodata_value(v: Any, n: str, dt: np.dtype) -> int | float | np.integer | np.floating | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ConfigError(f"must be a number, got {v!r}", where=f"inputs.{n}.nodata")
    if dt.kind in "iu":
        if isinstance(v, float) and not v.is_integer():
            raise ConfigError(f"{v} is not an integer; {n} is {dt}", where=f"inputs.{n}.nodata")
        info = np.iinfo(dt)
        if not info.min <= int(v) <= info.max:
            raise ConfigError(f"{int(v)} is outside the range of {dt} [{info.min}, {info.max}]", where=f"inputs.{n}.nodata")
        return int(v)
    if isinstance(v, float) and math.isnan(v):
        return None  # NaN is always missing in float inputs
    return v


def plan_nodata(expr: Expr, inputs: Mapping[str, ArraySpec], nodata: Mapping[str, Any] | None) -> tuple[dict[str, Any], bool]:
    """Per used input its checked nodata value (or None), and whether any pixel can be missing
    (NaN in a float input or field, an input's nodata value)."""
    nodata = dict(nodata or {})
    nd_used = {n: _nodata_value(nodata.get(n), n, inputs[n].dtype) for n in expr.names}
    missing_possible = expr.dtype.kind == "f" or any(inputs[n].dtype.kind == "f" or nd_used[n] is not None for n in expr.names)
    return nd_used, missing_possible


def _int_fill(st: str, dt: np.dtype, bounds: tuple[int, int], fill_value) -> tuple[np.dtype, int]:
    """An integer output's dtype and fill value for empty windows: ``fill_value`` (the dtype
    widened to hold it), else the lowest value of an integer dtype that no result can equal."""
    if fill_value is not None:
        if isinstance(fill_value, float) and not float(fill_value).is_integer():
            raise ConfigError(f"{fill_value} is not an integer; the {st} output is integer", where="output.fill_value")
        fill = int(fill_value)
        return fit(min(bounds[0], fill), max(bounds[1], fill), dt) or dt, fill
    cand = fit(*bounds, dt)
    while cand is not None and np.iinfo(cand).min >= bounds[0]:
        cand = fit(int(np.iinfo(cand).min) - 1, bounds[1])
    if cand is None:
        raise ConfigError(f"no integer dtype leaves room for a fill value below {bounds[0]}; set output.fill_value", where="output.fill_value")
    return cand, int(np.iinfo(cand).min)


def plan_dtypes(reds, values: registry.Values, empty_possible: bool, dtype, fill_value):
    """Per statistic its output dtype, exact integer bounds and fill value, plus the sum's
    accumulator dtype: the registry's rule, then room for a fill value when a window can be
    empty (a pixel can be missing), then ``output.dtype`` if given and able to hold the results."""
    stats = [r.name for r in reds]
    user_dt = dtype if isinstance(dtype, Mapping) else ({st: dtype for st in stats} if dtype else {})
    for k in user_dt:
        if k not in stats:
            raise ConfigError(f"{k!r} is not one of the reducers {list(stats)}", where="output.dtype")
    out_dtypes: dict[str, np.dtype] = {}
    stat_bounds: dict[str, tuple[int, int] | None] = {}
    fills: dict[str, Any] = {}
    acc_dtype = FLOAT64
    for r in reds:
        st = r.name
        dt, bounds = r.dtype(values)
        if r.accumulates:
            acc_dtype = dt
        fill: int | float | None = None
        if dt.kind in "iub" and empty_possible and r.empty_fill:
            dt, fill = _int_fill(st, dt, bounds, fill_value)
            bounds = (min(bounds[0], fill), max(bounds[1], fill))
        elif dt.kind == "f" and empty_possible:
            fill = math.nan
        if st in user_dt:
            key = "output.dtype" + (f".{st}" if isinstance(dtype, Mapping) else "")
            dt = _user_dtype(user_dt[st], st, dt, bounds, dt.kind == "f", key)
            if dt.kind == "f" and fill is not None and fill_value is None:
                fill = math.nan
        out_dtypes[st], stat_bounds[st], fills[st] = dt, bounds, fill
    return out_dtypes, stat_bounds, fills, acc_dtype


