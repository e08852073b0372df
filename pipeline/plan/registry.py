"""One table per concept: the reducers and the boundaries, and the one rule fitting a value range
into an integer dtype.

Everything that depends on *which* reducer or boundary is asked for reads it from here: the
config's and the API's allowed values (checked against these tables by ``tests/test_plan.py``, as
are the README's lists), the plan's validation and per-statistic dtype rules, the padding of the
numpy reference path and the per-pixel cost of :attr:`pipeline.plan.planner.Plan.task_bytes`.  An
unknown name is refused by :func:`reducer` / :func:`boundary`; it is never treated like another.

Nothing here touches zarr or dask.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from pipeline.errors import ConfigError
from pipeline.expr import intervals

#: np.pad's modes that the padding boundaries use
PadMode = Literal["symmetric", "reflect", "edge", "wrap"]

INT16 = np.dtype("int16")
INT32 = np.dtype("int32")
INT64 = np.dtype("int64")
FLOAT64 = np.dtype("float64")


def fit(lo: int, hi: int, first: np.dtype | None = None) -> np.dtype | None:
    """``first`` (an integer dtype) when it holds ``[lo, hi]``, else the smallest of
    int16/int32/int64 that does; None when none does (:func:`pipeline.expr.intervals.fit`, the
    one range-to-dtype rule, over those candidates)."""
    lead = (np.dtype(first),) if first is not None and np.dtype(first).kind in "iu" else ()
    return intervals.fit(lo, hi, lead + (INT16, INT32, INT64))


def sum_dtype(bounds: tuple[int, int] | None, area: int) -> tuple[np.dtype, tuple[int, int] | None]:
    """Output dtype of a window sum of ``area`` values each within ``bounds``.

    The rule: a float expression gives float64; an integer (or boolean) expression with exact
    bounds ``[l, h]`` gives sums within ``[min(l, area*l), max(h, area*h)]`` (a truncated window
    holds between 1 and ``area`` values); the output is int32 when that range fits int32, else
    int64; beyond int64 the config is refused.
    """
    if bounds is None:
        return FLOAT64, None
    lo, hi = bounds
    out = (min(lo, area * lo), max(hi, area * hi))
    for dt in (INT32, INT64):
        info = np.iinfo(dt)
        if info.min <= out[0] and out[1] <= info.max:
            return dt, out
    raise ConfigError(
        f"window sums can reach {out[1] if abs(out[1]) >= abs(out[0]) else out[0]}, beyond int64; "
        "use a smaller window or scale the expression",
        where="op",
    )


@dataclass(frozen=True)
class Values:
    """What the per-statistic dtype rules need to know about the values a window sees."""

    expr_dtype: np.dtype  #: the expression's dtype
    bounds: tuple[int, int] | None  #: exact bounds of integer values (cval included), None for float
    area: int  #: pixels in a whole window
    boundary: str
    weights: tuple[tuple[Any, ...], ...] | None = None  #: window.weights, if any


def _count(v: Values) -> tuple[np.dtype, tuple[int, int] | None]:
    return INT32, (0, v.area)


def _floating(v: Values) -> tuple[np.dtype, tuple[int, int] | None]:
    return FLOAT64, None


def _sum(v: Values) -> tuple[np.dtype, tuple[int, int] | None]:
    if v.weights is None:
        return sum_dtype(v.bounds, v.area)
    ws = [w for row in v.weights for w in row]
    if v.bounds is None or not all(isinstance(w, int) or float(w).is_integer() for w in ws):
        return FLOAT64, None
    lo, hi = v.bounds
    ints = [int(w) for w in ws]
    bounds = (sum(min(0, w * lo, w * hi) for w in ints), sum(max(0, w * lo, w * hi) for w in ints))
    dt = fit(*bounds, INT32)
    if dt is None:
        raise ConfigError(f"weighted sums can reach {bounds}, beyond int64", where="window.weights")
    return dt, bounds


def _extreme(v: Values) -> tuple[np.dtype, tuple[int, int] | None]:
    padded_const = v.boundary == "constant"
    if v.bounds is None:
        return (v.expr_dtype if v.expr_dtype.kind == "f" and not padded_const else FLOAT64), None
    dt = fit(*v.bounds, v.expr_dtype if v.expr_dtype.kind in "iu" else None)
    if dt is None:  # pragma: no cover - expression bounds always fit int64
        dt = FLOAT64
    if v.expr_dtype.kind == "b" and not padded_const:
        dt = v.expr_dtype
    return dt, v.bounds


@dataclass(frozen=True)
class Reducer:
    name: str
    #: output dtype and exact integer bounds (None for float) from the values a window sees
    dtype: Callable[[Values], tuple[np.dtype, tuple[int, int] | None]]
    with_weights: bool = True  #: available with window.weights
    empty_fill: bool = True  #: an empty window (no valid pixel) gets the fill value (count: 0)
    accumulates: bool = False  #: its dtype is the plan's accumulator dtype (sum)
    #: the compiled kernel family computing it: running sums of the values (and their squares),
    #: or running extremes
    family: Literal["moments", "extremes"] = "moments"


@dataclass(frozen=True)
class Boundary:
    name: str
    pads: bool  #: windows at the edges see values outside the image (padding)
    np_mode: PadMode | None = None  #: np.pad's mode for the numpy reference path (None: constant/none)
    scipy_mode: str | None = None  #: scipy.ndimage's mode giving the same values
    shrinks: bool = False  #: the output is ``W - 1`` smaller per window axis
    periodic: bool = False  #: the halo comes from the opposite image edge

    @property
    def fills(self) -> bool:
        """Windows at the edges see a constant (``cval``) outside the image."""
        return self.pads and self.np_mode is None


REDUCERS: dict[str, Reducer] = {
    r.name: r
    for r in (
        Reducer("sum", _sum, accumulates=True),
        Reducer("mean", _floating),
        Reducer("min", _extreme, family="extremes"),
        Reducer("max", _extreme, family="extremes"),
        Reducer("var", _floating, with_weights=False),
        Reducer("std", _floating, with_weights=False),
        Reducer("count", _count, empty_fill=False),
    )
}

BOUNDARIES: dict[str, Boundary] = {
    b.name: b
    for b in (
        Boundary("shrink", pads=False),
        Boundary("valid", pads=False, shrinks=True),
        Boundary("constant", pads=True, scipy_mode="constant"),
        Boundary("reflect", pads=True, np_mode="symmetric", scipy_mode="reflect"),
        Boundary("mirror", pads=True, np_mode="reflect", scipy_mode="mirror"),
        Boundary("nearest", pads=True, np_mode="edge", scipy_mode="nearest"),
        Boundary("wrap", pads=True, np_mode="wrap", scipy_mode="wrap", periodic=True),
    )
}

REDUCER_NAMES: tuple[str, ...] = tuple(REDUCERS)
BOUNDARY_NAMES: tuple[str, ...] = tuple(BOUNDARIES)


def reducers(names: Sequence[str]) -> tuple[Reducer, ...]:
    """The registry entries of ``names``; an unknown, repeated or missing reducer is refused."""
    if not names:
        raise ConfigError("needs at least one reducer", where="window.reduce")
    for st in names:
        if st not in REDUCERS:
            raise ConfigError(f"unknown reducer {st!r} (available: {', '.join(REDUCER_NAMES)})", where="window.reduce")
    if len(set(names)) != len(names):
        raise ConfigError(f"reducers must not repeat, got {list(names)}", where="window.reduce")
    return tuple(REDUCERS[st] for st in names)


def boundary(name: str) -> Boundary:
    """The registry entry of ``name``; an unknown boundary is refused."""
    if name not in BOUNDARIES:
        raise ConfigError(f"unknown boundary {name!r} (available: {', '.join(BOUNDARY_NAMES)})", where="window.boundary")
    return BOUNDARIES[name]


def window_values(expr_bounds: tuple[int, int] | None, bnd: Boundary, cval: float) -> tuple[int, int] | None:
    """Exact bounds of the values a window sees: the expression's, plus ``cval`` for boundary
    'constant'; None when they are float (a float expression or a fractional ``cval``)."""
    if expr_bounds is None or not bnd.fills:
        return expr_bounds
    if isinstance(cval, (float, np.floating)) and not float(cval).is_integer():
        return None
    c = int(cval)
    return min(expr_bounds[0], c), max(expr_bounds[1], c)
