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


# --------------------------------------------------------------------------------------------
# The general reference: every reducer, boundary, footprint, missing pixels, window axes.


def _source_index(i: int, n: int, boundary: str):
    """Where scipy.ndimage reads pixel ``i`` of an axis of length ``n`` (None: outside)."""
    if 0 <= i < n:
        return i
    if boundary in ("shrink", "valid", "constant"):
        return None
    if boundary == "nearest":
        return min(max(i, 0), n - 1)
    if boundary == "wrap":
        return i % n
    if boundary == "reflect":  # d c b a | a b c d | d c b a
        j = i % (2 * n)
        return j if j < n else 2 * n - 1 - j
    if boundary == "mirror":  # d c b | a b c d | c b a
        if n == 1:
            return 0
        j = i % (2 * n - 2)
        return j if j < n else 2 * n - 2 - j
    raise ValueError(boundary)


def _reduce_values(values, weights, reduce):
    """One window's statistic from its valid ``values`` (Python ints or floats); None when the
    window holds no valid value."""
    import math
    from fractions import Fraction

    if reduce == "count":
        return len(values)
    if not values:
        return None
    exact = all(isinstance(v, int) for v in values) and all(isinstance(w, int) for w in weights)
    if reduce == "sum":
        if exact:
            return sum(w * v for w, v in zip(weights, values))
        return math.fsum(float(w) * float(v) for w, v in zip(weights, values))
    if reduce == "min":
        return min(values)
    if reduce == "max":
        return max(values)
    if reduce == "mean":
        if exact:
            return float(Fraction(sum(w * v for w, v in zip(weights, values)), sum(weights)))
        return math.fsum(float(w) * float(v) for w, v in zip(weights, values)) / math.fsum(map(float, weights))
    if reduce in ("var", "std"):
        if any(isinstance(v, float) and math.isinf(v) for v in values):
            return math.nan
        n = len(values)
        if exact:
            m = Fraction(sum(values), n)
            var = float(sum((Fraction(v) - m) ** 2 for v in values) / n)
        else:
            m = math.fsum(values) / n
            var = math.fsum((v - m) ** 2 for v in values) / n
        return math.sqrt(var) if reduce == "std" else var
    raise ValueError(reduce)


def brute_window(
    field,
    size,
    reduce: str,
    *,
    boundary: str = "shrink",
    cval=0,
    footprint=None,
    weights=None,
    missing=None,
    axes=None,
):
    """The window statistic ``reduce`` of ``field`` at every pixel, by looping over pixels and
    window offsets.  ``field``: integers (exact, as Python ints) or floats; ``missing``: a bool
    array of skipped pixels; ``footprint``/``weights``: a (rows, cols) matrix over the window;
    ``axes``: the two window axes (default: the last two).  Placement: offsets ``-(W//2) …
    W-1-W//2``.  Returns an object array; None marks windows without a valid pixel."""
    field = np.asarray(field)
    is_int = field.dtype.kind in "biuO"
    nd = field.ndim
    if axes is None:
        axes = tuple(range(nd - 2, nd)) if nd >= 2 else (0,)
    sizes = (size,) * len(axes) if np.isscalar(size) else tuple(size)
    f = np.moveaxis(field, axes, tuple(range(nd - len(axes), nd)))
    m = None if missing is None else np.moveaxis(np.broadcast_to(missing, field.shape), axes, tuple(range(nd - len(axes), nd)))
    lead = f.shape[: nd - len(axes)]
    shape = f.shape[nd - len(axes) :]
    if weights is not None:
        wmat = np.asarray(weights, dtype=object)
        sizes = wmat.shape
    elif footprint is not None:
        wmat = np.where(np.asarray(footprint, bool), 1, 0).astype(object)
    else:
        wmat = np.ones(sizes, dtype=object)
    if boundary == "valid":
        out_shape = tuple(n - w + 1 for n, w in zip(shape, sizes))
        offset = tuple(w // 2 for w in sizes)
    else:
        out_shape, offset = shape, (0,) * len(sizes)
    out = np.empty(lead + out_shape, dtype=object)
    for li in np.ndindex(lead):
        for idx in np.ndindex(out_shape):
            values, ws = [], []
            for off in np.ndindex(sizes):
                w = wmat[off]
                if w == 0:
                    continue
                src = []
                for k, o in enumerate(off):
                    src.append(_source_index(idx[k] + offset[k] + o - sizes[k] // 2, shape[k], boundary))
                if any(s is None for s in src):
                    if boundary != "constant":
                        continue
                    v = cval
                elif m is not None and m[li + tuple(src)]:
                    continue
                else:
                    v = f[li + tuple(src)]
                    v = int(v) if is_int else float(v)
                values.append(v)
                ws.append(int(w) if isinstance(w, (int, np.integer)) or float(w).is_integer() else float(w))
            out[li + idx] = _reduce_values(values, ws, reduce)
    return np.moveaxis(out, tuple(range(nd - len(axes), nd)), axes)


def disk_reference(size):
    """The disk footprint as documented: offsets d in -(W//2) … W-1-W//2, centre c = (W-1)/2 - W//2,
    radius r = W/2, pixels with sum(((d-c)/r)**2) <= 1."""
    rows, cols = size
    fp = np.zeros((rows, cols), bool)
    for i in range(rows):
        for j in range(cols):
            total = 0.0
            for d, w in ((i - rows // 2, rows), (j - cols // 2, cols)):
                r = w / 2
                c = (w - 1) / 2 - w // 2
                total += ((d - c) / r) ** 2
            fp[i, j] = total <= 1 + 1e-9
    return fp


def _narrowest(lo, hi, names=("int16", "int32", "int64")):
    return next(np.dtype(t) for t in names if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max)


def readme_int_output(op_bounds, op_dtype, reduce, *, boundary="shrink", cval=0, pixels=1, weights=None, empty=False):
    """The README's output dtype and empty-window fill (None: none) of ``reduce`` over windows of
    an integer ``op`` with exact bounds ``op_bounds`` and dtype ``op_dtype``; None when the output
    is float.  Sum: ``[min(l, n·l), max(h, n·h)]`` over ``pixels`` = n values (integer weights:
    ``[Σ min(0, w·l, w·h), Σ max(0, w·l, w·h)]``) in int32, else int64; min/max: ``op``'s dtype
    widened to hold ``cval`` (boundary constant); count: int32; mean/var/std: float.  When a
    window can be ``empty``, the fill is the lowest value of the dtype, widened (int16, int32,
    int64) until no result can equal it."""
    lo, hi = op_bounds
    if boundary == "constant":
        if not float(cval).is_integer():
            return None
        lo, hi = min(lo, int(cval)), max(hi, int(cval))
    if reduce == "count":
        return np.dtype("int32"), None
    if reduce == "sum":
        if weights is not None:
            ws = [w for row in weights for w in row]
            if not all(float(w).is_integer() for w in ws):
                return None
            lo, hi = sum(min(0, w * lo, w * hi) for w in ws), sum(max(0, w * lo, w * hi) for w in ws)
        else:
            lo, hi = min(lo, pixels * lo), max(hi, pixels * hi)
        out = _narrowest(lo, hi, ("int32", "int64"))
    elif reduce in ("min", "max"):
        out = _narrowest(lo, hi, (op_dtype, "int16", "int32", "int64"))
    else:
        return None
    if not empty:
        return out, None
    if np.iinfo(out).min >= lo:  # the dtype's lowest value is a possible result
        out = _narrowest(lo - 1, hi)
    return out, int(np.iinfo(out).min)


def check(got, ref, fill=None, atol=None):
    """``got`` (numpy) equals the reference: exactly for integers, to 1e-9 for floats; windows
    without a valid pixel hold NaN (float) or ``fill`` (integer)."""
    assert got.shape == ref.shape, (got.shape, ref.shape)
    none = np.vectorize(lambda v: v is None, otypes=[bool])(ref) if ref.size else np.zeros(ref.shape, bool)
    if got.dtype.kind == "f":
        assert np.isnan(got[none]).all()
        r = np.array([np.nan if v is None else float(v) for v in ref.ravel()]).reshape(ref.shape)
        scale = np.nanmax(np.abs(r), initial=1.0)
        np.testing.assert_allclose(got, r, rtol=1e-9, atol=1e-9 * scale if atol is None else atol, equal_nan=True)
    else:
        if none.any():
            assert (got[none] == fill).all(), (got[none], fill)
        g = got.astype(object)
        assert all(int(x) == int(y) for x, y in zip(g[~none].ravel(), ref[~none].ravel())), (got, ref)
