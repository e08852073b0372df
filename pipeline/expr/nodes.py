"""The typed expression tree, and :class:`Visitor`, the public way to walk it.

Every node knows its ``kind`` ("b" bool, "i" integer, "f" float), the ``dtype`` of its value,
exact inclusive ``bounds`` for bool and integer nodes (None for float ones) and the input
``names`` it uses.  Nodes hold no behaviour beyond :meth:`Node.accept`: evaluation
(:mod:`pipeline.expr.evaluate`) and code generation (:mod:`pipeline.compiled`) are visitors.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import numpy as np

from pipeline.errors import ConfigError

from .intervals import fit

__all__ = ["Chain", "Clip", "Const", "Name", "Node", "Pow", "Ufunc", "Visitor", "Where", "Zeros"]

T = TypeVar("T")

F64 = np.dtype(np.float64)
BOOL = np.dtype(np.bool_)


class Node:
    """A typed node: ``kind`` is "b" (bool), "i" (integer) or "f" (float)."""

    kind: str
    dtype: np.dtype
    bounds: tuple[int, int] | None
    names: frozenset[str]

    def _typed(self, kind: str, dtype: np.dtype, bounds: tuple[int, int] | None) -> None:
        self.kind = kind
        self.dtype = np.dtype(dtype)
        self.bounds = (0, 1) if kind == "b" else (bounds if kind == "i" else None)

    @property
    def ibounds(self) -> tuple[int, int]:
        """``bounds`` of a bool or integer node (which always has them)."""
        assert self.bounds is not None, f"a {self.kind!r} node has no bounds"
        return self.bounds

    def accept(self, visitor: Visitor[T]) -> T:
        raise NotImplementedError


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

    def accept(self, visitor: Visitor[T]) -> T:
        return visitor.visit_name(self)


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

    def accept(self, visitor: Visitor[T]) -> T:
        return visitor.visit_const(self)


class Ufunc(Node):
    """Cast every operand to ``cdt`` (None: as is), apply ``ufunc``, cast to ``dtype``."""

    def __init__(
        self,
        ufunc: np.ufunc,
        children: list[Node],
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
        self.odt = BOOL if kind == "b" else (cdt if cdt is not None else self.dtype)

    def accept(self, visitor: Visitor[T]) -> T:
        return visitor.visit_ufunc(self)


class Pow(Node):
    """``base ** exponent`` computed in ``cdt`` (the exponent is a literal)."""

    def __init__(
        self,
        base: Node,
        exponent: float,
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

    def accept(self, visitor: Visitor[T]) -> T:
        return visitor.visit_pow(self)


class Clip(Node):
    """``minimum(maximum(x, lo), hi)`` computed in ``cdt``; ``children`` is ``[x, lo, hi]``."""

    def __init__(
        self,
        children: list[Node],
        cdt: np.dtype,
        kind: str,
        dtype: np.dtype,
        bounds: tuple[int, int] | None,
    ) -> None:
        self.children = children
        self.cdt = cdt
        self.names = frozenset().union(*(c.names for c in children))
        self._typed(kind, dtype, bounds)

    def accept(self, visitor: Visitor[T]) -> T:
        return visitor.visit_clip(self)


class Where(Node):
    """``x`` where the boolean ``cond`` holds, else ``y``, both cast to ``dtype``."""

    def __init__(
        self, cond: Node, x: Node, y: Node, kind: str, dtype: np.dtype, bounds: tuple[int, int] | None
    ) -> None:
        self.cond, self.x, self.y = cond, x, y
        self.names = cond.names | x.names | y.names
        self._typed(kind, dtype, bounds)

    def accept(self, visitor: Visitor[T]) -> T:
        return visitor.visit_where(self)


class Chain(Node):
    """``x0 op0 x1 op1 x2 ...`` = ``(x0 op0 x1) & (x1 op1 x2) & ...``, each operand run once."""

    def __init__(self, operands: list[Node], ufuncs: list[np.ufunc], cdts: list[np.dtype | None]) -> None:
        self.operands = operands
        self.ufuncs = ufuncs
        self.cdts = cdts
        self.names = frozenset().union(*(c.names for c in operands))
        self._typed("b", BOOL, None)

    def accept(self, visitor: Visitor[T]) -> T:
        return visitor.visit_chain(self)


class Zeros(Node):
    """All False, shaped like the broadcast inputs (``isnan`` of an integer)."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names
        self._typed("b", BOOL, None)

    def accept(self, visitor: Visitor[T]) -> T:
        return visitor.visit_zeros(self)


class Visitor(Generic[T]):
    """Walks a typed tree: :meth:`visit` calls the ``visit_<node>`` method for the node's class.

    A subclass overrides the methods of the nodes it handles; the others raise
    :class:`NotImplementedError` (so a new node class cannot be silently ignored).
    """

    def visit(self, node: Node) -> T:
        return node.accept(self)

    def _unhandled(self, node: Node) -> T:
        raise NotImplementedError(f"{type(self).__name__} does not handle {type(node).__name__}")

    def visit_name(self, node: Name) -> T:
        return self._unhandled(node)

    def visit_const(self, node: Const) -> T:
        return self._unhandled(node)

    def visit_ufunc(self, node: Ufunc) -> T:
        return self._unhandled(node)

    def visit_pow(self, node: Pow) -> T:
        return self._unhandled(node)

    def visit_clip(self, node: Clip) -> T:
        return self._unhandled(node)

    def visit_where(self, node: Where) -> T:
        return self._unhandled(node)

    def visit_chain(self, node: Chain) -> T:
        return self._unhandled(node)

    def visit_zeros(self, node: Zeros) -> T:
        return self._unhandled(node)
