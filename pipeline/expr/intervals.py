"""Exact interval arithmetic on Python ints, and the one rule that fits a range into an integer dtype.

Every integer (or boolean) subexpression carries inclusive bounds ``(lo, hi)``; the functions here
compute the bounds of a result from the bounds of its operands, exactly (Python ints never
overflow).  :func:`fit` is the single place that chooses the integer dtype holding a range.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "INT_TYPES",
    "abs_bounds",
    "add_bounds",
    "clip_bounds",
    "fit",
    "floordiv_bounds",
    "hull",
    "mod_bounds",
    "mul_bounds",
    "neg_bounds",
    "pow_bounds",
    "sub_bounds",
]

Bounds = tuple[int, int]

#: The integer dtypes a computation may use, smallest first.
INT_TYPES: tuple[np.dtype, ...] = (np.dtype(np.int16), np.dtype(np.int32), np.dtype(np.int64))


def fit(lo: int, hi: int, types: tuple[np.dtype, ...] = INT_TYPES) -> np.dtype | None:
    """The first (smallest) of ``types`` holding ``[lo, hi]``, or None when none does."""
    for dt in types:
        mn, mx = _limits(dt)
        if mn <= lo and hi <= mx:
            return dt
    return None


def _limits(dtype: np.dtype) -> tuple[int, int]:
    limits = _LIMITS.get(dtype)
    if limits is None:
        info = np.iinfo(dtype)
        limits = _LIMITS[dtype] = (int(info.min), int(info.max))
    return limits


_LIMITS: dict[np.dtype, tuple[int, int]] = {}


def hull(*bounds: Bounds) -> Bounds:
    """The smallest interval holding every one of ``bounds``."""
    return min(b[0] for b in bounds), max(b[1] for b in bounds)


def add_bounds(a: Bounds, b: Bounds) -> Bounds:
    return a[0] + b[0], a[1] + b[1]


def sub_bounds(a: Bounds, b: Bounds) -> Bounds:
    return a[0] - b[1], a[1] - b[0]


def mul_bounds(a: Bounds, b: Bounds) -> Bounds:
    corners = (a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1])
    return min(corners), max(corners)


def neg_bounds(a: Bounds) -> Bounds:
    return -a[1], -a[0]


def abs_bounds(a: Bounds) -> Bounds:
    lo, hi = a
    if lo >= 0:
        return lo, hi
    if hi <= 0:
        return -hi, -lo
    return 0, max(-lo, hi)


def pow_bounds(lo: int, hi: int, n: int) -> Bounds:
    """Bounds of ``x**n`` for ``x`` in ``[lo, hi]`` and an integer ``n >= 0``."""
    if n == 0:
        return 1, 1
    a, b = lo**n, hi**n
    if n % 2 == 1 or lo >= 0:
        return a, b
    if hi <= 0:
        return b, a
    return 0, max(a, b)


def floordiv_bounds(lo: int, hi: int, d: int) -> Bounds:
    """Bounds of ``x // d`` for ``x`` in ``[lo, hi]`` and a non-zero integer ``d``."""
    a, b = lo // d, hi // d
    return (a, b) if a <= b else (b, a)


def mod_bounds(lo: int, hi: int, d: int) -> Bounds:
    """Bounds of ``x % d`` (Python's floor semantics) for ``x`` in ``[lo, hi]``, ``d != 0``."""
    if lo // d == hi // d:  # one period: x % d = x - d*q is increasing in x
        return lo % d, hi % d
    return (0, d - 1) if d > 0 else (d + 1, 0)


def clip_bounds(x: Bounds, lo: Bounds, hi: Bounds) -> Bounds:
    """Bounds of ``minimum(maximum(x, lo), hi)``."""
    return min(max(x[0], lo[0]), hi[0]), min(max(x[1], lo[1]), hi[1])
