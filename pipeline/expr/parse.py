"""Parsing: the text through :func:`ast.parse`, the whitelisted walk of its syntax tree, the limits.

:func:`ast.parse` only builds a syntax tree, it never runs code; :class:`_Walk` accepts only the
node types listed in :mod:`pipeline.expr` and hands each accepted construct to the typing rules
(:mod:`pipeline.expr.rules`).  Every refusal is a :class:`~pipeline.errors.ConfigError`
(``where="op"``) that names the offending token.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from pipeline.errors import ConfigError

from . import rules
from .evaluate import evaluate
from .nodes import Const, Name, Node

__all__ = [
    "FUNCTIONS",
    "MAX_DEPTH",
    "MAX_EXPONENT",
    "MAX_INT_LITERAL",
    "MAX_NODES",
    "MAX_TEXT_LENGTH",
    "Expr",
    "parse_expression",
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
assert set(FUNCTIONS) == rules.FUNCTION_NAMES, "every whitelisted function has one typing rule"

_CONSTANTS: dict[str, float] = {"nan": math.nan, "inf": math.inf, "pi": math.pi, "e": math.e}

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
_ARITHMETIC = ("+", "-", "*", "/", "//", "%")
_LOGICAL = {"&": np.logical_and, "|": np.logical_or}
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
# Refused constructs and how to name them (the first matching entry wins).
_REFUSED: tuple[tuple[type | tuple[type, ...], str], ...] = (
    ((ast.Subscript, ast.Slice), "subscript '{s}' is not allowed"),
    (ast.Lambda, "lambda '{s}' is not allowed"),
    (ast.IfExp, "conditional expression '{s}' is not allowed; use where(cond, x, y)"),
    ((ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp), "comprehension '{s}' is not allowed"),
    (ast.Starred, "starred argument '{s}' is not allowed"),
    ((ast.JoinedStr, ast.FormattedValue), "f-string '{s}' is not allowed"),
    (ast.NamedExpr, "assignment expression '{s}' is not allowed"),
)
_LITERAL_NAMES: tuple[tuple[type, str], ...] = (
    (complex, "complex literal"),
    (str, "string"),
    (bytes, "bytes literal"),
)


#: The accepted syntax-tree nodes and the :class:`_Walk` method that builds each (anything else
#: is refused).
_BUILDERS: tuple[tuple[type, str], ...] = (
    (ast.Constant, "constant"),
    (ast.Name, "name"),
    (ast.BinOp, "binop"),
    (ast.UnaryOp, "unary"),
    (ast.Compare, "compare"),
    (ast.Call, "call"),
)


def _err(message: str) -> ConfigError:
    return ConfigError(message, where="op")


class _Walk:
    """The whitelisted walk of one syntax tree into a typed tree."""

    def __init__(self, text: str, inputs: Mapping[str, np.dtype]) -> None:
        self.text = text
        self.inputs = inputs

    # -- messages
    def seg(self, node: ast.AST) -> str:
        try:
            segment = ast.get_source_segment(self.text, node)
        except Exception:  # noqa: BLE001  # pragma: no cover - defensive
            segment = None
        if not segment:
            segment = type(node).__name__
        segment = " ".join(segment.split())
        return segment if len(segment) <= 80 else segment[:77] + "..."

    def refuse(self, node: ast.AST) -> ConfigError:
        s = self.seg(node)
        if isinstance(node, ast.Attribute):
            return _err(f"attribute access '.{node.attr}' is not allowed (in '{s}')")
        if isinstance(node, ast.BoolOp):
            word = "and" if isinstance(node.op, ast.And) else "or"
            sym = "&" if word == "and" else "|"
            return _err(f"'{word}' is not allowed (in '{s}'); use '{sym}' between parenthesized comparisons")
        for types, message in _REFUSED:
            if isinstance(node, types):
                return _err(message.format(s=s))
        if isinstance(node, (ast.List, ast.Tuple, ast.Set, ast.Dict)):
            return _err(f"{type(node).__name__.lower()} '{s}' is not allowed")
        return _err(f"'{s}' ({type(node).__name__}) is not allowed")

    def unknown_name(self, name: str) -> ConfigError:
        available = ", ".join(sorted(self.inputs)) or "none"
        return _err(f"unknown name '{name}' (inputs are: {available})")

    # -- dispatch
    def build(self, node: ast.AST) -> Node:
        built = self._build(node)
        if built.kind == "i" and not built.names and not isinstance(built, Const):
            assert built.bounds is not None  # integer nodes carry their bounds
            lo, hi = built.bounds
            if lo == hi:  # an integer expression of literals only, e.g. 2**40: a literal
                return Const(lo)
        return built

    def _build(self, node: ast.AST) -> Node:
        for types, method in _BUILDERS:
            if isinstance(node, types):
                return getattr(self, method)(node)
        raise self.refuse(node)

    def constant(self, node: ast.Constant) -> Node:
        value = node.value
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT_LITERAL:
            raise _err(f"integer literal '{self.seg(node)}' is too large (magnitude at most 2**62)")
        if isinstance(value, (bool, int, float)):
            return Const(value)
        what = next((w for t, w in _LITERAL_NAMES if isinstance(value, t)), "literal")
        raise _err(f"{what} '{self.seg(node)}' is not allowed")

    def name(self, node: ast.Name) -> Node:
        if node.id in self.inputs:
            dtype = np.dtype(self.inputs[node.id])
            if dtype.kind not in "biuf":
                raise _err(f"input '{node.id}' has unsupported dtype {dtype}")
            return Name(node.id, dtype)
        if node.id in _CONSTANTS:
            return Const(_CONSTANTS[node.id])
        if node.id in ("True", "False"):  # pragma: no cover - parsed as constants
            return Const(node.id == "True")
        raise self.unknown_name(node.id)

    def binop(self, node: ast.BinOp) -> Node:
        sym = _BINOP_SYMBOLS.get(type(node.op), type(node.op).__name__)
        if sym == "**":
            exponent = self.exponent(node.right)
            return rules.power(self.build(node.left), exponent)
        if sym not in _ARITHMETIC and sym not in _LOGICAL:
            raise _err(f"operator '{sym}' is not allowed (in '{self.seg(node)}')")
        left, right = self.build(node.left), self.build(node.right)
        if sym in _ARITHMETIC:
            return rules.arithmetic(sym, left, right)
        if left.kind != "b" or right.kind != "b":
            raise _err(
                f"operator '{sym}' needs boolean operands (comparisons, isnan) in "
                f"'{self.seg(node)}'; parenthesize comparisons, e.g. (a > 1) {sym} (b < 2)"
            )
        return rules.logical(_LOGICAL[sym], [left, right])

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
            raise _err(f"the exponent of '**' must be a literal number, got '{self.seg(node)}'")
        value = literal.value
        if not (abs(value) <= MAX_EXPONENT):  # also refuses nan
            raise _err(
                f"exponent '{self.seg(node)}' of '**' is too large (magnitude at most {MAX_EXPONENT})"
            )
        if isinstance(value, bool):
            value = int(value)
        return sign * value

    def unary(self, node: ast.UnaryOp) -> Node:
        if isinstance(node.op, ast.Not):
            raise _err(f"'not' is not allowed (in '{self.seg(node)}'); use '~' on a parenthesized comparison")
        operand = self.build(node.operand)
        if isinstance(node.op, ast.Invert):
            if operand.kind != "b":
                raise _err(
                    f"operator '~' needs a boolean operand (a comparison, isnan) in '{self.seg(node)}'"
                )
            return rules.logical(np.logical_not, [operand])
        return rules.sign(operand, isinstance(node.op, ast.USub))

    def compare(self, node: ast.Compare) -> Node:
        for op in node.ops:
            if type(op) not in _COMPARE_UFUNCS:
                raise _err(
                    f"comparison '{_COMPARE_SYMBOLS.get(type(op), type(op).__name__)}' is not "
                    f"allowed (in '{self.seg(node)}')"
                )
        operands = [self.build(node.left)] + [self.build(c) for c in node.comparators]
        return rules.compare(operands, [_COMPARE_UFUNCS[type(op)] for op in node.ops])

    def call(self, node: ast.Call) -> Node:
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
            raise _err(
                f"keyword argument '{self.seg(node.keywords[0])}' is not allowed in '{self.seg(node)}'; "
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
        return rules.call(fname, [self.build(a) for a in node.args])


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


def _syntax_tree(source: str) -> ast.Expression:
    """``ast.parse`` of ``source`` (an expression), its errors as ConfigErrors."""
    try:
        return ast.parse(source, mode="eval")
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        if exc.lineno and exc.lineno > 1:
            where = f" at line {exc.lineno}, column {exc.offset}"
        raise _err(f"syntax error{where}: {exc.msg} (in '{_excerpt(source, exc)}')") from None
    except (RecursionError, MemoryError):
        raise _err(f"expression is nested too deeply (more than {MAX_DEPTH} levels)") from None
    except (ValueError, OverflowError) as exc:
        raise _err(f"invalid expression: {exc}") from None


def _excerpt(source: str, exc: SyntaxError) -> str:
    lines = source.splitlines() or [source]
    line = lines[min(max((exc.lineno or 1) - 1, 0), len(lines) - 1)]
    start = max((exc.offset or 1) - 1 - 20, 0)
    return line[start : start + 40]


# ---------------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class Expr:
    """A parsed, type-checked expression; see :mod:`pipeline.expr` for the typing rules.

    ``names``: the input names it uses (sorted, unique); ``dtype``: the dtype of its result;
    ``bounds``: exact inclusive bounds of the result for integer and bool results (bool:
    ``(0, 1)``), None for float results; ``root``: the typed tree
    (:mod:`pipeline.expr.nodes`), walked by a :class:`~pipeline.expr.nodes.Visitor`.
    """

    text: str
    names: tuple[str, ...]
    dtype: np.dtype
    bounds: tuple[int, int] | None
    root: Node = field(repr=False, compare=False)

    def evaluate(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """Evaluate on ``arrays`` (numpy broadcasting); the result has exactly ``self.dtype``.

        ``arrays`` must hold every name in ``self.names`` with the dtype it was parsed for (a
        dtype that casts safely to it is accepted).  Inputs are never modified; for a bare name
        the input array itself is returned.
        """
        return evaluate(self.root, arrays, self.dtype)


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
    tree = _syntax_tree(source)
    _check_size(tree)
    root = _Walk(source, {str(k): v for k, v in inputs.items()}).build(tree.body)
    if not root.names:
        available = ", ".join(sorted(inputs)) or "none"
        raise _err(f"expression uses no input (inputs are: {available})")
    return Expr(
        text=text,
        names=tuple(sorted(root.names)),
        dtype=root.dtype,
        bounds=root.bounds if root.kind in "bi" else None,
        root=root,
    )
