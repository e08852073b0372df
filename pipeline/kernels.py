"""Per-block window reductions: pure numpy, no I/O, no dask.

Geometry convention (shared with :mod:`pipeline.plan`): along an axis, the window of size ``W``
centred on pixel ``i`` covers ``i - lo … i + hi`` with ``lo = W // 2`` and ``hi = W - 1 - lo``
(the seed's ``start = i - W//2; stop = start + W``).  A kernel receives a block of data that
already carries whatever neighbouring pixels exist (the halo), and computes the result for a
contiguous range of *local* centres ``start … stop-1``.  Windows are truncated to the data it is
given: since the halo is at least as wide as the window arm, truncation happens only at the image
border, which is exactly the ``shrink`` rule.

Sums are running (prefix) sums: O(1) per pixel whatever ``W``.  Integer sums are accumulated in
the output dtype; prefix sums may wrap around in two's complement, but their *differences* are
exact modulo 2**bits, hence exact whenever the true window sum fits the dtype, which the plan
guarantees.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def window_sum_1d(x: np.ndarray, axis: int, lo: int, hi: int, start: int, stop: int) -> np.ndarray:
    """Sums of ``x`` over windows ``[c - lo, c + hi]`` (clipped to the data) for local centres
    ``c`` in ``[start, stop)`` along ``axis``.  The result has ``x.dtype`` and ``stop - start``
    elements along ``axis``."""
    n = x.shape[axis]
    if not (0 <= start <= stop <= n):
        raise ValueError(f"centres [{start}, {stop}) outside data of length {n}")
    if lo == 0 and hi == 0:
        return _take(x, axis, slice(start, stop)).copy()
    shape = list(x.shape)
    shape[axis] = n + 1
    prefix = np.empty(shape, dtype=x.dtype)
    _take(prefix, axis, slice(0, 1))[...] = 0
    with np.errstate(over="ignore"):
        np.cumsum(x, axis=axis, dtype=x.dtype, out=_take(prefix, axis, slice(1, None)))
        return _window_diff(prefix, axis, lo, hi, start, stop, n)


def _window_diff(prefix: np.ndarray, axis: int, lo: int, hi: int, start: int, stop: int, n: int) -> np.ndarray:
    """``prefix[min(c+hi, n-1) + 1] - prefix[max(c-lo, 0)]`` for ``c`` in ``[start, stop)``.

    Interior centres (whole window inside the data) are one vectorised slice subtraction; only
    the few centres whose window is clipped by the data's ends use fancy indexing."""
    out_shape = list(prefix.shape)
    out_shape[axis] = stop - start
    out = np.empty(out_shape, dtype=prefix.dtype)
    i0 = min(max(lo, start), stop)  # first interior centre
    i1 = max(min(n - 1 - hi, stop - 1) + 1, i0)  # one past the last interior centre
    if i1 > i0:
        np.subtract(
            _take(prefix, axis, slice(i0 + hi + 1, i1 + hi + 1)),
            _take(prefix, axis, slice(i0 - lo, i1 - lo)),
            out=_take(out, axis, slice(i0 - start, i1 - start)),
        )
    edge = np.r_[np.arange(start, i0), np.arange(i1, stop)]
    if edge.size:
        upper = np.minimum(edge + hi, n - 1) + 1
        lower = np.maximum(edge - lo, 0)
        index = [slice(None)] * out.ndim
        index[axis] = edge - start
        out[tuple(index)] = np.take(prefix, upper, axis=axis) - np.take(prefix, lower, axis=axis)
    return out


def _take(a: np.ndarray, axis: int, sl: slice) -> np.ndarray:
    index = [slice(None)] * a.ndim
    index[axis] = sl
    return a[tuple(index)]


def window_sum(
    x: np.ndarray,
    axes: Sequence[int],
    lo: Sequence[int],
    hi: Sequence[int],
    start: Sequence[int],
    stop: Sequence[int],
) -> np.ndarray:
    """Separable window sum over several axes (see :func:`window_sum_1d`)."""
    out = x
    for ax, l, h, s, e in zip(axes, lo, hi, start, stop):
        out = window_sum_1d(out, ax, l, h, s, e)
    return out


REDUCERS = {"sum": window_sum}
