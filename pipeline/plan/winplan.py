"""The plan's decisions for window expressions (``op`` using window functions, or several named
results): the results parsed with their window terms typed, the statistics each distinct
pointwise expression needs, and each result's output dtype and fill value.

A result keeps its exact integer type (e.g. ``sum(a) - sum(b)`` on integer inputs) when no window
can leave it undefined; otherwise it is float64 with NaN where a window has too few valid pixels
(:attr:`~pipeline.expr.windowfuncs.WindowExpr.min_count`) or the centre pixel is missing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from pipeline.errors import ConfigError
from pipeline.expr import Expr, parse_expression
from pipeline.expr.windowfuncs import TermTyping, WindowExpr, gaussian_window, parse_window_expression, uses_window_functions
from pipeline.plan.registry import FLOAT64, Boundary

#: the name of the one result of an ``op`` given as a single formula
SINGLE = "result"


def is_window_op(op: object) -> bool:
    """Whether ``op`` takes the window-expression plan: several named results, or window functions."""
    return isinstance(op, Mapping) or uses_window_functions(op)


def named_ops(op: str | Mapping[str, str]) -> dict[str, str]:
    """The results' names and formulas (one formula: :data:`SINGLE`); names are identifiers."""
    if isinstance(op, str):
        return {SINGLE: op}
    if not op:
        raise ConfigError("needs at least one named result", where="op")
    out = {}
    for name, text in op.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(f"result name {name!r} must be a Python-style identifier", where="op")
        if not isinstance(text, str):
            raise ConfigError(f"must be a formula (a string), got {type(text).__name__}", where=f"op.{name}")
        out[name] = text
    return out


def parse_results(ops: Mapping[str, str], dtypes: Mapping[str, np.dtype], typing: TermTyping, single: bool) -> dict[str, WindowExpr]:
    """Every result parsed over the inputs' ``dtypes`` (errors name ``op`` or ``op.<name>``)."""
    return {name: parse_window_expression(text, dtypes, typing, where="op" if single else f"op.{name}") for name, text in ops.items()}


def window_of(op: str | Mapping[str, str], dtypes: Mapping[str, np.dtype], size: Any, shape: str, weights: Any) -> tuple[Any, Any]:
    """``window.size`` and ``window.weights`` for ``op``: as given, unless an ``ssim`` asks for
    scikit-image's Gaussian window, which then is the one window of every term (its weights
    matrix; a differing ``window.size``, ``window.weights``/``shape``, or ssims asking for
    different windows, are refused)."""
    asked = {g for r in parse_results(named_ops(op), dtypes, TermTyping(), isinstance(op, str)).values() for g in r.gaussian}
    sigmas = {g for g in asked if g is not None}
    if not sigmas:
        return size, weights
    if len(asked) > 1:
        shown = ", ".join("a plain window" if g is None else f"gaussian_weights=1, sigma={g:g}" for g in sorted(asked, key=str))
        raise ConfigError(f"the ssims ask for different windows ({shown}); every window term of an op shares one window", where="op")
    sigma = next(iter(sigmas))
    wmat = gaussian_window(sigma)
    w = wmat.shape[0]
    who = f"ssim(..., gaussian_weights=1, sigma={sigma:g})"
    if weights is not None:
        raise ConfigError(f"{who} sets the window (its {w} x {w} Gaussian weights); leave out window.weights", where="window.weights")
    if shape != "rect":
        raise ConfigError(f"{who} sets the window (its {w} x {w} Gaussian weights); leave out window.shape: {shape}", where="window.shape")
    sides = [] if size is None else [size] if isinstance(size, int | np.integer) else list(size)
    if sides and (len(sides) > 2 or any(s != w for s in sides)):
        raise ConfigError(f"{who} uses the {w} x {w} Gaussian window, window.size is {size} (leave it out, or give {w})", where="window.size")
    return None, wmat.tolist()


def typing_for(area: int, weighted: bool, bnd: Boundary, cval: float) -> TermTyping:
    return TermTyping(area=area, weighted=weighted, cval=cval if bnd.fills else None)


def stats_per_expression(results: Mapping[str, WindowExpr]) -> dict[str, tuple[Expr, tuple[str, ...]]]:
    """Per distinct pointwise expression (by its text): the expression and the statistics its
    terms need, ``count`` always among them (the valid pixels of every window)."""
    out: dict[str, tuple[Expr, list[str]]] = {}
    for res in results.values():
        for term in res.terms:
            expr, stats = out.setdefault(term.expr.text, (term.expr, []))
            if term.stat not in stats:
                stats.append(term.stat)
    if out and not any("count" in s for _, s in out.values()):
        next(iter(out.values()))[1].append("count")
    return {k: (e, tuple(s)) for k, (e, s) in out.items()}


def op_names(op: str | Mapping[str, str], dtypes: Mapping[str, np.dtype]) -> tuple[str, ...]:
    """The input names ``op`` uses (any ``op``: a pointwise one, window functions, named results)."""
    if not is_window_op(op):
        assert not isinstance(op, Mapping)
        return parse_expression(op, dtypes).names
    return all_names(parse_results(named_ops(op), dtypes, TermTyping(), isinstance(op, str)))


def all_names(results: Mapping[str, WindowExpr]) -> tuple[str, ...]:
    return tuple(sorted({n for r in results.values() for n in r.names}))


def fewest_valid(area: int, size: tuple[int, ...], lo: tuple[int, ...], hi: tuple[int, ...], bnd: Boundary, rect: bool) -> int:
    """The fewest pixels a window holds when none is missing."""
    if bnd.pads or bnd.shrinks:
        return area
    if not rect:
        return 1
    return math.prod(min(a, b) + 1 for a, b in zip(lo, hi))


def result_dtypes(results: Mapping[str, WindowExpr], missing_possible: bool, fewest: int) -> tuple[dict[str, np.dtype], dict[str, Any], dict[str, Any]]:
    """Per result its output dtype, exact integer bounds and fill value (NaN, or None when no
    window leaves it undefined)."""
    dtypes: dict[str, np.dtype] = {}
    bounds: dict[str, Any] = {}
    fills: dict[str, Any] = {}
    for name, res in results.items():
        undefined = res.min_count > fewest or (missing_possible and (res.min_count > 0 or bool(res.centre)))
        if undefined or res.dtype.kind == "f":
            dtypes[name], bounds[name] = FLOAT64, None
            fills[name] = math.nan if (undefined or missing_possible) else None
        else:
            dtypes[name], bounds[name], fills[name] = res.dtype, res.bounds, None
    return dtypes, bounds, fills


def describe(results: Mapping[str, WindowExpr], parts: Mapping[str, Any]) -> list[str]:
    """``pipeline validate``'s lines for the window terms: each distinct pointwise expression,
    its statistics with their dtypes, and each result's formula."""
    lines = [f"{'result ' + name + ':':<15}{res.text.strip()}" for name, res in results.items()]
    for text, part in parts.items():
        stats = ", ".join(f"{st}({text}) {part.out_dtypes[st]}" for st in part.stats)
        lines.append(f"{'window terms:':<15}{stats}   [{text} computed as {part.expr.dtype}]")
    return lines
