"""Float window sums in which each window's sum is formed from the values inside it only.

A float running (prefix-sum) difference keeps the rounding of every value before the window:
after ``1e16`` has passed, ``1 + 1`` reads 0, and one ``-3.4e38`` pixel spoils every later window
of its row.  Here sums follow the van Herk/Gil-Werman scheme with ``+``: along the axis the data
are cut into blocks of the window's length; the window starting at ``j`` is the suffix sum of
``j``'s block from ``j`` plus the prefix sum of the next block up to ``j + length - 1`` (the suffix
sum alone where ``j`` starts a block).  Both partial sums hold values of that window only, so a
window's sum carries at most ``length`` roundings of its own magnitude, and an overflow or an
infinity stays in the windows that hold it.  Three additions per value instead of two; O(1) per
value whatever the length.  The numpy reference path (:mod:`pipeline.kernels.reference`) uses these;
:mod:`pipeline.kernels.blocked` is the compiled counterpart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def running_sum(x: np.ndarray, length: int, axis: int) -> np.ndarray:
    """Sums of ``x[j : j + length]`` along ``axis`` for every ``j`` in ``0 … n - length``."""
    x = np.moveaxis(x, axis, -1)
    n = x.shape[-1]
    if length == 1:
        return np.moveaxis(x.copy(), -1, axis)
    nb = -(-n // length)
    pad = nb * length - n
    if pad:  # never read: every window starts in a whole block
        x = np.concatenate([x, np.zeros(x.shape[:-1] + (pad,), x.dtype)], axis=-1)
    blocks = x.reshape(x.shape[:-1] + (nb, length))
    with np.errstate(over="ignore", invalid="ignore"):
        g = np.add.accumulate(blocks, axis=-1).reshape(x.shape)
        h = np.add.accumulate(blocks[..., ::-1], axis=-1)[..., ::-1].reshape(x.shape)
        out = h[..., : n - length + 1] + g[..., length - 1 : n]
    out[..., ::length] = h[..., : n - length + 1 : length]
    return np.moveaxis(out, -1, axis)


def clipped_sum(x: np.ndarray, axis: int, lo: int, hi: int, start: int, stop: int) -> np.ndarray:
    """Sums over windows ``[c - lo, c + hi]`` clipped to the data, for centres ``c`` in
    ``[start, stop)`` along ``axis`` (:func:`pipeline.kernels.reference.window_sum_1d`'s contract): the data
    the windows read, zeros where they leave it, then :func:`running_sum`."""
    n = x.shape[axis]
    a, b = max(start - lo, 0), min(stop + hi, n)
    index: list[slice] = [slice(None)] * x.ndim
    index[axis] = slice(a, b)
    pads = [(0, 0)] * x.ndim
    pads[axis] = (a - (start - lo), stop + hi - b)
    return running_sum(np.pad(x[tuple(index)], pads), lo + hi + 1, axis)


def runs_sum(
    x: np.ndarray,
    runs: Sequence[tuple[int, int, int]],
    shifted: Callable[[int, int], tuple[slice, slice]],
    out_shape: tuple[int, ...],
) -> np.ndarray:
    """Sums over a footprint of row runs ``(dy, a, b)`` (see :class:`pipeline.kernels.reference.Window`;
    ``shifted(dy, dx)`` indexes the data at that offset from every centre): per run length,
    :func:`running_sum` along the rows, then each window's runs added."""
    out = np.zeros(x.shape[:-2] + out_shape, dtype=x.dtype)
    by_run: dict[tuple[int, int], list[int]] = {}
    for dy, a, b in runs:
        by_run.setdefault((a, b), []).append(dy)
    with np.errstate(over="ignore", invalid="ignore"):
        for (a, b), dys in by_run.items():
            f = running_sum(x, b - a + 1, -1)  # f[..., j] covers j … j + b - a
            for dy in dys:
                out += f[(..., *shifted(dy, a))]
    return out
