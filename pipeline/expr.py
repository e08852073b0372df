"""Safe parsing and exact evaluation of the pointwise expression ``op`` (e.g. ``a**2 - b**2``).

The text is parsed with :func:`ast.parse` (which only builds a syntax tree, it never runs code)
and then checked against a strict whitelist; nothing of the user's text is ever evaluated by
Python.  What is allowed:

* numeric literals (``int``, ``float``; ``True``/``False``), the constants ``nan``, ``inf``,
  ``pi`` and ``e`` (an input of the same name takes precedence), and input names;
* binary ``+ - * / // % **``, unary ``-`` and ``+``, comparisons ``< <= > >= == !=`` (chained
  comparisons ``a < b < c`` mean ``(a < b) & (b < c)``), and ``& | ~`` on boolean operands;
* calls, with positional arguments only, of ``abs sqrt exp log log1p sin cos tan arctan2
  minimum maximum where clip isnan floor ceil`` (numpy semantics, e.g. ``minimum`` propagates
  nan; ``clip(x, lo, hi)`` is ``minimum(maximum(x, lo), hi)``).

Resource limits (each violation is a :class:`~pipeline.errors.ConfigError`): at most
:data:`MAX_TEXT_LENGTH` characters, syntax-tree depth at most :data:`MAX_DEPTH`, at most
:data:`MAX_NODES` nodes, the exponent of ``**`` must be a literal number (optionally signed) of
magnitude at most :data:`MAX_EXPONENT`, integer literals of magnitude at most
:data:`MAX_INT_LITERAL`.

Result types are decided at parse time, so that evaluation never overflows or wraps:

* every integer (or boolean) subexpression carries exact inclusive value bounds, computed with
  Python ints by interval arithmetic (an integer input has its dtype's full range, a boolean one
  ``[0, 1]``, an integer literal ``[v, v]``);
* an integer operation (``+ - *``, ``**`` with a non-negative integer exponent, unary ``-``/``+``,
  ``abs``, ``minimum``, ``maximum``, ``clip``, ``where``, and ``//``/``%`` by a non-zero integer
  literal) is computed in the smallest of int16/int32/int64 holding both its operands' and its
  result's bounds, and its result has the smallest of int16/int32/int64 holding the result's
  bounds (booleans count as 0/1);
* when those bounds do not fit int64 (e.g. any arithmetic on a uint64 input, or ``a + b`` on two
  int64 inputs) the subexpression is computed in float64 instead - inexact beyond 2**53, but
  never wrapped;
* ``/``, ``sqrt exp log log1p sin cos tan arctan2 floor ceil``, negative or non-integer
  exponents, ``//``/``%`` by anything but a non-zero integer literal, and any arithmetic with a
  float operand give float64 (float32/float16 inputs are computed in float64);
* comparisons, ``isnan``, ``& | ~`` give bool; integer comparisons are exact except between
  uint64 and a signed operand (compared in float64); ``where``/``minimum``/``maximum``/``clip``
  of booleans only stay bool;
* a bare input name keeps the input's own dtype (the input array itself is returned, no copy).

Floating-point warnings (log of a negative number, division by zero, ...) are silenced: the
results are numpy's (nan, inf).
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from pipeline.errors import ConfigError

__all__ = [
    "Expr",
    "parse_expression",
    "FUNCTIONS",
    "MAX_TEXT_LENGTH",
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_EXPONENT",
    "MAX_INT_LITERAL",
]

MAX_TEXT_LENGTH = 10_000
MAX_DEPTH = 64
MAX_NODES = 2_000
MAX_EXPONENT = 64
MAX_INT_LITERAL = 2**62

#: The callable functions and their number of (positional) arguments.
FUNCTIONS: dict[str, int] = {
    "abs": 1,
    "sqrt": 1,
    "exp": 1,
    "log": 1,
    "log1p": 1,
    "sin": 1,
    "cos": 1,
    "tan": 1,
    "arctan2": 2,
    "minimum": 2,
    "maximum": 2,
    "where": 3,
    "clip": 3,
    "isnan": 1,
    "floor": 1,
    "ceil": 1,
}

_CONSTANTS: dict[str, float] = {"nan": math.nan, "inf": math.inf, "pi": math.pi, "e": math.e}

_FLOAT_FUNCTIONS: dict[str, np.ufunc] = {
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

_INT_TYPES = (np.dtype(np.int16), np.dtype(np.int32), np.dtype(np.int64))
_INT_INFO = [(dt, int(np.iinfo(dt).min), int(np.iinfo(dt).max)) for dt in _INT_TYPES]
_F64 = np.dtype(np.float64)
_BOOL = np.dtype(np.bool_)

_BINOP_SYMBOLS: dict[type, str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.MatMult: "@",
}
_COMPARE_UFUNCS: dict[type, np.ufunc] = {
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
}
_COMPARE_SYMBOLS: dict[type, str] = {
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
}
# Syntax-tree nodes that are mere markers (operators, load contexts): not counted.
_MARKERS = (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)


def _err(message: str) -> ConfigError:
    return ConfigError(message, where="op")


def _fit(lo: int, hi: int) -> np.dtype | None:
    """The smallest of int16/int32/int64 holding ``[lo, hi]``, or None."""
    for dt, mn, mx in _INT_INFO:
        if mn <= lo and hi <= mx:
            return dt
    return None


# --------------------------------------------------------------------------- evaluation helpers


def _cast(value: Any, owned: bool, dtype: np.dtype | None) -> tuple[Any, bool]:
    """``value`` as ``dtype`` (None: unchanged); a cast makes a fresh (owned) array."""
    if dtype is None or value.dtype == dtype:
        return value, owned
    return value.astype(dtype), True


def _apply(ufunc: np.ufunc, operands: list[tuple[Any, bool]], out_dtype: np.dtype) -> Any:
    """``ufunc(*operands)``, written in place into an owned operand when one fits."""
    values = [v for v, _ in operands]
    shape = None
    for value, owned in operands:
        if owned and isinstance(value, np.ndarray) and value.dtype == out_dtype:
            if shape is None:
                shape = np.broadcast_shapes(*(np.shape(v) for v in values))
            if value.shape == shape:
                return ufunc(*values, out=value)
    return ufunc(*values)


# ----------------------------------------------------------------------------------- tree nodes


class _Node:
    """A typed node: ``kind`` is "b" (bool), "i" (integer) or "f" (float)."""

    kind: str
    dtype: np.dtype
    bounds: tuple[int, int] | None
    names: frozenset[str]

    def _typed(self, kind: str, dtype: np.dtype, bounds: tuple[int, int] | None) -> None:
        self.kind = kind
        self.dtype = np.dtype(dtype)
        self.bounds = (0, 1) if kind == "b" else (bounds if kind == "i" else None)

    def run(self, arrays: Mapping[str, Any]) -> tuple[Any, bool]:
        """The value (array or numpy scalar of ``self.dtype``) and whether it may be overwritten."""
        raise NotImplementedError


class _Name(_Node):
    def __init__(self, name: str, dtype: np.dtype) -> None:
        self.name = name
        self.names = frozenset((name,))
        if dtype.kind == "b":
            self._typed("b", dtype, None)
        elif dtype.kind in "iu":
            info = np.iinfo(dtype)
            self._typed("i", dtype, (int(info.min), int(info.max)))
        else:
            self._typed("f", dtype, None)

    def run(self, arrays: Mapping[str, Any]) -> tuple[Any, bool]:
        value = np.asarray(arrays[self.name])
        if value.dtype != self.dtype:
            if not np.can_cast(value.dtype, self.dtype, "safe"):
                raise TypeError(
                    f"array {self.name!r} has dtype {value.dtype}, the expression was parsed "
                    f"for {self.dtype}"
                )
            return value.astype(self.dtype), True
        return value, False


class _Const(_Node):
    def __init__(self, value: bool | int | float) -> None:
        self.names = frozenset()
        self.py = value
        if isinstance(value, bool):
            self._typed("b", _BOOL, None)
            self.value = np.bool_(value)
        elif isinstance(value, int):
            dtype = _fit(value, value)
            if dtype is None:  # e.g. -((-2)**63): each literal fits, the folded value does not
                raise _err(f"the integer value {value} does not fit in 64 bits")
            self._typed("i", dtype, (value, value))
            self.value = dtype.type(value)
        else:
            self._typed("f", _F64, None)
            self.value = np.float64(value)

    def run(self, arrays: Mapping[str, Any]) -> tuple[Any, bool]:
        return self.value, False


class _Ufunc(_Node):
    """Cast every operand to ``cdt`` (None: as is), apply ``ufunc``, cast to ``dtype``."""

    def __init__(
        self,
        ufunc: np.ufunc,
        children: list[_Node],
        cdt: np.dtype | None,
        kind: str,
        dtype: np.dtype,
        bounds: tuple[int, int] | None,
    ) -> None:
        self.ufunc = ufunc
        self.children = children
        self.cdt = cdt
        self.names = frozenset().union(*(c.names for c in children))
        self._typed(kind, dtype, bounds)
        # dtype the ufunc itself produces
        self.odt = _BOOL if kind == "b" else (cdt if cdt is not None else self.dtype)

    def run(self, arrays: Mapping[str, Any]) -> tuple[Any, bool]:
        operands = [_cast(*c.run(arrays), self.cdt) for c in self.children]
        return _cast(_apply(self.ufunc, operands, self.odt), True, self.dtype)


class _Pow(_Node):
    def __init__(
        self,
        base: _Node,
        exponent: int | float,
        cdt: np.dtype,
        kind: str,
        dtype: np.dtype,
        bounds: tuple[int, int] | None,
    ) -> None:
        self.base = base
        self.exponent = exponent
        self.cdt = cdt
        self.names = base.names
        self._typed(kind, dtype, bounds)

    def run(self, arrays: Mapping[str, Any]) -> tuple[Any, bool]:
        x, owned = _cast(*self.base.run(arrays), self.cdt)
        n = self.exponent
        if n == 0:
            if isinstance(x, np.ndarray):
                result, owned = np.ones(x.shape, self.cdt), True
            else:
                result, owned = self.cdt.type(1), True
        elif n == 1:
            result = x
        elif n == 2:
            result, owned = _apply(np.square, [(x, owned)], self.cdt), True
        elif n == 3:
            result, owned = np.square(x), True
            if isinstance(result, np.ndarray):
                np.multiply(result, x, out=result)
            else:
                result = result * x
        else:
            result, owned = _apply(np.power, [(x, owned), (self.cdt.type(n), False)], self.cdt), True
        return _cast(result, owned, self.dtype)


class _Clip(_Node):
    def __init__(
        self,
        children: list[_Node],
        cdt: np.dtype,
        kind: str,
        dtype: np.dtype,
        bounds: tuple[int, int] | None,
    ) -> None:
        self.children = children
        self.cdt = cdt
        self.names = frozenset().union(*(c.names for c in children))
        self._typed(kind, dtype, bounds)

    def run(self, arrays: Mapping[str, Any]) -> tuple[Any, bool]:
        x, lo, hi = (_cast(*c.run(arrays), self.cdt) for c in self.children)
        low = _apply(np.maximum, [x, lo], self.cdt)
        result = _apply(np.minimum, [(low, True), hi], self.cdt)
        return _cast(result, True, self.dtype)


class _Where(_Node):
    def __init__(self, cond: _Node, x: _Node, y: _Node, kind: str, dtype: np.dtype, bounds):
        self.cond, self.x, self.y = cond, x, y
        self.names = cond.names | x.names | y.names
        self._typed(kind, dtype, bounds)

    def run(self, arrays: Mapping[str, Any]) -> tuple[Any, bool]:
        cond, _ = self.cond.run(arrays)
        x, _ = _cast(*self.x.run(arrays), self.dtype)
        y, _ = _cast(*self.y.run(arrays), self.dtype)
        return np.where(cond, x, y), True


class _Chain(_Node):
    """``x0 op0 x1 op1 x2 ...`` = ``(x0 op0 x1) & (x1 op1 x2) & ...``, each operand run once."""

    def __init__(self, operands: list[_Node], ufuncs: list[np.ufunc], cdts: list):
        self.operands = operands
        self.ufuncs = ufuncs
        self.cdts = cdts
        self.names = frozenset().union(*(c.names for c in operands))
        self._typed("b", _BOOL, None)

    def run(self, arrays: Mapping[str, Any]) -> tuple[Any, bool]:
        left, _ = self.operands[0].run(arrays)
        result = None
        for ufunc, cdt, node in zip(self.ufuncs, self.cdts, self.operands[1:]):
            right, _ = node.run(arrays)
            (a, _), (b, _) = _cast(left, False, cdt), _cast(right, False, cdt)
            step = ufunc(a, b)
            result = step if result is None else _apply(np.logical_and, [(result, True), (step, True)], _BOOL)
            left = right
        return result, True


class _Zeros(_Node):
    """All False, shaped like the broadcast inputs (``isnan`` of an integer)."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names
        self._typed("b", _BOOL, None)

    def run(self, arrays: Mapping[str, Any]) -> tuple[Any, bool]:
        shape = np.broadcast_shapes(*(np.shape(arrays[n]) for n in sorted(self.names)))
        return np.zeros(shape, _BOOL), True


# ------------------------------------------------------------------------------ interval maths


def _hull(*bounds: tuple[int, int]) -> tuple[int, int]:
    return min(b[0] for b in bounds), max(b[1] for b in bounds)


def _pow_bounds(lo: int, hi: int, n: int) -> tuple[int, int]:
    if n == 0:
        return 1, 1
    a, b = lo**n, hi**n
    if n % 2 == 1 or lo >= 0:
        return a, b
    if hi <= 0:
        return b, a
    return 0, max(a, b)


def _floordiv_bounds(lo: int, hi: int, d: int) -> tuple[int, int]:
    a, b = lo // d, hi // d
    return (a, b) if a <= b else (b, a)


def _mod_bounds(lo: int, hi: int, d: int) -> tuple[int, int]:
    if lo // d == hi // d:  # one period: x % d = x - d*q is increasing in x
        return lo % d, hi % d
    return (0, d - 1) if d > 0 else (d + 1, 0)


# ------------------------------------------------------------------------------------- builder


class _Builder:
    def __init__(self, text: str, inputs: Mapping[str, np.dtype]) -> None:
        self.text = text
        self.inputs = inputs

    # -- messages
    def seg(self, node: ast.AST) -> str:
        try:
            segment = ast.get_source_segment(self.text, node)
        except Exception:  # pragma: no cover - defensive
            segment = None
        if not segment:
            segment = type(node).__name__
        segment = " ".join(segment.split())
        return segment if len(segment) <= 80 else segment[:77] + "..."

    def refuse(self, node: ast.AST) -> ConfigError:
        s = self.seg(node)
        if isinstance(node, ast.Attribute):
            return _err(f"attribute access '.{node.attr}' is not allowed (in '{s}')")
        if isinstance(node, (ast.Subscript, ast.Slice)):
            return _err(f"subscript '{s}' is not allowed")
        if isinstance(node, ast.Lambda):
            return _err(f"lambda '{s}' is not allowed")
        if isinstance(node, ast.IfExp):
            return _err(f"conditional expression '{s}' is not allowed; use where(cond, x, y)")
        if isinstance(node, ast.BoolOp):
            word = "and" if isinstance(node.op, ast.And) else "or"
            sym = "&" if word == "and" else "|"
            return _err(
                f"'{word}' is not allowed (in '{s}'); use '{sym}' between parenthesized comparisons"
            )
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            return _err(f"comprehension '{s}' is not allowed")
        if isinstance(node, ast.Starred):
            return _err(f"starred argument '{s}' is not allowed")
        if isinstance(node, (ast.JoinedStr, ast.FormattedValue)):
            return _err(f"f-string '{s}' is not allowed")
        if isinstance(node, ast.NamedExpr):
            return _err(f"assignment expression '{s}' is not allowed")
        if isinstance(node, (ast.List, ast.Tuple, ast.Set, ast.Dict)):
            what = type(node).__name__.lower()
            return _err(f"{what} '{s}' is not allowed")
        return _err(f"'{s}' ({type(node).__name__}) is not allowed")

    def unknown_name(self, name: str) -> ConfigError:
        available = ", ".join(sorted(self.inputs)) or "none"
        return _err(f"unknown name '{name}' (inputs are: {available})")

    # -- dispatch
    def build(self, node: ast.AST) -> _Node:
        built = self._build(node)
        if built.kind == "i" and not built.names and not isinstance(built, _Const):
            lo, hi = built.bounds
            if lo == hi:  # an integer expression of literals only, e.g. 2**40: a literal
                return _Const(lo)
        return built

    def _build(self, node: ast.AST) -> _Node:
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.BinOp):
            return self.binop(node)
        if isinstance(node, ast.UnaryOp):
            return self.unary(node)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        raise self.refuse(node)

    def constant(self, node: ast.Constant) -> _Node:
        value = node.value
        if isinstance(value, bool):
            return _Const(value)
        if isinstance(value, int):
            if abs(value) > MAX_INT_LITERAL:
                raise _err(
                    f"integer literal '{self.seg(node)}' is too large (magnitude at most 2**62)"
                )
            return _Const(value)
        if isinstance(value, float):
            return _Const(value)
        if isinstance(value, complex):
            return self._bad_literal("complex literal", node)
        if isinstance(value, str):
            return self._bad_literal("string", node)
        if isinstance(value, bytes):
            return self._bad_literal("bytes literal", node)
        return self._bad_literal("literal", node)

    def _bad_literal(self, what: str, node: ast.AST) -> _Node:
        raise _err(f"{what} '{self.seg(node)}' is not allowed")

    def name(self, node: ast.Name) -> _Node:
        if node.id in self.inputs:
            dtype = np.dtype(self.inputs[node.id])
            if dtype.kind not in "biuf":
                raise _err(f"input '{node.id}' has unsupported dtype {dtype}")
            return _Name(node.id, dtype)
        if node.id in _CONSTANTS:
            return _Const(_CONSTANTS[node.id])
        if node.id in ("True", "False"):  # pragma: no cover - parsed as constants
            return _Const(node.id == "True")
        raise self.unknown_name(node.id)

    # -- arithmetic helpers
    @staticmethod
    def float_op(ufunc: np.ufunc, children: list[_Node]) -> _Node:
        return _Ufunc(ufunc, children, _F64, "f", _F64, None)

    @staticmethod
    def int_op(
        ufunc: np.ufunc, children: list[_Node], result: tuple[int, int]
    ) -> _Node:
        """An integer operation with exact result bounds ``result`` (float64 beyond int64)."""
        cdt = _fit(*_hull(result, *(c.bounds for c in children)))
        if cdt is None:
            return _Ufunc(ufunc, children, _F64, "f", _F64, None)
        return _Ufunc(ufunc, children, cdt, "i", _fit(*result), result)

    def binop(self, node: ast.BinOp) -> _Node:
        op = type(node.op)
        if op is ast.Pow:
            exponent = self.exponent(node.right)
            return self.power(self.build(node.left), exponent)
        if op not in (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.BitAnd, ast.BitOr):
            raise _err(
                f"operator '{_BINOP_SYMBOLS.get(op, op.__name__)}' is not allowed "
                f"(in '{self.seg(node)}')"
            )
        left, right = self.build(node.left), self.build(node.right)
        if op in (ast.BitAnd, ast.BitOr):
            if left.kind != "b" or right.kind != "b":
                sym = "&" if op is ast.BitAnd else "|"
                raise _err(
                    f"operator '{sym}' needs boolean operands (comparisons, isnan) in "
                    f"'{self.seg(node)}'; parenthesize comparisons, e.g. (a > 1) {sym} (b < 2)"
                )
            ufunc = np.logical_and if op is ast.BitAnd else np.logical_or
            return _Ufunc(ufunc, [left, right], None, "b", _BOOL, None)
        if op is ast.Div:
            return self.float_op(np.true_divide, [left, right])
        floats = left.kind == "f" or right.kind == "f"
        if op in (ast.FloorDiv, ast.Mod):
            ufunc = np.floor_divide if op is ast.FloorDiv else np.remainder
            if (
                floats
                or not isinstance(right, _Const)
                or right.kind not in "bi"
                or int(right.py) == 0
            ):
                return self.float_op(ufunc, [left, right])
            d = int(right.py)
            lo, hi = left.bounds
            result = _floordiv_bounds(lo, hi, d) if op is ast.FloorDiv else _mod_bounds(lo, hi, d)
            return self.int_op(ufunc, [left, right], result)
        ufunc = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply}[op]
        if floats:
            return self.float_op(ufunc, [left, right])
        (l0, l1), (r0, r1) = left.bounds, right.bounds
        if op is ast.Add:
            result = (l0 + r0, l1 + r1)
        elif op is ast.Sub:
            result = (l0 - r1, l1 - r0)
        else:
            corners = (l0 * r0, l0 * r1, l1 * r0, l1 * r1)
            result = (min(corners), max(corners))
        return self.int_op(ufunc, [left, right], result)

    def exponent(self, node: ast.AST) -> int | float:
        sign = 1
        literal = node
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            sign = -1 if isinstance(node.op, ast.USub) else 1
            literal = node.operand
        if not (
            isinstance(literal, ast.Constant)
            and isinstance(literal.value, (int, float))
            and not isinstance(literal.value, complex)
        ):
            raise _err(
                f"the exponent of '**' must be a literal number, got '{self.seg(node)}'"
            )
        value = literal.value
        if not (abs(value) <= MAX_EXPONENT):  # also refuses nan
            raise _err(
                f"exponent '{self.seg(node)}' of '**' is too large (magnitude at most "
                f"{MAX_EXPONENT})"
            )
        if isinstance(value, bool):
            value = int(value)
        return sign * value

    def power(self, base: _Node, n: int | float) -> _Node:
        if base.kind in "bi" and isinstance(n, int) and n >= 0:
            result = _pow_bounds(*base.bounds, n)
            cdt = _fit(*_hull(result, base.bounds))
            if cdt is not None:
                return _Pow(base, n, cdt, "i", _fit(*result), result)
        return _Pow(base, n, _F64, "f", _F64, None)

    def unary(self, node: ast.UnaryOp) -> _Node:
        if isinstance(node.op, ast.Not):
            raise _err(
                f"'not' is not allowed (in '{self.seg(node)}'); use '~' on a parenthesized "
                "comparison"
            )
        operand = self.build(node.operand)
        if isinstance(node.op, ast.Invert):
            if operand.kind != "b":
                raise _err(
                    f"operator '~' needs a boolean operand (a comparison, isnan) in "
                    f"'{self.seg(node)}'"
                )
            return _Ufunc(np.logical_not, [operand], None, "b", _BOOL, None)
        negate = isinstance(node.op, ast.USub)
        if isinstance(operand, _Const):  # fold signed literals
            value = operand.py
            if isinstance(value, bool):
                value = int(value)
            return _Const(-value if negate else value)
        ufunc = np.negative if negate else np.positive
        if operand.kind == "f":
            return self.float_op(ufunc, [operand])
        lo, hi = operand.bounds
        return self.int_op(ufunc, [operand], (-hi, -lo) if negate else (lo, hi))

    def compare_pair(self, left: _Node, right: _Node) -> np.dtype | None:
        """The dtype to compare two operands in (None: as they are)."""
        if left.kind == "b" and right.kind == "b":
            return None
        if left.kind == "f" or right.kind == "f":
            return _F64
        if np.result_type(left.dtype, right.dtype).kind in "biu":
            return None  # numpy compares these exactly in a common integer type
        cdt = _fit(*_hull(left.bounds, right.bounds))
        return cdt if cdt is not None else _F64

    def compare(self, node: ast.Compare) -> _Node:
        for op in node.ops:
            if type(op) not in _COMPARE_UFUNCS:
                raise _err(
                    f"comparison '{_COMPARE_SYMBOLS.get(type(op), type(op).__name__)}' is not "
                    f"allowed (in '{self.seg(node)}')"
                )
        operands = [self.build(node.left)] + [self.build(c) for c in node.comparators]
        ufuncs = [_COMPARE_UFUNCS[type(op)] for op in node.ops]
        cdts = [self.compare_pair(a, b) for a, b in zip(operands, operands[1:])]
        if len(ufuncs) == 1:
            return _Ufunc(ufuncs[0], operands, cdts[0], "b", _BOOL, None)
        return _Chain(operands, ufuncs, cdts)

    def truth(self, node: _Node) -> _Node:
        """A boolean node: ``node`` itself, or ``node != 0``."""
        if node.kind == "b":
            return node
        zero = _Const(0.0 if node.kind == "f" else 0)
        return _Ufunc(np.not_equal, [node, zero], None, "b", _BOOL, None)

    def call(self, node: ast.Call) -> _Node:
        allowed = ", ".join(FUNCTIONS)
        if not isinstance(node.func, ast.Name):
            raise _err(
                f"call of '{self.seg(node.func)}' is not allowed; only these functions may be "
                f"called: {allowed}"
            )
        fname = node.func.id
        if fname not in FUNCTIONS:
            raise _err(f"unknown function '{fname}' (allowed: {allowed})")
        if node.keywords:
            kw = node.keywords[0]
            raise _err(
                f"keyword argument '{self.seg(kw)}' is not allowed in '{self.seg(node)}'; "
                "pass arguments by position"
            )
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.refuse(arg)
        arity = FUNCTIONS[fname]
        if len(node.args) != arity:
            raise _err(
                f"function '{fname}' takes {arity} argument{'s' if arity > 1 else ''}, "
                f"got {len(node.args)} in '{self.seg(node)}'"
            )
        args = [self.build(a) for a in node.args]

        if fname in _FLOAT_FUNCTIONS:
            return self.float_op(_FLOAT_FUNCTIONS[fname], args)
        if fname == "isnan":
            (x,) = args
            if x.kind == "f":
                return _Ufunc(np.isnan, [x], None, "b", _BOOL, None)
            return _Zeros(x.names)
        if fname == "abs":
            (x,) = args
            if x.kind == "f":
                return self.float_op(np.absolute, [x])
            lo, hi = x.bounds
            if lo >= 0:
                result = (lo, hi)
            elif hi <= 0:
                result = (-hi, -lo)
            else:
                result = (0, max(-lo, hi))
            return self.int_op(np.absolute, [x], result)
        if fname in ("minimum", "maximum"):
            ufunc = np.minimum if fname == "minimum" else np.maximum
            x, y = args
            if x.kind == "b" and y.kind == "b":
                return _Ufunc(ufunc, args, _BOOL, "b", _BOOL, None)
            if x.kind == "f" or y.kind == "f":
                return self.float_op(ufunc, args)
            pick = min if fname == "minimum" else max
            result = (pick(x.bounds[0], y.bounds[0]), pick(x.bounds[1], y.bounds[1]))
            return self.int_op(ufunc, args, result)
        if fname == "clip":
            if all(a.kind == "b" for a in args):
                return _Clip(args, _BOOL, "b", _BOOL, None)
            if any(a.kind == "f" for a in args):
                return _Clip(args, _F64, "f", _F64, None)
            (x0, x1), (l0, l1), (h0, h1) = (a.bounds for a in args)
            result = (min(max(x0, l0), h0), min(max(x1, l1), h1))
            cdt = _fit(*_hull(result, *(a.bounds for a in args)))
            if cdt is None:
                return _Clip(args, _F64, "f", _F64, None)
            return _Clip(args, cdt, "i", _fit(*result), result)
        if fname == "where":
            cond, x, y = args
            cond = self.truth(cond)
            if x.kind == "b" and y.kind == "b":
                return _Where(cond, x, y, "b", _BOOL, None)
            if x.kind != "f" and y.kind != "f":
                result = _hull(x.bounds, y.bounds)
                dtype = _fit(*result)
                if dtype is not None:
                    return _Where(cond, x, y, "i", dtype, result)
            return _Where(cond, x, y, "f", _F64, None)
        raise AssertionError(fname)  # pragma: no cover


def _check_size(tree: ast.AST) -> None:
    """Refuse trees deeper than MAX_DEPTH or larger than MAX_NODES, without recursing."""
    count = 0
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise _err(f"expression is too large (more than {MAX_NODES} syntax-tree nodes)")
        if depth > MAX_DEPTH:
            raise _err(f"expression is nested too deeply (more than {MAX_DEPTH} levels)")
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, _MARKERS):
                stack.append((child, depth + 1))


# ---------------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class Expr:
    """A parsed, type-checked expression; see the module docstring for the typing rules.

    ``names``: the input names it uses (sorted, unique); ``dtype``: the dtype of its result;
    ``bounds``: exact inclusive bounds of the result for integer and bool results (bool:
    ``(0, 1)``), None for float results.
    """

    text: str
    names: tuple[str, ...]
    dtype: np.dtype
    bounds: tuple[int, int] | None
    _root: Any = field(default=None, repr=False, compare=False)

    def evaluate(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """Evaluate on ``arrays`` (numpy broadcasting); the result has exactly ``self.dtype``.

        ``arrays`` must hold every name in ``self.names`` with the dtype it was parsed for (a
        dtype that casts safely to it is accepted).  Inputs are never modified; for a bare name
        the input array itself is returned.
        """
        with np.errstate(all="ignore"):
            value, _ = self._root.run(arrays)
        value = np.asarray(value)
        if value.dtype != self.dtype:  # pragma: no cover - nodes already produce self.dtype
            value = value.astype(self.dtype)
        return value


def parse_expression(text: str, inputs: Mapping[str, np.dtype]) -> Expr:
    """Parse and type-check ``text`` over ``inputs`` (name -> dtype of every available input).

    Raises :class:`~pipeline.errors.ConfigError` (``where="op"``) for any invalid or refused
    expression, naming the offending token.
    """
    if not isinstance(text, str):
        raise _err(f"must be a string, got {type(text).__name__}")
    if len(text) > MAX_TEXT_LENGTH:
        raise _err(f"expression is too long ({len(text)} characters, at most {MAX_TEXT_LENGTH})")
    source = text.strip()
    if not source:
        raise _err("expression is empty")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        if exc.lineno and exc.lineno > 1:
            where = f" at line {exc.lineno}, column {exc.offset}"
        raise _err(f"syntax error{where}: {exc.msg} (in '{_excerpt(source, exc)}')") from None
    except (RecursionError, MemoryError):
        raise _err(f"expression is nested too deeply (more than {MAX_DEPTH} levels)") from None
    except (ValueError, OverflowError) as exc:
        raise _err(f"invalid expression: {exc}") from None
    _check_size(tree)
    builder = _Builder(source, {str(k): v for k, v in inputs.items()})
    root = builder.build(tree.body)
    if not root.names:
        available = ", ".join(sorted(inputs)) or "none"
        raise _err(f"expression uses no input (inputs are: {available})")
    return Expr(
        text=text,
        names=tuple(sorted(root.names)),
        dtype=root.dtype,
        bounds=root.bounds if root.kind in "bi" else None,
        _root=root,
    )


def _excerpt(source: str, exc: SyntaxError) -> str:
    lines = source.splitlines() or [source]
    line = lines[min(max((exc.lineno or 1) - 1, 0), len(lines) - 1)]
    start = max((exc.offset or 1) - 1 - 20, 0)
    snippet = line[start : start + 40]
    return snippet
