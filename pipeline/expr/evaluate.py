"""numpy evaluation of a typed tree: every node computed in the dtype its typing chose.

A value travels with a flag saying whether it is a fresh array the evaluation owns (and so may
overwrite in place); inputs are never modified.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .nodes import (
    BOOL,
    Chain,
    Clip,
    Const,
    Name,
    Node,
    Pow,
    Ufunc,
    Visitor,
    Where,
    Window,
    Zeros,
)

__all__ = ["Evaluator", "evaluate"]

Value = tuple[Any, bool]


def _cast(value: Any, owned: bool, dtype: np.dtype | None) -> Value:
    """``value`` as ``dtype`` (None: unchanged); a cast makes a fresh (owned) array."""
    if dtype is None or value.dtype == dtype:
        return value, owned
    return value.astype(dtype), True


def _apply(ufunc: np.ufunc, operands: list[Value], out_dtype: np.dtype) -> Any:
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


def _power(x: Any, owned: bool, n: float, cdt: np.dtype) -> Value:
    if n == 0:
        if isinstance(x, np.ndarray):
            return np.ones(x.shape, cdt), True
        return cdt.type(1), True
    if n == 1:
        return x, owned
    if n == 2:
        return _apply(np.square, [(x, owned)], cdt), True
    if n == 3:
        result = np.square(x)
        if isinstance(result, np.ndarray):
            np.multiply(result, x, out=result)
        else:
            result = result * x
        return result, True
    return _apply(np.power, [(x, owned), (cdt.type(n), False)], cdt), True


class Evaluator(Visitor[Value]):
    """The value of each node on ``arrays`` and whether it may be overwritten."""

    def __init__(self, arrays: Mapping[str, Any]) -> None:
        self.arrays = arrays

    def visit_name(self, node: Name) -> Value:
        value = np.asarray(self.arrays[node.name])
        if value.dtype != node.dtype:
            if not np.can_cast(value.dtype, node.dtype, "safe"):
                raise TypeError(
                    f"array {node.name!r} has dtype {value.dtype}, the expression was parsed "
                    f"for {node.dtype}"
                )
            return value.astype(node.dtype), True
        return value, False

    def visit_const(self, node: Const) -> Value:
        return node.value, False

    def visit_ufunc(self, node: Ufunc) -> Value:
        operands = [_cast(*c.accept(self), node.cdt) for c in node.children]
        return _cast(_apply(node.ufunc, operands, node.odt), True, node.dtype)

    def visit_pow(self, node: Pow) -> Value:
        x, owned = _cast(*node.base.accept(self), node.cdt)
        return _cast(*_power(x, owned, node.exponent, node.cdt), node.dtype)

    def visit_clip(self, node: Clip) -> Value:
        x, lo, hi = (_cast(*c.accept(self), node.cdt) for c in node.children)
        low = _apply(np.maximum, [x, lo], node.cdt)
        result = _apply(np.minimum, [(low, True), hi], node.cdt)
        return _cast(result, True, node.dtype)

    def visit_where(self, node: Where) -> Value:
        cond, _ = node.cond.accept(self)
        x, _ = _cast(*node.x.accept(self), node.dtype)
        y, _ = _cast(*node.y.accept(self), node.dtype)
        return np.where(cond, x, y), True

    def visit_chain(self, node: Chain) -> Value:
        left, _ = node.operands[0].accept(self)
        result = None
        for ufunc, cdt, operand in zip(node.ufuncs, node.cdts, node.operands[1:]):
            right, _ = operand.accept(self)
            (a, _), (b, _) = _cast(left, False, cdt), _cast(right, False, cdt)
            step = ufunc(a, b)
            result = step if result is None else _apply(np.logical_and, [(result, True), (step, True)], BOOL)
            left = right
        return result, True

    def visit_zeros(self, node: Zeros) -> Value:
        shape = np.broadcast_shapes(*(np.shape(self.arrays[n]) for n in sorted(node.names)))
        return np.zeros(shape, BOOL), True


    def visit_window(self, node: Window) -> Value:
        """The term computed apart, given in ``arrays`` under its key."""
        return _cast(np.asarray(self.arrays[node.key]), False, node.dtype)


def evaluate(root: Node, arrays: Mapping[str, Any], dtype: np.dtype) -> np.ndarray:
    """The value of the tree ``root`` on ``arrays`` as an array of exactly ``dtype``."""
    with np.errstate(all="ignore"):
        value, _ = root.accept(Evaluator(arrays))
    value = np.asarray(value)
    if value.dtype != dtype:  # pragma: no cover - nodes already produce their dtype
        value = value.astype(dtype)
    return value
