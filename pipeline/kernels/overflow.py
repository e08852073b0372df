"""Float64 window statistics whose sums overflow: ±inf (or the finite value) instead of NaN.

A window of finite float64 values whose sum exceeds the float64 range has no finite sum; the
kernels' partial sums then meet ``inf - inf`` and read NaN, which is this tool's "no valid pixel"
marker.  Where a sum, mean, variance or standard deviation comes out non-finite and the field
holds a finite value of magnitude at least ``2**400`` (below that nothing overflows, squares
included), the block is computed again on the field scaled by ``2**-600`` (exact: a power of
two) and those windows take the scaled result scaled back: a sum that overflows is ±inf with its
sign, a mean is its finite value (or ±inf), a variance whose value exceeds the float64 range is
inf while its standard deviation stays finite where it fits.  Windows holding an infinity or no
valid pixel are unchanged (the scaled field has them too).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: the scale exponent: sums and squares of the scaled values cannot overflow
SCALE = 600
#: the magnitude below which no window sum or sum of squares overflows
HUGE = 2.0**400

Raw = dict[str, "np.ndarray | None"]


def rescue(raw: Raw, field: np.ndarray, recompute: Callable[[np.ndarray], Raw]) -> Raw:
    """``raw`` (statistics of ``field``, as :func:`pipeline.kernels.reference.reduce_stats` returns them)
    with its overflowed windows replaced; ``recompute`` computes the same statistics of another
    field of the same shape."""
    if field.dtype != np.float64:
        return raw  # float32 and integer values cannot overflow a float64 sum
    bad = {}
    for st in ("sum", "mean", "var", "std"):
        r = raw.get(st)
        if r is not None and r.dtype.kind == "f":
            b = ~np.isfinite(r)
            if b.any():
                bad[st] = b
    if not bad:
        return raw
    with np.errstate(invalid="ignore"):
        if not (np.abs(field) >= HUGE).any(axis=None, where=np.isfinite(field)):
            return raw
    scaled = recompute(field * 2.0**-SCALE)
    up = 2.0**SCALE
    with np.errstate(over="ignore", invalid="ignore"):
        for st, b in bad.items():
            s = scaled[st]
            assert s is not None
            v = s[b] * up
            raw[st][b] = v * up if st == "var" else v  # type: ignore[index]
    return raw
