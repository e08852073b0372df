"""The typed expression tree, and :class:`Visitor`, the public way to walk it.

Every node knows its ``kind`` ("b" bool, "i" integer, "f" float), the ``dtype`` of its value,
exact inclusive ``bounds`` for bool and integer nodes (None for float ones) and the input
``names`` it uses.  Nodes hold no behaviour beyond :meth:`Node.accept`: evaluation
(:mod:`pipeline.expr.evaluate`) and code generation (:mod:`pipeline.kernels.compiled`) are visitors.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

import numpy as np

from pipeline.errors import ConfigError

from .intervals import fit

__all__ = ["Chain", "Clip", "Const", "Name", "Node", "Pow", "Ufunc", "Visitor", "Where", "Window", "Zeros"]

T = TypeVar("T")

F64 = np.dtype(np.float64)
BOOL = np.dtype(np.bool_)

#: exact inclusive bounds of a bool or integer value; None for a float one
Bounds = tuple[int, int] | None


class Node:
    """A typed node: ``kind`` is "b" (bool), "i" (integer) or "f" (float)."""

    kind: str
    dtype: np.dtype
    bounds: Bounds
    names: frozenset[str]

    def _typed(self, kind: str, dtype: np.dtype, bounds: Bounds, operands: Iterable[Node] | None = None) -> None:
        """Set the node's type (a bool's bounds are always (0, 1), a float's None) and, given its
        ``operands``, its ``names``: the input names they use."""
        if operands is not None:
            self.names = frozenset().union(*(c.names for c in operands))
        self.kind = kind
        self.dtype = np.dtype(dtype)
        self.bounds = (0, 1) if kind == "b" else (bounds if kind == "i" else None)

    @property
    def ibounds(self) -> tuple[int, int]:
        """``bounds`` of a bool or integer node (which always has them)."""
        assert self.bounds is not None, f"a {self.kind!r} node has no bounds"
        return self.bounds

    def accept(self, visitor: Visitor[T]) -> T:
        """``visitor.visit_<class>(self)``: the visitor's method for this node's class."""
        return visitor.visit(self)


class Name(Node):
    """An input, typed by its dtype (an integer input has its dtype's full range)."""

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


class Const(Node):
    """A literal: ``py`` is the Python value, ``value`` the numpy scalar of ``dtype``."""

    def __init__(self, value: bool | float) -> None:
        self.names = frozenset()
        self.py = value
        if isinstance(value, bool):
            self._typed("b", BOOL, None)
            self.value: np.generic = np.bool_(value)
        elif isinstance(value, int):
            dtype = fit(value, value)
            if dtype is None:  # e.g. -((-2)**63): each literal fits, the folded value does not
                raise ConfigError(f"the integer value {value} does not fit in 64 bits", where="op")
            self._typed("i", dtype, (value, value))
            self.value = dtype.type(value)
        else:
            self._typed("f", F64, None)
            self.value = np.float64(value)


class Ufunc(Node):
    """Cast every operand to ``cdt`` (None: as is), apply ``ufunc``, cast to ``dtype``."""

    def __init__(self, ufunc: np.ufunc, children: list[Node], cdt: np.dtype | None, kind: str, dtype: np.dtype, bounds: Bounds) -> None:
        self.ufunc, self.children, self.cdt = ufunc, children, cdt
        self._typed(kind, dtype, bounds, children)
        # dtype the ufunc itself produces
        self.odt = BOOL if kind == "b" else (cdt if cdt is not None else self.dtype)


class Pow(Node):
    """``base ** exponent`` computed in ``cdt`` (the exponent is a literal)."""

    def __init__(self, base: Node, exponent: float, cdt: np.dtype, kind: str, dtype: np.dtype, bounds: Bounds) -> None:
        self.base, self.exponent, self.cdt = base, exponent, cdt
        self._typed(kind, dtype, bounds, [base])


class Clip(Node):
    """``minimum(maximum(x, lo), hi)`` computed in ``cdt``; ``children`` is ``[x, lo, hi]``."""

    def __init__(self, children: list[Node], cdt: np.dtype, kind: str, dtype: np.dtype, bounds: Bounds) -> None:
        self.children, self.cdt = children, cdt
        self._typed(kind, dtype, bounds, children)


class Where(Node):
    """``x`` where the boolean ``cond`` holds, else ``y``, both cast to ``dtype``."""

    def __init__(self, cond: Node, x: Node, y: Node, kind: str, dtype: np.dtype, bounds: Bounds) -> None:
        self.cond, self.x, self.y = cond, x, y
        self._typed(kind, dtype, bounds, [cond, x, y])


class Chain(Node):
    """``x0 op0 x1 op1 x2 ...`` = ``(x0 op0 x1) & (x1 op1 x2) & ...``, each operand run once."""

    def __init__(self, operands: list[Node], ufuncs: list[np.ufunc], cdts: list[np.dtype | None]) -> None:
        self.operands, self.ufuncs, self.cdts = operands, ufuncs, cdts
        self._typed("b", BOOL, None, operands)


class Zeros(Node):
    """All False, shaped like the broadcast inputs (``isnan`` of an integer)."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names
        self._typed("b", BOOL, None)


class Window(Node):
    """A window statistic (``stat`` of the window function ``func``, e.g. ``mean``) of the
    pointwise tree ``inner``, computed apart per block; ``key`` names the computed term, e.g.
    ``mean(a * b)``.  Its type is the term's (exact integer bounds for integer sums and counts)."""

    def __init__(self, key: str, stat: str, inner: Node, kind: str, dtype: np.dtype, bounds: Bounds) -> None:
        self.key, self.stat, self.inner = key, stat, inner
        self._typed(kind, dtype, bounds, [inner])


class Visitor(Generic[T]):
    """Walks a typed tree: :meth:`visit` calls the ``visit_<node>`` method for the node's class
    (``visit_name``, ``visit_const``, ``visit_ufunc``, ``visit_pow``, ``visit_clip``,
    ``visit_where``, ``visit_chain``, ``visit_zeros``, ``visit_window``).

    A subclass defines the methods of the nodes it handles; any other node raises
    :class:`NotImplementedError` (so a new node class cannot be silently ignored).
    """

    def visit(self, node: Node) -> T:
        method = getattr(self, f"visit_{type(node).__name__.lower()}", None)
        if method is None:
            raise NotImplementedError(f"{type(self).__name__} does not handle {type(node).__name__}")
        return method(node)
