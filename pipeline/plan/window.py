"""The window: its axes (named or guessed from dimension names), sizes, arms, footprint
(rect, disk or weights) and area; pure functions of the config and the inputs' metadata."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.errors import ConfigError

#: Largest window side accepted (configs and the API); larger is almost surely a typo and would
#: only waste memory.
MAX_WINDOW = 16_385
#: At most this many pixels in a disk or weights footprint (2048 x 2048).
MAX_FOOTPRINT = 2048 * 2048



def _window(size: int | Sequence[int], ndim: int, nwin: int | None = None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Window axes and sizes: the last two axes (the last one for 1-D data)."""
    if isinstance(size, (int, np.integer)):
        sizes = (int(size),) * (nwin if nwin is not None else min(2, ndim))
    else:
        sizes = tuple(int(s) for s in size)
    if len(sizes) > ndim:
        raise ConfigError(f"a {len(sizes)}-D window needs inputs with at least {len(sizes)} dimensions, got {ndim}", where="window.size")
    if any(s < 1 for s in sizes):
        raise ConfigError(f"window sizes must be >= 1, got {list(sizes)}", where="window.size")
    axes = tuple(range(ndim - len(sizes), ndim))
    return axes, sizes


#: Dimension-name pairs recognised as the image's (row, column) axes, compared in lower case.
SPATIAL_PAIRS = (("y", "x"), ("lat", "lon"), ("latitude", "longitude"), ("row", "col"), ("rows", "cols"))


def spatial_axes(dims: Sequence[str] | None) -> tuple[int, int] | None:
    """The (row, column) axes named by a pair of :data:`SPATIAL_PAIRS`, or None."""
    if not dims:
        return None
    lower = [str(d).lower() for d in dims]
    for row, col in SPATIAL_PAIRS:
        if row in lower and col in lower:
            return lower.index(row), lower.index(col)
    return None


def window_axes(
    axes: Sequence[int | str] | None, ndim: int, dims: Sequence[str] | None, nwin: int, *, key: str = "window.axes"
) -> tuple[int, ...]:
    """The window axes: ``axes`` (names or ints) if given; else the axes named as a pair of
    :data:`SPATIAL_PAIRS` (``y``/``x``, ``lat``/``lon``, ...); else, for 1-D and 2-D inputs, the
    last ``nwin`` axes.  A >=3-D input without such names is refused (naming ``key``): a
    ``(rows, cols, 3)`` image and a ``(bands, rows, cols)`` stack look alike, and a window over
    the wrong axes would be silently wrong."""
    if axes is None:
        pair = spatial_axes(dims)
        if pair is not None and nwin <= 2:
            return pair if nwin == 2 else pair[1:]
        if ndim <= 2:
            return tuple(range(ndim - nwin, ndim))
        named = f"dimensions {list(dims)}" if dims else "unnamed dimensions"
        raise ConfigError(
            f"cannot tell which axes of a {ndim}-D input the window runs over ({named}); "
            f"set {key} to the two image axes, e.g. [0, 1] for (rows, cols, bands) or [1, 2] for (bands, rows, cols)"
            + ("" if dims else ", or name the dimensions y and x"),
            where=key,
        )
    out = []
    for a in axes:
        if isinstance(a, str):
            if not dims or a not in dims:
                raise ConfigError(f"no dimension named {a!r} (dimensions: {list(dims) if dims else 'unnamed'})", where=key)
            out.append(list(dims).index(a))
        else:
            if not -ndim <= int(a) < ndim:
                raise ConfigError(f"axis {a} is out of range for {ndim}-D inputs", where=key)
            out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ConfigError(f"window axes must differ, got {list(axes)}", where=key)
    return tuple(out)


def disk_footprint(size: Sequence[int]) -> np.ndarray:
    """The disk (ellipse) footprint of a window of ``size`` (rows, cols): the pixels whose centres
    lie in the ellipse inscribed in the window rectangle, i.e. offsets ``(dy, dx)`` (each in
    ``-W//2 … W-1-W//2``) with ``((dy-cy)/ry)**2 + ((dx-cx)/rx)**2 <= 1``, where ``r = W/2`` and
    ``c = (W-1)/2 - W//2`` is the window's geometric centre.  Never empty; W = 1, 2, 3 give the
    full square, W = 5 the square less its 4 corners."""
    grids = []
    for w in size:
        d = np.arange(w) - w // 2
        r = w / 2
        c = (w - 1) / 2 - w // 2
        grids.append(((d - c) / r) ** 2)
    return (grids[0][:, None] + grids[1][None, :]) <= 1 + 1e-9


@dataclass(frozen=True)
class Window:
    """The window, its axes in increasing order (sizes, arms and weights along)."""

    axes: tuple[int, ...]
    sizes: tuple[int, ...]
    lo: tuple[int, ...]
    hi: tuple[int, ...]
    order: tuple[int, ...]  #: the given axes' positions, sorted by axis
    kind: str  #: 'rect', 'disk' or 'weights'
    area: int  #: pixels that count in a whole window
    footprint: tuple[tuple[bool, ...], ...] | None = None
    weights: tuple[tuple[int | float, ...], ...] | None = None


def _check_weights(weights, shape: str) -> np.ndarray:
    wmat = np.asarray(weights, dtype=object)
    if wmat.ndim != 2 or wmat.size == 0:
        raise ConfigError("must be a non-empty matrix (a list of rows)", where="window.weights")
    if shape != "rect":
        raise ConfigError("give either window.weights or window.shape: disk, not both", where="window.weights")
    for v in wmat.ravel():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError(f"weights must be finite numbers, got {v!r}", where="window.weights")
    if not (wmat != 0).any():
        raise ConfigError("must hold at least one non-zero value (all are zero)", where="window.weights")
    return wmat


def check_weighted_reducers(reds) -> None:
    for r in reds:
        if not r.with_weights:
            raise ConfigError(f"reducer {r.name!r} is not available with window.weights (sum, mean, min, max, count are)", where="window.reduce")


def _origins(origin, sizes: Sequence[int]) -> tuple[int, ...]:
    """``window.origin`` per window axis (in the order of ``sizes``), each checked as scipy.ndimage
    does: ``-(W // 2) <= origin <= (W - 1) // 2``."""
    n = len(sizes)
    if isinstance(origin, (int, np.integer)):
        out = (int(origin),) * n
    else:
        out = tuple(int(o) for o in origin)
        if len(out) != n:
            raise ConfigError(f"{len(out)} values for a {n}-D window (one per window axis, or one int)", where="window.origin")
    for o, w in zip(out, sizes):
        if not -(w // 2) <= o <= (w - 1) // 2:
            raise ConfigError(
                f"{o} is out of range for a window of size {w} (an origin lies in -(W // 2) … (W - 1) // 2: "
                f"{-(w // 2)} … {(w - 1) // 2})",
                where="window.origin",
            )
    return out


def _geometry(size, wmat: np.ndarray | None, ndim: int, dims, axes) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """The window axes and sizes in the order given, and ``order`` (the given axes' positions,
    sorted by axis).  A weights matrix's rows and columns run along the window axes in increasing
    order, whatever the order ``axes`` names them in (scipy.ndimage.correlate's convention)."""
    if wmat is None and size is None:
        raise ConfigError("required key is missing", where="window.size")
    if axes is not None and wmat is not None and len(axes) != 2:
        raise ConfigError(f"{len(axes)} axes for a 2-D weights matrix", where="window.axes")
    given = None if size is None else _window(size, ndim, 2 if wmat is not None else None if axes is None else len(axes))[1]
    n = 2 if wmat is not None else len(given or ())
    if axes is not None and len(axes) != n:
        raise ConfigError(f"{len(axes)} axes for a {n}-D window size", where="window.axes")
    waxes = window_axes(axes, ndim, dims, n)
    order = tuple(sorted(range(n), key=lambda i: waxes[i]))
    if wmat is not None:
        shape = tuple(wmat.shape[order.index(i)] for i in range(2))  # the matrix's shape, in the axes' order
        if given is not None and given != shape:
            raise ConfigError(
                f"window.size {size} differs from the shape {list(wmat.shape)} of the weights (rows along the lower window axis: "
                f"size {list(shape)} in the order of window.axes)",
                where="window.size",
            )
        given = shape
    assert given is not None  # a size or a weights matrix
    return waxes, given, order


def plan_window(
    ndim: int, dims: Sequence[str] | None, reds, *, size=None, shape: str = "rect", weights=None, axes=None, origin=0
) -> Window:
    """The window from ``window.size``/``shape``/``weights``/``axes``/``origin``: axes sorted,
    arms ``lo = W // 2 + origin``, ``hi = W - 1 - lo`` (scipy.ndimage's placement; ``size`` and
    ``origin`` in the order of ``axes``), the footprint and its area.  A weights matrix (or
    footprint) runs along the window axes in increasing order (scipy.ndimage.correlate's
    convention); a matrix of integer ones is the plain rectangle (var and std too)."""
    wmat = None if weights is None else _check_weights(weights, shape)
    waxes, given, order = _geometry(size, wmat, ndim, dims, axes)
    if wmat is not None and all(type(v) is int and v == 1 for v in wmat.ravel()):
        wmat = None
    if wmat is not None:
        check_weighted_reducers(reds)
    kind = "weights" if wmat is not None else shape
    if kind == "disk" and len(given) != 2:
        raise ConfigError(f"a disk window needs two window axes, got {len(given)}", where="window.shape")
    origins = _origins(origin, given)
    sizes = tuple(given[i] for i in order)
    lo = tuple(given[i] // 2 + origins[i] for i in order)
    if kind != "rect" and math.prod(sizes) > MAX_FOOTPRINT:
        raise ConfigError(
            f"a {kind} window of {' x '.join(map(str, sizes))} has {math.prod(sizes):,} pixels, more than "
            f"{MAX_FOOTPRINT:,} (2048 x 2048); use a rect window or a smaller size",
            where="window.size",
        )
    if kind == "disk":
        fp = disk_footprint(sizes)
    elif wmat is not None:
        fp = np.array([[v != 0 for v in row] for row in wmat.tolist()], dtype=bool)
    else:
        fp = None
    return Window(
        axes=tuple(waxes[i] for i in order),
        sizes=sizes,
        lo=lo,
        hi=tuple(w - 1 - l for w, l in zip(sizes, lo)),
        order=order,
        kind=kind,
        area=int(fp.sum()) if fp is not None else math.prod(sizes),
        footprint=None if fp is None else tuple(tuple(bool(v) for v in row) for row in fp),
        weights=None if wmat is None else tuple(tuple(v for v in row) for row in wmat.tolist()),
    )


