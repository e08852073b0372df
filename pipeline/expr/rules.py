"""The typing rules: typed nodes built from typed operands, with exact integer bounds.

An integer operation is computed in the smallest of int16/int32/int64 holding its operands' and
its result's bounds (:func:`~pipeline.expr.intervals.fit`), its result typed by the result's
bounds; beyond int64 it falls back to float64.  Nothing here reads syntax: the parser
(:mod:`pipeline.expr.parse`) checks the text and calls these.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from . import intervals as iv
from .intervals import fit, hull
from .nodes import BOOL, F64, Chain, Clip, Const, Node, Pow, Ufunc, Where, Zeros

__all__ = ["FLOAT_FUNCTIONS", "arithmetic", "call", "compare", "float_op", "int_op", "logical", "power", "sign", "truth"]

FLOAT_FUNCTIONS: dict[str, np.ufunc] = {
    "sqrt": np.sqrt,
    "exp": np.exp,
    "log": np.log,
    "log1p": np.log1p,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "arctan2": np.arctan2,
    "floor": np.floor,
    "ceil": np.ceil,
}

_ARITHMETIC = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.true_divide, "//": np.floor_divide, "%": np.remainder}
_BOUNDS = {"+": iv.add_bounds, "-": iv.sub_bounds, "*": iv.mul_bounds}


def float_op(ufunc: np.ufunc, children: list[Node]) -> Node:
    return Ufunc(ufunc, children, F64, "f", F64, None)


def int_op(ufunc: np.ufunc, children: list[Node], result: tuple[int, int]) -> Node:
    """An integer operation with exact result bounds ``result`` (float64 beyond int64)."""
    cdt = fit(*hull(result, *(c.ibounds for c in children)))
    dtype = fit(*result)
    if cdt is None or dtype is None:  # result is inside the hull: fits whenever cdt does
        return float_op(ufunc, children)
    return Ufunc(ufunc, children, cdt, "i", dtype, result)


def logical(ufunc: np.ufunc, children: list[Node]) -> Node:
    """A boolean operation on boolean operands (``& | ~``)."""
    return Ufunc(ufunc, children, None, "b", BOOL, None)


def arithmetic(symbol: str, left: Node, right: Node) -> Node:
    """``left <symbol> right`` for one of ``+ - * / // %``."""
    ufunc = _ARITHMETIC[symbol]
    if symbol == "/" or left.kind == "f" or right.kind == "f":
        return float_op(ufunc, [left, right])
    if symbol in ("//", "%"):
        if not isinstance(right, Const) or right.kind not in "bi" or int(right.py) == 0:
            return float_op(ufunc, [left, right])
        d = int(right.py)
        rule = iv.floordiv_bounds if symbol == "//" else iv.mod_bounds
        return int_op(ufunc, [left, right], rule(*left.ibounds, d))
    return int_op(ufunc, [left, right], _BOUNDS[symbol](left.ibounds, right.ibounds))


def power(base: Node, n: float) -> Node:
    """``base ** n`` for a literal exponent ``n``."""
    if base.kind in "bi" and isinstance(n, int) and n >= 0:
        result = iv.pow_bounds(*base.ibounds, n)
        cdt = fit(*hull(result, base.ibounds))
        dtype = fit(*result)
        if cdt is not None and dtype is not None:  # result is inside the hull: fits whenever cdt does
            return Pow(base, n, cdt, "i", dtype, result)
    return Pow(base, n, F64, "f", F64, None)


def sign(operand: Node, negate: bool) -> Node:
    """Unary ``-`` (``negate``) or ``+``; signed literals are folded."""
    if isinstance(operand, Const):
        value = operand.py
        if isinstance(value, bool):
            value = int(value)
        return Const(-value if negate else value)
    ufunc = np.negative if negate else np.positive
    if operand.kind == "f":
        return float_op(ufunc, [operand])
    return int_op(ufunc, [operand], iv.neg_bounds(operand.ibounds) if negate else operand.ibounds)


def _compare_dtype(left: Node, right: Node) -> np.dtype | None:
    """The dtype to compare two operands in (None: as they are)."""
    if left.kind == "b" and right.kind == "b":
        return None
    if left.kind == "f" or right.kind == "f":
        return F64
    if np.result_type(left.dtype, right.dtype).kind in "biu":
        return None  # numpy compares these exactly in a common integer type
    cdt = fit(*hull(left.ibounds, right.ibounds))
    return cdt if cdt is not None else F64


def compare(operands: list[Node], ufuncs: list[np.ufunc]) -> Node:
    """``x0 op0 x1 op1 x2 ...`` (a chain means the conjunction of its pairs)."""
    cdts = [_compare_dtype(a, b) for a, b in itertools.pairwise(operands)]
    if len(ufuncs) == 1:
        return Ufunc(ufuncs[0], operands, cdts[0], "b", BOOL, None)
    return Chain(operands, ufuncs, cdts)


def truth(node: Node) -> Node:
    """A boolean node: ``node`` itself, or ``node != 0``."""
    if node.kind == "b":
        return node
    zero = Const(0.0 if node.kind == "f" else 0)
    return Ufunc(np.not_equal, [node, zero], None, "b", BOOL, None)


# ----------------------------------------------------------------------------------- functions


def _isnan(x: Node) -> Node:
    if x.kind == "f":
        return logical(np.isnan, [x])
    return Zeros(x.names)


def _abs(x: Node) -> Node:
    if x.kind == "f":
        return float_op(np.absolute, [x])
    return int_op(np.absolute, [x], iv.abs_bounds(x.ibounds))


def _extremum(ufunc: np.ufunc, pick: Callable[[int, int], int]) -> Callable[[Node, Node], Node]:
    def rule(x: Node, y: Node) -> Node:
        if x.kind == "b" and y.kind == "b":
            return Ufunc(ufunc, [x, y], BOOL, "b", BOOL, None)
        if x.kind == "f" or y.kind == "f":
            return float_op(ufunc, [x, y])
        result = (pick(x.ibounds[0], y.ibounds[0]), pick(x.ibounds[1], y.ibounds[1]))
        return int_op(ufunc, [x, y], result)

    return rule


def _clip(x: Node, lo: Node, hi: Node) -> Node:
    args = [x, lo, hi]
    if all(a.kind == "b" for a in args):
        return Clip(args, BOOL, "b", BOOL, None)
    if any(a.kind == "f" for a in args):
        return Clip(args, F64, "f", F64, None)
    result = iv.clip_bounds(x.ibounds, lo.ibounds, hi.ibounds)
    cdt = fit(*hull(result, *(a.ibounds for a in args)))
    dtype = fit(*result)
    if cdt is None or dtype is None:  # result is inside the hull: fits whenever cdt does
        return Clip(args, F64, "f", F64, None)
    return Clip(args, cdt, "i", dtype, result)


def _where(cond: Node, x: Node, y: Node) -> Node:
    cond = truth(cond)
    if x.kind == "b" and y.kind == "b":
        return Where(cond, x, y, "b", BOOL, None)
    if x.kind != "f" and y.kind != "f":
        result = hull(x.ibounds, y.ibounds)
        dtype = fit(*result)
        if dtype is not None:
            return Where(cond, x, y, "i", dtype, result)
    return Where(cond, x, y, "f", F64, None)


_FUNCTION_RULES: dict[str, Callable[..., Node]] = {
    "abs": _abs,
    "isnan": _isnan,
    "minimum": _extremum(np.minimum, min),
    "maximum": _extremum(np.maximum, max),
    "clip": _clip,
    "where": _where,
}


def call(fname: str, args: list[Node]) -> Node:
    """The typed call of the whitelisted function ``fname`` (arity already checked)."""
    if fname in FLOAT_FUNCTIONS:
        return float_op(FLOAT_FUNCTIONS[fname], args)
    return _FUNCTION_RULES[fname](*args)


#: Every function with a typing rule (the parser's whitelist must name exactly these).
FUNCTION_NAMES = frozenset(FLOAT_FUNCTIONS) | frozenset(_FUNCTION_RULES)
