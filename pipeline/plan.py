"""The plan: pure geometry and dtype decisions, made before anything is read or written.

Given what is known about the inputs (shape, dtype, storage chunks, dimension names) and what the
user asked for (expression, window, boundary, chunks), :func:`make_plan` decides

* the window axes and, per axis, the window arms ``lo = W // 2`` and ``hi = W - 1 - lo``;
* the output shape (``shrink``: the input's; ``valid``: ``W - 1`` smaller per window axis);
* the output dtype, chosen so that the result cannot overflow (see :func:`sum_dtype`);
* the processing grid: output blocks that are unions of whole output storage chunks (so every
  write is chunk-aligned), the matching input blocks, and the halo (``depth``) per axis; no block
  is narrower than the halo, so dask never re-chunks behind our back;
* an estimate of the memory one task needs.

Nothing here touches zarr or dask; it is tested as plain functions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ConfigError, InputError
from .expr import Expr, parse_expression

#: Auto processing blocks are grown to at least this many pixels per window axis ...
MIN_AUTO_CHUNK = 256
#: ... and split (by halving, to stay aligned with the storage chunks) down to at most this
#: (1024² blocks keep the blocks in flight, with their encode buffers, within the memory budget
#: of the direct executor; larger blocks were not faster end to end).
MAX_AUTO_CHUNK = 1024
#: Processing block side when the inputs carry no chunking (numpy arrays).
DEFAULT_CHUNK = 1024

INT32 = np.dtype("int32")
INT64 = np.dtype("int64")
FLOAT64 = np.dtype("float64")

_ACCEPTED_KINDS = "biuf"  # bool (masks), signed, unsigned, float


@dataclass(frozen=True)
class ArraySpec:
    """What the plan needs to know about one input array (no data)."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: tuple[int, ...] | None = None  #: storage chunk shape, if chunked
    dims: tuple[str, ...] | None = None  #: dimension names, if known
    source: str = ""  #: where it comes from, for messages ("data/seed.zarr/a")


@dataclass(frozen=True)
class Plan:
    expr: Expr
    reduce: str
    boundary: str
    window_axes: tuple[int, ...]
    size: tuple[int, ...]  #: window size per window axis
    lo: tuple[int, ...]
    hi: tuple[int, ...]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    in_dtypes: Mapping[str, np.dtype]
    acc_dtype: np.dtype  #: dtype the window reduction accumulates in
    out_dtype: np.dtype
    out_bounds: tuple[int, int] | None  #: exact bounds of an integer result
    dims: tuple[str, ...]
    storage_chunks: tuple[int, ...]  #: output Zarr chunk shape
    in_chunks: tuple[tuple[int, ...], ...]  #: processing blocks, input coordinates
    out_chunks: tuple[tuple[int, ...], ...]  #: processing blocks, output coordinates
    depth: tuple[int, ...]  #: halo per axis (0 on axes with one block or no window)
    notes: tuple[str, ...] = field(default=())
    stats: tuple[str, ...] = ("sum",)  #: the reducers, in output order
    out_dtypes: Mapping[str, np.dtype] = field(default_factory=dict)  #: per statistic
    stat_bounds: Mapping[str, tuple[int, int] | None] = field(default_factory=dict)  #: exact bounds of integer results
    fill_values: Mapping[str, Any] = field(default_factory=dict)  #: value of windows without valid pixels
    missing_possible: bool = False  #: whether any pixel can be missing (NaN, nodata)
    nodata: Mapping[str, Any] = field(default_factory=dict)  #: per used input: its nodata value or None
    cval: int | float = 0  #: value outside the image for boundary 'constant'
    shape: str = "rect"  #: 'rect', 'disk' or 'weights'
    footprint: tuple[tuple[bool, ...], ...] | None = None  #: disk/weights: which window pixels count
    weights: tuple[tuple[int | float, ...], ...] | None = None  #: window.weights, row-major
    in_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  #: per used input (may broadcast)

    @property
    def multi(self) -> bool:
        """Several statistics: ops.build then gives a packed block, one array per statistic."""
        return len(self.stats) > 1

    @property
    def wrap_axes(self) -> tuple[int, ...]:
        """Window axes whose halo comes from the opposite image edge (dask 'periodic')."""
        if self.boundary != "wrap":
            return ()
        return tuple(ax for ax in self.window_axes if self.depth[ax] > 0)

    @property
    def ndim(self) -> int:
        return len(self.in_shape)

    @property
    def nblocks(self) -> tuple[int, ...]:
        return tuple(len(c) for c in self.out_chunks)

    @property
    def task_bytes(self) -> int:
        """Estimated peak bytes held by one task (inputs with halo, expression temporaries,
        prefix sums and the output block)."""
        ext = 1
        for ax, chunks in enumerate(self.in_chunks):
            ext *= max(chunks) + 2 * self.depth[ax]
        per_pixel = sum(d.itemsize for d in self.in_dtypes.values())
        per_pixel += 2 * self.expr.dtype.itemsize + 3 * self.acc_dtype.itemsize + self.out_dtype.itemsize
        if self.stats != ("sum",) or self.shape != "rect" or self.missing_possible or self.boundary not in ("shrink", "valid"):
            # general path: padded copy, missing mask, valid counts, float64 temporaries, every output
            per_pixel += self.expr.dtype.itemsize + 1 + 4 + 3 * 8
            per_pixel += sum(dt.itemsize for dt in self.out_dtypes.values()) * (2 if self.multi else 1)
        return ext * per_pixel

    def centres(self, block_index: Sequence[int]) -> tuple[tuple[int, int], ...]:
        """Per axis, the local range ``[start, stop)`` of the centres the block at
        ``block_index`` computes, relative to its halo-extended data (as dask's ``map_overlap``
        with ``boundary="none"`` delivers it: halo on interior sides only)."""
        out = []
        for ax, k in enumerate(block_index):
            chunks = self.in_chunks[ax]
            s = sum(chunks[:k])
            e = s + chunks[k]
            a = s - self.depth[ax] if (k > 0 or ax in self.wrap_axes) else s  # where the delivered data starts
            if ax in self.window_axes and self.boundary == "valid":
                i = self.window_axes.index(ax)
                n = self.in_shape[ax]
                s, e = max(s, self.lo[i]), min(e, n - self.hi[i])
            out.append((s - a, e - a))
        return tuple(out)

    def describe(self) -> str:
        """A human-readable summary, as printed by ``pipeline validate``."""
        names = ", ".join(f"{n} ({d})" for n, d in self.in_dtypes.items())
        blocks = "x".join(str(n) for n in self.nblocks)
        lines = [
            f"op:            {self.expr.text}   [computed as {self.expr.dtype}]",
            f"inputs:        {names}",
            f"input shape:   {self.in_shape}  dims {self.dims}",
            f"window:        {'x'.join(map(str, self.size))} {self.shape} on axes {self.window_axes}, "
            f"reduce {', '.join(self.stats)}, boundary {self.boundary}"
            + (f" (cval {self.cval})" if self.boundary == "constant" else ""),
            *(
                f"{('output ' + st if self.multi else 'output') + ':':<15}shape {self.out_shape}, dtype {self.out_dtypes.get(st, self.out_dtype)}"
                + (f", values in [{b[0]}, {b[1]}]" if (b := self.stat_bounds.get(st, self.out_bounds)) else "")
                + (f", fill {self.fill_values[st]}" if self.fill_values.get(st) is not None else "")
                for st in self.stats
            ),
            f"output chunks: {self.storage_chunks} (Zarr); processing blocks {blocks} = {math.prod(self.nblocks)}",
            f"halo (depth):  {self.depth}",
            f"memory/task:   ~{_human(self.task_bytes)}",
        ]
        lines += [f"note:          {n}" for n in self.notes]
        return "\n".join(lines)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def sum_dtype(bounds: tuple[int, int] | None, area: int) -> tuple[np.dtype, tuple[int, int] | None]:
    """Output dtype of a window sum of ``area`` values each within ``bounds``.

    The rule: a float expression gives float64; an integer (or boolean) expression with exact
    bounds ``[l, h]`` gives sums within ``[min(l, area*l), max(h, area*h)]`` (a truncated window
    holds between 1 and ``area`` values); the output is int32 when that range fits int32, else
    int64; beyond int64 the config is refused.
    """
    if bounds is None:
        return FLOAT64, None
    lo, hi = bounds
    out = (min(lo, area * lo), max(hi, area * hi))
    for dt in (INT32, INT64):
        info = np.iinfo(dt)
        if info.min <= out[0] and out[1] <= info.max:
            return dt, out
    raise ConfigError(
        f"window sums can reach {out[1] if abs(out[1]) >= abs(out[0]) else out[0]}, beyond int64; "
        "use a smaller window or scale the expression",
        where="op",
    )


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


def _fit_any(lo: int, hi: int, first: np.dtype | None = None) -> np.dtype | None:
    """``first`` when it holds ``[lo, hi]``, else the smallest of int16/int32/int64 that does."""
    for dt in ((first,) if first is not None and first.kind in "iu" else ()) + (np.dtype("int16"), INT32, INT64):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dt)
    return None


def _holds(dt: np.dtype, bounds: tuple[int, int] | None, is_float: bool) -> bool:
    """Whether ``dt`` holds every result: integer ``bounds`` exactly, or float results."""
    if is_float:
        return dt.kind == "f"
    lo, hi = bounds
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return info.min <= lo and hi <= info.max
    if dt.kind == "f":
        limit = 2 ** (np.finfo(dt).nmant + 1)
        return -limit <= lo and hi <= limit
    if dt.kind == "b":
        return 0 <= lo and hi <= 1
    return False


def _user_dtype(name: str, stat: str, auto: np.dtype, bounds, is_float: bool, key: str) -> np.dtype:
    try:
        dt = np.dtype(name)
    except TypeError:
        raise ConfigError(f"unknown dtype {name!r}", where=key) from None
    if dt.kind not in "biuf":
        raise ConfigError(f"dtype {dt} is not supported (integer, float or bool)", where=key)
    if not _holds(dt, bounds, is_float):
        what = "floating-point results" if is_float else f"results in [{bounds[0]}, {bounds[1]}]"
        raise ConfigError(f"{dt} cannot hold the {stat} {what}; use {auto}", where=key)
    return dt


#: At most this many processing blocks per run (checked before any block list is built, so that a
#: hostile zarr.json declaring shape (2**40, 2**40) is refused in microseconds, not by the OOM killer).
MAX_BLOCKS = 10_000_000
#: At most this many pixels in a disk or weights footprint (2048 x 2048).
MAX_FOOTPRINT = 2048 * 2048


def _axis_grid(m: int, c: int, depth: int) -> tuple[int, ...]:
    """Blocks of ``c`` over ``m`` pixels; a last block narrower than ``depth`` joins the one before."""
    if m == 0:
        return (0,)
    if m // max(1, c) > MAX_BLOCKS:
        raise ConfigError(f"{m} pixels in blocks of {c} make more than {MAX_BLOCKS:,} blocks; use larger compute.chunks", where="compute.chunks")
    blocks = [c] * (m // c) + ([m % c] if m % c else [])
    if len(blocks) > 1 and blocks[-1] < depth:
        last = blocks.pop()
        blocks[-1] += last
    return tuple(blocks)


def _auto_chunk(storage: int | None, n: int, depth: int) -> int:
    c = storage if storage else DEFAULT_CHUNK
    while c > MAX_AUTO_CHUNK and c % 2 == 0:
        c //= 2
    if c < max(MIN_AUTO_CHUNK, depth):
        c *= math.ceil(max(MIN_AUTO_CHUNK, depth) / c)
    return max(1, min(c, n))


def check_inputs(specs: Sequence[ArraySpec]) -> tuple[int, ...]:
    """Refuse input arrays the pipeline cannot process exactly (dtype, emptiness, shapes that do
    not broadcast); returns the broadcast shape."""
    for s in specs:
        if s.dtype.kind not in _ACCEPTED_KINDS or s.dtype.fields is not None:
            raise InputError(
                f"dtype {s.dtype} is not supported (bool, integer or floating point images only)",
                where=s.source or s.name,
            )
        if len(s.shape) == 0:
            raise InputError("is a scalar; an image needs at least one dimension", where=s.source or s.name)
        if math.prod(s.shape) == 0:
            raise InputError(f"is empty (shape {s.shape})", where=s.source or s.name)
    first = specs[0]
    shape = first.shape
    for s in specs[1:]:
        try:
            shape = np.broadcast_shapes(shape, s.shape)
        except ValueError:
            raise InputError(
                f"shape {s.shape} does not broadcast with {first.source or first.name} {first.shape}",
                where=s.source or s.name,
            ) from None
    return tuple(shape)


REDUCERS = ("sum", "mean", "min", "max", "var", "std", "count")
BOUNDARIES = ("shrink", "valid", "constant", "reflect", "mirror", "nearest", "wrap")
#: boundaries that extend the image by padding (scipy.ndimage's modes)
PADDED = ("constant", "reflect", "mirror", "nearest", "wrap")


def make_plan(
    op: str,
    inputs: Mapping[str, ArraySpec],
    *,
    size: int | Sequence[int] | None = None,
    reduce: str | Sequence[str] = "sum",
    boundary: str = "shrink",
    chunks: str | int | Sequence[int] = "auto",
    cval: int | float = 0,
    shape: str = "rect",
    weights: Sequence[Sequence[int | float]] | None = None,
    axes: Sequence[int | str] | None = None,
    nodata: Mapping[str, int | float | None] | None = None,
    dtype: str | Mapping[str, str] | None = None,
    fill_value: int | float | None = None,
) -> Plan:
    """Decide everything about a run from input metadata alone (no I/O)."""
    stats = (reduce,) if isinstance(reduce, str) else tuple(reduce)
    if not stats:
        raise ConfigError("needs at least one reducer", where="window.reduce")
    for st in stats:
        if st not in REDUCERS:
            raise ConfigError(f"unknown reducer {st!r} (available: {', '.join(REDUCERS)})", where="window.reduce")
    if len(set(stats)) != len(stats):
        raise ConfigError(f"reducers must not repeat, got {list(stats)}", where="window.reduce")
    if boundary not in BOUNDARIES:
        raise ConfigError(f"unknown boundary {boundary!r} (available: {', '.join(BOUNDARIES)})", where="window.boundary")
    if shape not in ("rect", "disk"):
        raise ConfigError(f"unknown window shape {shape!r} (available: rect, disk)", where="window.shape")
    if isinstance(cval, bool) or not isinstance(cval, (int, float, np.integer, np.floating)) or math.isnan(cval):
        raise ConfigError(f"must be a number, got {cval!r}", where="window.cval")
    expr = parse_expression(op, {name: spec.dtype for name, spec in inputs.items()})
    used = [inputs[n] for n in expr.names]
    in_shape = check_inputs(used)
    full = [s for s in used if s.shape == in_shape]
    ref = full[0] if full else used[0]
    ndim = len(in_shape)

    wmat = None
    kind = "rect"
    if weights is not None:
        wmat = np.asarray(weights, dtype=object)
        if wmat.ndim != 2 or wmat.size == 0:
            raise ConfigError("must be a non-empty matrix (a list of rows)", where="window.weights")
        if shape != "rect":
            raise ConfigError("give either window.weights or window.shape: disk, not both", where="window.weights")
        if size is not None and tuple(_window(size, ndim, 2)[1]) != wmat.shape:
            raise ConfigError(f"window.size {size} differs from the weights' shape {list(wmat.shape)}", where="window.size")
        for v in wmat.ravel():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"weights must be finite numbers, got {v!r}", where="window.weights")
        size = wmat.shape
        kind = "weights"
        for st in stats:
            if st in ("var", "std"):
                raise ConfigError(f"reducer {st!r} is not available with window.weights (sum, mean, min, max, count are)", where="window.reduce")
    elif shape == "disk":
        kind = "disk"
    if size is None:
        raise ConfigError("required key is missing", where="window.size")
    nwin = None
    if axes is not None:
        nwin = len(axes)
    _, sizes = _window(size, ndim, nwin)
    if kind != "rect" and len(sizes) != 2:
        raise ConfigError(f"a {kind} window needs two window axes", where="window.shape" if kind == "disk" else "window.weights")
    if axes is not None and len(axes) != len(sizes):
        raise ConfigError(f"{len(axes)} axes for a {len(sizes)}-D window size", where="window.axes")
    waxes = window_axes(axes, ndim, ref.dims if ref.dims and len(ref.dims) == ndim else None, len(sizes))
    # the window axes in increasing order, sizes along
    order = sorted(range(len(waxes)), key=lambda i: waxes[i])
    if wmat is not None and order != list(range(len(order))):
        wmat = wmat.T
    axes_t = tuple(waxes[i] for i in order)
    sizes = tuple(sizes[i] for i in order)
    lo = tuple(w // 2 for w in sizes)
    hi = tuple(w - 1 - l for w, l in zip(sizes, lo))

    if kind != "rect" and math.prod(sizes) > MAX_FOOTPRINT:
        raise ConfigError(
            f"a {kind} window of {' x '.join(map(str, sizes))} has {math.prod(sizes):,} pixels, more than "
            f"{MAX_FOOTPRINT:,} (2048 x 2048); use a rect window or a smaller size",
            where="window.size",
        )
    if kind == "disk":
        fp = disk_footprint(sizes)
    elif kind == "weights":
        fp = np.array([[v != 0 for v in row] for row in wmat.tolist()], dtype=bool)
    else:
        fp = None
    area = int(fp.sum()) if fp is not None else math.prod(sizes)

    # ---- missing pixels and nodata
    nodata = dict(nodata or {})
    nd_used: dict[str, Any] = {}
    for n in expr.names:
        v = nodata.get(n)
        dt = inputs[n].dtype
        if v is not None:
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise ConfigError(f"must be a number, got {v!r}", where=f"inputs.{n}.nodata")
            if dt.kind in "iu":
                if isinstance(v, float) and not v.is_integer():
                    raise ConfigError(f"{v} is not an integer; {n} is {dt}", where=f"inputs.{n}.nodata")
                info = np.iinfo(dt)
                if not info.min <= int(v) <= info.max:
                    raise ConfigError(f"{int(v)} is outside the range of {dt} [{info.min}, {info.max}]", where=f"inputs.{n}.nodata")
                v = int(v)
            elif isinstance(v, float) and math.isnan(v):
                v = None  # NaN is always missing in float inputs
        nd_used[n] = v
    missing_possible = expr.dtype.kind == "f" or any(
        inputs[n].dtype.kind == "f" or nd_used[n] is not None for n in expr.names
    )

    # ---- values the reducers see: the expression, plus cval for 'constant'
    fb = expr.bounds
    is_float = fb is None
    if boundary == "constant" and fb is not None:
        if isinstance(cval, (float, np.floating)) and not float(cval).is_integer():
            fb, is_float = None, True
        else:
            c = int(cval)
            fb = (min(fb[0], c), max(fb[1], c))
    int_weights = wmat is not None and all(isinstance(v, int) or float(v).is_integer() for v in wmat.ravel())

    # ---- dtypes per statistic
    user_dt = dtype if isinstance(dtype, Mapping) else ({st: dtype for st in stats} if dtype else {})
    for k in user_dt:
        if k not in stats:
            raise ConfigError(f"{k!r} is not one of the reducers {list(stats)}", where="output.dtype")
    empty_possible = missing_possible  # shrink/valid/padded windows always hold an in-image pixel
    out_dtypes: dict[str, np.dtype] = {}
    stat_bounds: dict[str, tuple[int, int] | None] = {}
    fills: dict[str, Any] = {}
    acc_dtype = FLOAT64
    for st in stats:
        fill = None
        bounds: tuple[int, int] | None = None
        if st == "count":
            dt, bounds = INT32, (0, area)
        elif st in ("mean", "var", "std"):
            dt = FLOAT64
            fill = math.nan if empty_possible else None
        elif st == "sum":
            if kind == "weights":
                if is_float or not int_weights:
                    dt, bounds = FLOAT64, None
                else:
                    l, h = fb
                    ws = [int(v) for v in wmat.ravel()]
                    bounds = (sum(min(0, w * l, w * h) for w in ws), sum(max(0, w * l, w * h) for w in ws))
                    dt = _fit_any(*bounds, INT32)
                    if dt is None:
                        raise ConfigError(f"weighted sums can reach {bounds}, beyond int64", where="window.weights")
            else:
                dt, bounds = sum_dtype(None if is_float else fb, area)
            acc_dtype = dt
        else:  # min, max
            if is_float:
                dt = expr.dtype if expr.dtype.kind == "f" and boundary != "constant" else FLOAT64
            else:
                bounds = fb
                dt = _fit_any(*bounds, expr.dtype if expr.dtype.kind in "iu" else None)
                if dt is None:  # pragma: no cover - expression bounds always fit int64
                    dt = FLOAT64
                if expr.dtype.kind == "b" and boundary != "constant":
                    dt = expr.dtype
        if dt.kind in "iub" and empty_possible and st != "count":
            if fill_value is not None:
                if isinstance(fill_value, float) and not float(fill_value).is_integer():
                    raise ConfigError(f"{fill_value} is not an integer; the {st} output is integer", where="output.fill_value")
                fill = int(fill_value)
                hull = (min(bounds[0], fill), max(bounds[1], fill))
                dt = _fit_any(*hull, dt) or dt
            else:  # the lowest value of an integer dtype that no result can equal
                cand = _fit_any(*bounds, dt)
                while cand is not None and np.iinfo(cand).min >= bounds[0]:
                    cand = _fit_any(int(np.iinfo(cand).min) - 1, bounds[1])
                if cand is None:
                    raise ConfigError(f"no integer dtype leaves room for a fill value below {bounds[0]}; set output.fill_value", where="output.fill_value")
                dt, fill = cand, int(np.iinfo(cand).min)
            bounds = (min(bounds[0], fill), max(bounds[1], fill))
        elif dt.kind == "f" and empty_possible:
            fill = math.nan
        if st in user_dt:
            key = "output.dtype" + (f".{st}" if isinstance(dtype, Mapping) else "")
            dt = _user_dtype(user_dt[st], st, dt, bounds, dt.kind == "f", key)
            if dt.kind == "f" and fill is not None and fill_value is None:
                fill = math.nan
        out_dtypes[st] = dt
        stat_bounds[st] = bounds
        fills[st] = fill

    out_shape = list(in_shape)
    if boundary == "valid":
        for ax, w in zip(axes_t, sizes):
            if in_shape[ax] < w:
                raise ConfigError(
                    f"window {w} is larger than the image ({in_shape[ax]} pixels on axis {ax}); "
                    "boundary 'valid' would give an empty output",
                    where="window.size",
                )
            out_shape[ax] = in_shape[ax] - w + 1

    if isinstance(chunks, str):
        if chunks != "auto":
            raise ConfigError(f"must be 'auto', an int or a list of ints, got {chunks!r}", where="compute.chunks")
        requested: tuple[int | None, ...] = (None,) * len(axes_t)
    elif isinstance(chunks, (int, np.integer)):
        requested = (int(chunks),) * len(axes_t)
    else:
        requested = tuple(int(c) for c in chunks)
        if len(requested) != len(axes_t):
            raise ConfigError(f"needs {len(axes_t)} values (one per window axis), got {len(requested)}", where="compute.chunks")
        requested = tuple(requested[i] for i in order)
    if any(c is not None and c < 1 for c in requested):
        raise ConfigError(f"chunk sizes must be >= 1, got {list(requested)}", where="compute.chunks")

    notes: list[str] = []
    storage = list(ref.chunks) if ref.chunks and len(ref.chunks) == ndim else [None] * ndim
    storage_chunks: list[int] = []
    in_chunks: list[tuple[int, ...]] = []
    out_chunks: list[tuple[int, ...]] = []
    depth: list[int] = []
    for ax in range(ndim):
        m = out_shape[ax]
        if ax not in axes_t:
            c = storage[ax] or in_shape[ax]
            storage_chunks.append(min(c, m))
            grid = _axis_grid(m, min(c, m), 0)
            in_chunks.append(grid)
            out_chunks.append(grid)
            depth.append(0)
            continue
        i = axes_t.index(ax)
        h = max(lo[i], hi[i])
        want = requested[i]
        if want is None:
            c = _auto_chunk(storage[ax], m, h)
        else:
            c = min(want, m)
            if c < h and c < m:
                notes.append(f"chunk {want} on axis {ax} is narrower than the halo {h}; using {h}")
                c = min(h, m)
        grid = _axis_grid(m, c, h)
        storage_chunks.append(c)
        out_chunks.append(grid)
        if boundary == "valid":
            g = list(grid)
            g[0] += lo[i]
            g[-1] += hi[i]
            grid = tuple(g)
        in_chunks.append(grid)
        depth.append(h if len(grid) > 1 else 0)

    nblocks = math.prod(len(g) for g in out_chunks)
    if nblocks > MAX_BLOCKS:
        raise ConfigError(
            f"output shape {out_shape} makes {nblocks:,} processing blocks, more than {MAX_BLOCKS:,}; "
            "use larger compute.chunks (or check the inputs' shapes)",
            where="compute.chunks",
        )
    dims = ref.dims if ref.dims and len(ref.dims) == ndim else _default_dims(ndim, axes_t)
    first = stats[0]
    return Plan(
        expr=expr,
        reduce=first if len(stats) == 1 else ",".join(stats),
        boundary=boundary,
        window_axes=axes_t,
        size=sizes,
        lo=lo,
        hi=hi,
        in_shape=in_shape,
        out_shape=tuple(out_shape),
        in_dtypes={n: inputs[n].dtype for n in expr.names},
        acc_dtype=acc_dtype,
        out_dtype=out_dtypes[first],
        out_bounds=stat_bounds[first],
        dims=tuple(dims),
        storage_chunks=tuple(storage_chunks),
        in_chunks=tuple(in_chunks),
        out_chunks=tuple(out_chunks),
        depth=tuple(depth),
        notes=tuple(notes),
        stats=stats,
        out_dtypes=out_dtypes,
        stat_bounds=stat_bounds,
        fill_values=fills,
        missing_possible=missing_possible,
        nodata=nd_used,
        cval=cval,
        shape=kind,
        footprint=None if fp is None else tuple(tuple(bool(v) for v in row) for row in fp),
        weights=None if wmat is None else tuple(tuple(v for v in row) for row in wmat.tolist()),
        in_shapes={n: inputs[n].shape for n in expr.names},
    )


def _default_dims(ndim: int, window: Sequence[int] = ()) -> tuple[str, ...]:
    """Names for unnamed dimensions: ``y`` and ``x`` for the window axes (``x`` alone for a 1-D
    window), ``dim_0``, ``dim_1``, ... for the others."""
    window = tuple(window) or tuple(range(max(0, ndim - 2), ndim))
    spatial = dict(zip(window, ("y", "x") if len(window) == 2 else ("x",)))
    names, k = [], 0
    for ax in range(ndim):
        if ax in spatial:
            names.append(spatial[ax])
        else:
            names.append(f"dim_{k}")
            k += 1
    return tuple(names)
