"""Independent references: the seed's brute-force loop, generalised.

Deliberately naive (Python loops over output pixels, exact Python-int arithmetic through object
arrays) and sharing no code with the package.
"""

from __future__ import annotations

import numpy as np

SEED_A = np.array(
    [[179, 97, 77, 118, 144, 105], [68, 56, 184, 210, 141, 230], [178, 166, 218, 47, 106, 172],
     [38, 183, 50, 185, 48, 87], [60, 200, 228, 232, 6, 190], [253, 75, 231, 166, 117, 134]],
    dtype=np.uint8,
)
SEED_B = np.array(
    [[116, 95, 94, 220, 80, 223], [135, 9, 166, 78, 5, 129], [102, 167, 120, 81, 141, 29],
     [83, 117, 81, 129, 255, 48], [130, 231, 165, 7, 187, 169], [44, 137, 16, 50, 229, 202]],
    dtype=np.uint8,
)
# the seed's printed result of its loop
SEED_EXPECTED = np.array(
    [[8423, 11816, 10372, 41125, 35287, 31747],
     [29370, 65887, 38811, 61252, 51033, 51845],
     [24756, 60119, 109133, 35101, 70005, 18757],
     [8641, 62463, 126935, 14530, 2255, -64752],
     [36623, 110426, 163513, 33812, -50035, -146450],
     [22268, 100132, 130190, 83010, -10163, -88994]]
)
# the seed's sliding_window_view answer (boundary 'valid')
SEED_VALID = np.array(
    [[65887, 38811, 61252, 51033], [60119, 109133, 35101, 70005],
     [62463, 126935, 14530, 2255], [110426, 163513, 33812, -50035]]
)


def seed_loop(A: np.ndarray, B: np.ndarray, W: int) -> np.ndarray:
    """The seed's own loop, verbatim except for exact (object) arithmetic."""
    A = A.astype(object)
    B = B.astype(object)
    out = np.zeros(A.shape, dtype=object)
    difference_of_squares = A * A - B * B
    for i, j in np.ndindex(out.shape):
        starti = max(i - W // 2, 0)
        stopi = min(i - W // 2 + W, np.shape(out)[0])
        startj = max(j - W // 2, 0)
        stopj = min(j - W // 2 + W, np.shape(out)[1])
        out[i, j] = np.sum(difference_of_squares[starti:stopi, startj:stopj])
    return out


def brute_window_sum(field: np.ndarray, size, boundary: str = "shrink") -> np.ndarray:
    """Window sums over the last two axes (the last one for 1-D), by looping over every output
    pixel.  Integer fields are summed as Python ints; float fields with math.fsum."""
    import math

    field = np.asarray(field)
    nd = min(2, field.ndim)
    sizes = (size,) * nd if np.isscalar(size) else tuple(size)
    axes = list(range(field.ndim - len(sizes), field.ndim))
    lead = field.shape[: axes[0]]
    shape = field.shape[axes[0] :]
    if boundary == "valid":
        out_shape = tuple(n - w + 1 for n, w in zip(shape, sizes))
        offset = tuple(w // 2 for w in sizes)
    else:
        out_shape = shape
        offset = (0,) * len(sizes)
    is_int = field.dtype.kind in "biuO"
    out = np.zeros(lead + out_shape, dtype=object if is_int else np.float64)
    for li in np.ndindex(lead):
        sub = field[li]
        for idx in np.ndindex(out_shape):
            sl = []
            for k, w in enumerate(sizes):
                c = idx[k] + offset[k]
                sl.append(slice(max(c - w // 2, 0), min(c - w // 2 + w, shape[k])))
            win = sub[tuple(sl)]
            if is_int:
                out[li + idx] = sum(int(v) for v in win.ravel())
            else:
                out[li + idx] = math.fsum(float(v) for v in win.ravel())
    return out
