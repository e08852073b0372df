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

from . import registry
from .errors import ConfigError, InputError
from .expr import Expr, parse_expression
from .registry import FLOAT64, fit, sum_dtype  # noqa: F401 - sum_dtype: the plan's rule, re-exported

#: Auto processing blocks are grown to at least this many pixels per window axis ...
MIN_AUTO_CHUNK = 256
#: ... and split (by halving, to stay aligned with the storage chunks) down to at most this
#: (1024² blocks keep the blocks in flight, with their encode buffers, within the memory budget
#: of the direct executor; larger blocks were not faster end to end).
MAX_AUTO_CHUNK = 1024
#: Processing block side when the inputs carry no chunking (numpy arrays).
DEFAULT_CHUNK = 1024

#: the registries' names, kept here for callers that import them from the plan
REDUCERS = registry.REDUCER_NAMES
BOUNDARIES = registry.BOUNDARY_NAMES

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
    boundary: str
    window_axes: tuple[int, ...]
    size: tuple[int, ...]  #: window size per window axis
    lo: tuple[int, ...]
    hi: tuple[int, ...]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    in_dtypes: Mapping[str, np.dtype]
    acc_dtype: np.dtype  #: dtype the window reduction accumulates in
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
    def reduce(self) -> str:
        """The statistics as one name (``"mean,std"`` for several)."""
        return ",".join(self.stats)

    @property
    def out_dtype(self) -> np.dtype:
        """The first statistic's output dtype."""
        return self.out_dtypes[self.stats[0]]

    @property
    def out_bounds(self) -> tuple[int, int] | None:
        """Exact bounds of the first statistic's integer result."""
        return self.stat_bounds[self.stats[0]]

    @property
    def bnd(self) -> registry.Boundary:
        """The boundary's registry entry."""
        return registry.BOUNDARIES[self.boundary]

    @property
    def area(self) -> int:
        """Pixels that count in a whole window (the footprint's, or the rectangle's)."""
        if self.footprint is not None:
            return sum(map(sum, self.footprint))
        return math.prod(self.size)

    @property
    def plain_sum(self) -> bool:
        """The kernel choice, written once: a lone sum over a plain rectangular window without
        padding takes the window-sum paths (:mod:`pipeline.fastsum` when no pixel can be missing,
        else ``kernels.window_sum`` / ``fastwin``); every other plan takes the general
        every-statistic path."""
        return self.stats == ("sum",) and self.shape == "rect" and not self.bnd.pads

    @property
    def multi(self) -> bool:
        """Several statistics: ops.build then gives a packed block, one array per statistic."""
        return len(self.stats) > 1

    @property
    def wrap_axes(self) -> tuple[int, ...]:
        """Window axes whose halo comes from the opposite image edge (dask 'periodic')."""
        if not self.bnd.periodic:
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
        if not self.plain_sum or self.missing_possible:
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
            if ax in self.window_axes and self.bnd.shrinks:
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
                f"{('output ' + st if self.multi else 'output') + ':':<15}shape {self.out_shape}, dtype {self.out_dtypes[st]}"
                + (f", values in [{b[0]}, {b[1]}]" if (b := self.stat_bounds[st]) else "")
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
    """Decide everything about a run from input metadata alone (no I/O): the choices checked
    against the registries, then the window, the missing pixels, the dtypes and the grid."""
    stats = (reduce,) if isinstance(reduce, str) else tuple(reduce)
    reds, bnd = check_choices(stats, boundary, shape, cval)
    expr = parse_expression(op, {name: spec.dtype for name, spec in inputs.items()})
    used = [inputs[n] for n in expr.names]
    in_shape = check_inputs(used)
    full = [s for s in used if s.shape == in_shape]
    ref = full[0] if full else used[0]
    ndim = len(in_shape)
    ref_dims = ref.dims if ref.dims and len(ref.dims) == ndim else None
    win = plan_window(ndim, ref_dims, reds, size=size, shape=shape, weights=weights, axes=axes)
    nd_used, missing_possible = plan_nodata(expr, inputs, nodata)
    values = registry.Values(expr.dtype, registry.window_values(expr.bounds, bnd, cval), win.area, bnd.name, win.weights)
    out_dtypes, stat_bounds, fills, acc_dtype = plan_dtypes(reds, values, missing_possible, dtype, fill_value)
    out_shape = output_shape(in_shape, win.axes, win.sizes, bnd)
    requested = requested_chunks(chunks, win.order)
    storage = ref.chunks if ref.chunks and len(ref.chunks) == ndim else (None,) * ndim
    grid = plan_grid(in_shape, out_shape, storage, win, requested, bnd)
    return Plan(
        expr=expr,
        boundary=boundary,
        window_axes=win.axes,
        size=win.sizes,
        lo=win.lo,
        hi=win.hi,
        in_shape=in_shape,
        out_shape=out_shape,
        in_dtypes={n: inputs[n].dtype for n in expr.names},
        acc_dtype=acc_dtype,
        dims=tuple(ref_dims or _default_dims(ndim, win.axes)),
        storage_chunks=grid.storage_chunks,
        in_chunks=grid.in_chunks,
        out_chunks=grid.out_chunks,
        depth=grid.depth,
        notes=grid.notes,
        stats=stats,
        out_dtypes=out_dtypes,
        stat_bounds=stat_bounds,
        fill_values=fills,
        missing_possible=missing_possible,
        nodata=nd_used,
        cval=cval,
        shape=win.kind,
        footprint=win.footprint,
        weights=win.weights,
        in_shapes={n: inputs[n].shape for n in expr.names},
    )


def check_choices(stats: tuple[str, ...], boundary: str, shape: str, cval: Any) -> tuple[tuple[registry.Reducer, ...], registry.Boundary]:
    """The reducers and the boundary from the registries (unknown names refused), the window
    shape and ``cval`` checked."""
    reds = registry.reducers(stats)
    bnd = registry.boundary(boundary)
    if shape not in ("rect", "disk"):
        raise ConfigError(f"unknown window shape {shape!r} (available: rect, disk)", where="window.shape")
    if isinstance(cval, bool) or not isinstance(cval, (int, float, np.integer, np.floating)) or math.isnan(cval):
        raise ConfigError(f"must be a number, got {cval!r}", where="window.cval")
    return reds, bnd


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


def _check_weights(weights, shape: str, size, ndim: int, reds) -> np.ndarray:
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
    for r in reds:
        if not r.with_weights:
            raise ConfigError(f"reducer {r.name!r} is not available with window.weights (sum, mean, min, max, count are)", where="window.reduce")
    return wmat


def plan_window(
    ndim: int, dims: Sequence[str] | None, reds, *, size=None, shape: str = "rect", weights=None, axes=None
) -> Window:
    """The window from ``window.size``/``shape``/``weights``/``axes``: axes sorted, arms
    ``lo = W // 2``, ``hi = W - 1 - lo``, the footprint and its area."""
    wmat = None if weights is None else _check_weights(weights, shape, size, ndim, reds)
    kind = "weights" if wmat is not None else shape
    if wmat is not None:
        size = wmat.shape
    if size is None:
        raise ConfigError("required key is missing", where="window.size")
    _, sizes = _window(size, ndim, None if axes is None else len(axes))
    if kind != "rect" and len(sizes) != 2:
        raise ConfigError(f"a {kind} window needs two window axes", where="window.shape" if kind == "disk" else "window.weights")
    if axes is not None and len(axes) != len(sizes):
        raise ConfigError(f"{len(axes)} axes for a {len(sizes)}-D window size", where="window.axes")
    waxes = window_axes(axes, ndim, dims, len(sizes))
    order = tuple(sorted(range(len(waxes)), key=lambda i: waxes[i]))
    if wmat is not None and order != tuple(range(len(order))):
        wmat = wmat.T
    sizes = tuple(sizes[i] for i in order)
    lo = tuple(w // 2 for w in sizes)
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


def _nodata_value(v: Any, n: str, dt: np.dtype) -> int | float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ConfigError(f"must be a number, got {v!r}", where=f"inputs.{n}.nodata")
    if dt.kind in "iu":
        if isinstance(v, float) and not v.is_integer():
            raise ConfigError(f"{v} is not an integer; {n} is {dt}", where=f"inputs.{n}.nodata")
        info = np.iinfo(dt)
        if not info.min <= int(v) <= info.max:
            raise ConfigError(f"{int(v)} is outside the range of {dt} [{info.min}, {info.max}]", where=f"inputs.{n}.nodata")
        return int(v)
    if isinstance(v, float) and math.isnan(v):
        return None  # NaN is always missing in float inputs
    return v


def plan_nodata(expr: Expr, inputs: Mapping[str, ArraySpec], nodata: Mapping[str, Any] | None) -> tuple[dict[str, Any], bool]:
    """Per used input its checked nodata value (or None), and whether any pixel can be missing
    (NaN in a float input or field, an input's nodata value)."""
    nodata = dict(nodata or {})
    nd_used = {n: _nodata_value(nodata.get(n), n, inputs[n].dtype) for n in expr.names}
    missing_possible = expr.dtype.kind == "f" or any(inputs[n].dtype.kind == "f" or nd_used[n] is not None for n in expr.names)
    return nd_used, missing_possible


def _int_fill(st: str, dt: np.dtype, bounds: tuple[int, int], fill_value) -> tuple[np.dtype, int]:
    """An integer output's dtype and fill value for empty windows: ``fill_value`` (the dtype
    widened to hold it), else the lowest value of an integer dtype that no result can equal."""
    if fill_value is not None:
        if isinstance(fill_value, float) and not float(fill_value).is_integer():
            raise ConfigError(f"{fill_value} is not an integer; the {st} output is integer", where="output.fill_value")
        fill = int(fill_value)
        return fit(min(bounds[0], fill), max(bounds[1], fill), dt) or dt, fill
    cand = fit(*bounds, dt)
    while cand is not None and np.iinfo(cand).min >= bounds[0]:
        cand = fit(int(np.iinfo(cand).min) - 1, bounds[1])
    if cand is None:
        raise ConfigError(f"no integer dtype leaves room for a fill value below {bounds[0]}; set output.fill_value", where="output.fill_value")
    return cand, int(np.iinfo(cand).min)


def plan_dtypes(reds, values: registry.Values, empty_possible: bool, dtype, fill_value):
    """Per statistic its output dtype, exact integer bounds and fill value, plus the sum's
    accumulator dtype: the registry's rule, then room for a fill value when a window can be
    empty (a pixel can be missing), then ``output.dtype`` if given and able to hold the results."""
    stats = [r.name for r in reds]
    user_dt = dtype if isinstance(dtype, Mapping) else ({st: dtype for st in stats} if dtype else {})
    for k in user_dt:
        if k not in stats:
            raise ConfigError(f"{k!r} is not one of the reducers {list(stats)}", where="output.dtype")
    out_dtypes: dict[str, np.dtype] = {}
    stat_bounds: dict[str, tuple[int, int] | None] = {}
    fills: dict[str, Any] = {}
    acc_dtype = FLOAT64
    for r in reds:
        st = r.name
        dt, bounds = r.dtype(values)
        if r.accumulates:
            acc_dtype = dt
        fill = None
        if dt.kind in "iub" and empty_possible and r.empty_fill:
            dt, fill = _int_fill(st, dt, bounds, fill_value)
            bounds = (min(bounds[0], fill), max(bounds[1], fill))
        elif dt.kind == "f" and empty_possible:
            fill = math.nan
        if st in user_dt:
            key = "output.dtype" + (f".{st}" if isinstance(dtype, Mapping) else "")
            dt = _user_dtype(user_dt[st], st, dt, bounds, dt.kind == "f", key)
            if dt.kind == "f" and fill is not None and fill_value is None:
                fill = math.nan
        out_dtypes[st], stat_bounds[st], fills[st] = dt, bounds, fill
    return out_dtypes, stat_bounds, fills, acc_dtype


def output_shape(in_shape: tuple[int, ...], axes: Sequence[int], sizes: Sequence[int], bnd: registry.Boundary) -> tuple[int, ...]:
    """The input's shape, or ``W - 1`` smaller per window axis for a shrinking boundary ('valid')."""
    out = list(in_shape)
    if bnd.shrinks:
        for ax, w in zip(axes, sizes):
            if in_shape[ax] < w:
                raise ConfigError(
                    f"window {w} is larger than the image ({in_shape[ax]} pixels on axis {ax}); "
                    "boundary 'valid' would give an empty output",
                    where="window.size",
                )
            out[ax] = in_shape[ax] - w + 1
    return tuple(out)


def requested_chunks(chunks: str | int | Sequence[int], order: Sequence[int]) -> tuple[int | None, ...]:
    """``compute.chunks`` per window axis (in increasing axis order); None for 'auto'."""
    if isinstance(chunks, str):
        if chunks != "auto":
            raise ConfigError(f"must be 'auto', an int or a list of ints, got {chunks!r}", where="compute.chunks")
        requested: tuple[int | None, ...] = (None,) * len(order)
    elif isinstance(chunks, (int, np.integer)):
        requested = (int(chunks),) * len(order)
    else:
        given = tuple(int(c) for c in chunks)
        if len(given) != len(order):
            raise ConfigError(f"needs {len(order)} values (one per window axis), got {len(given)}", where="compute.chunks")
        requested = tuple(given[i] for i in order)
    if any(c is not None and c < 1 for c in requested):
        raise ConfigError(f"chunk sizes must be >= 1, got {list(requested)}", where="compute.chunks")
    return requested


@dataclass(frozen=True)
class Grid:
    storage_chunks: tuple[int, ...]
    in_chunks: tuple[tuple[int, ...], ...]
    out_chunks: tuple[tuple[int, ...], ...]
    depth: tuple[int, ...]
    notes: tuple[str, ...]


def plan_grid(
    in_shape: tuple[int, ...], out_shape: tuple[int, ...], storage: Sequence[int | None], win: Window,
    requested: Sequence[int | None], bnd: registry.Boundary,
) -> Grid:
    """The processing grid: output blocks that are unions of whole output storage chunks, the
    matching input blocks and the halo per axis; no block narrower than the halo."""
    notes: list[str] = []
    storage_chunks, in_chunks, out_chunks, depth = [], [], [], []
    for ax in range(len(in_shape)):
        m = out_shape[ax]
        if ax not in win.axes:
            c = min(storage[ax] or in_shape[ax], m)
            grid = _axis_grid(m, c, 0)
            storage_chunks.append(c)
            in_chunks.append(grid)
            out_chunks.append(grid)
            depth.append(0)
            continue
        i = win.axes.index(ax)
        h = max(win.lo[i], win.hi[i])
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
        if bnd.shrinks:
            g = list(grid)
            g[0] += win.lo[i]
            g[-1] += win.hi[i]
            grid = tuple(g)
        in_chunks.append(grid)
        depth.append(h if len(grid) > 1 else 0)
    nblocks = math.prod(len(g) for g in out_chunks)
    if nblocks > MAX_BLOCKS:
        raise ConfigError(
            f"output shape {list(out_shape)} makes {nblocks:,} processing blocks, more than {MAX_BLOCKS:,}; "
            "use larger compute.chunks (or check the inputs' shapes)",
            where="compute.chunks",
        )
    return Grid(tuple(storage_chunks), tuple(in_chunks), tuple(out_chunks), tuple(depth), tuple(notes))


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
