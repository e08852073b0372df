"""The plan: pure geometry and dtype decisions, made before anything is read or written.

Given what is known about the inputs (shape, dtype, storage chunks, dimension names) and what the
user asked for (expression, window, boundary, chunks), :func:`make_plan` decides

* the window axes and, per axis, the window arms ``lo = W // 2`` and ``hi = W - 1 - lo``;
* the output shape (``shrink``: the input's; ``valid``: ``W - 1`` smaller per window axis);
* the output dtype, chosen so that the result cannot overflow (see :func:`sum_dtype`);
* the processing grid: output blocks that are unions of whole output storage chunks (so every
  write is chunk-aligned), the matching input blocks, and the halo (``depth``) per axis; no block
  is narrower than the halo, so dask never re-chunks behind our back;
* an estimate of the memory one task needs (a block's, and a shard's output when sharded).

:func:`make_plan` is a short composition of pure steps, each tested on its own (``tests/plan/``): the
choices checked against :mod:`pipeline.plan.registry`, the window (:mod:`pipeline.plan.window`), the
missing pixels and the dtypes (:mod:`pipeline.plan.dtypes`), the grid (:mod:`pipeline.plan.grid`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from pipeline.errors import ConfigError, InputError
from pipeline.expr import Expr, parse_expression
from pipeline.plan import registry, winplan
from pipeline.plan.dtypes import plan_dtypes, plan_nodata
from pipeline.plan.grid import MAX_AUTO_CHUNK, MAX_BLOCKS, MIN_AUTO_CHUNK, _auto_chunk, _axis_grid, output_shape, plan_grid, requested_chunks, shard_bytes  # noqa: F401 - re-exported
from pipeline.plan.registry import sum_dtype  # noqa: F401 - the sum's dtype rule, re-exported
from pipeline.plan.window import MAX_FOOTPRINT, SPATIAL_PAIRS, Window, check_weighted_reducers, disk_footprint, plan_window, spatial_axes, window_axes  # noqa: F401 - re-exported

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
    #: output Zarr shard shape (``output.shards``; processing blocks nest in shards), None: unsharded
    shards: tuple[int, ...] | None = None
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
    #: window expressions: the results (name -> formula over window terms; ``stats`` are their names)
    results: Mapping[str, Any] = field(default_factory=dict)
    #: window expressions: per distinct pointwise expression, the plan of its window statistics
    parts: Mapping[str, Plan] = field(default_factory=dict)

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
    def window_bounds(self) -> tuple[int, int] | None:
        """Exact bounds of the values a window sees (the expression's, and ``cval`` for boundary
        'constant'); None when they are not integers."""
        return registry.window_values(self.expr.bounds, self.bnd, self.cval)

    @property
    def area(self) -> int:
        """Pixels that count in a whole window (the footprint's, or the rectangle's)."""
        if self.footprint is not None:
            return sum(map(sum, self.footprint))
        return math.prod(self.size)

    @property
    def plain_sum(self) -> bool:
        """The kernel choice, written once: a lone sum over a plain rectangular window without
        padding takes the window-sum paths (:mod:`pipeline.kernels.fastsum` when no pixel can be missing,
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
    def object_shape(self) -> tuple[int, ...]:
        """The shape of one stored output object: a shard, or a chunk when unsharded."""
        return self.shards or self.storage_chunks

    @property
    def ndim(self) -> int:
        return len(self.in_shape)

    @property
    def nblocks(self) -> tuple[int, ...]:
        return tuple(len(c) for c in self.out_chunks)

    @property
    def task_bytes(self) -> int:
        """Estimated peak bytes of one task: a block's, and sharded a shard's output (:func:`pipeline.plan.grid.shard_bytes`)."""
        return self.block_bytes + (shard_bytes(self.shards, [d.itemsize for d in self.out_dtypes.values()]) if self.shards else 0)

    @property
    def block_bytes(self) -> int:
        """Estimated peak bytes of one block: inputs with halo, expression temporaries, prefix sums, output."""
        ext = 1
        for ax, chunks in enumerate(self.in_chunks):
            ext *= max(chunks) + 2 * self.depth[ax]
        per_pixel = sum(d.itemsize for d in self.in_dtypes.values())
        per_pixel += 2 * self.expr.dtype.itemsize + 3 * self.acc_dtype.itemsize + self.out_dtype.itemsize
        if self.parts:  # window expressions: every part's statistics, one block at a time
            return ext * per_pixel + sum(p.block_bytes for p in self.parts.values())
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
            + (f" (cval {self.cval})" if self.bnd.fills else "")
            + (f"; shifted by origin: arms before/after {self.lo}/{self.hi}" if self.lo != tuple(w // 2 for w in self.size) else ""),
            *(
                f"{('output ' + st if self.multi else 'output') + ':':<15}shape {self.out_shape}, dtype {self.out_dtypes[st]}"
                + (f", values in [{b[0]}, {b[1]}]" if (b := self.stat_bounds[st]) else "")
                + (f", fill {self.fill_values[st]}" if self.fill_values.get(st) is not None else "")
                for st in self.stats
            ),
            f"output chunks: {self.storage_chunks} (Zarr)" + (f" in shards {self.shards}" if self.shards else "")
            + f"; processing blocks {blocks} = {math.prod(self.nblocks)}",
            f"halo (depth):  {self.depth}",
            f"memory/task:   ~{_human(self.task_bytes)}",
        ]
        lines += winplan.describe(self.results, self.parts)
        lines += [f"note:          {n}" for n in self.notes]
        return "\n".join(lines)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


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


def _reference(used: Sequence[ArraySpec], in_shape: tuple[int, ...]) -> tuple[tuple[str, ...] | None, tuple[int | None, ...]]:
    """The dims and storage chunks (None where it has none) of the input the output follows:
    the first of the full shape, not a broadcast one."""
    full = [s for s in used if s.shape == in_shape]
    ref = full[0] if full else used[0]
    ndim = len(in_shape)
    dims = tuple(ref.dims) if ref.dims and len(ref.dims) == ndim else None
    storage = tuple(ref.chunks) if ref.chunks and len(ref.chunks) == ndim else (None,) * ndim
    return dims, storage


def make_plan(
    op: str | Mapping[str, str],
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
    origin: int | Sequence[int] = 0,
    shards: int | Sequence[int] | None = None,
) -> Plan:
    """Decide everything about a run from input metadata alone (no I/O): the choices checked
    against the registries, then the window, the missing pixels, the dtypes and the grid; ``op``
    with window functions, or several named results, take :func:`_window_plan`."""
    if winplan.is_window_op(op):
        if dtype is not None:
            raise ConfigError("does not apply to window functions in op (their results are float64 or exact integers)", where="output.dtype")
        dtypes = {n: s.dtype for n, s in inputs.items()}
        size, weights = winplan.window_of(op, dtypes, size, shape, weights)
        plan = make_plan(
            "+".join(winplan.op_names(op, dtypes)), inputs, size=size, reduce="count", boundary=boundary, chunks=chunks, cval=cval,
            shape=shape, axes=axes, nodata=nodata, origin=origin, weights=weights, shards=shards,
        )
        return _window_plan(plan, op, inputs, weights)
    assert isinstance(op, str)
    stats = (reduce,) if isinstance(reduce, str) else tuple(reduce)
    reds, bnd = check_choices(stats, boundary, shape, cval)
    expr = parse_expression(op, {name: spec.dtype for name, spec in inputs.items()})
    used = [inputs[n] for n in expr.names]
    in_shape = check_inputs(used)
    ref_dims, storage = _reference(used, in_shape)
    ndim = len(in_shape)
    win = plan_window(ndim, ref_dims, reds, size=size, shape=shape, weights=weights, axes=axes, origin=origin)
    nd_used, missing_possible = plan_nodata(expr, inputs, nodata)
    values = registry.Values(expr.dtype, registry.window_values(expr.bounds, bnd, cval), win.area, bnd.name, win.weights)
    out_dtypes, stat_bounds, fills, acc_dtype = plan_dtypes(reds, values, missing_possible, dtype, fill_value)
    out_shape = output_shape(in_shape, win.axes, win.sizes, bnd)
    requested = requested_chunks(chunks, win.order)
    grid = plan_grid(in_shape, out_shape, storage, win, requested, bnd, shards)
    return Plan(
        expr=expr,
        boundary=boundary,
        in_shape=in_shape,
        out_shape=out_shape,
        in_dtypes={n: inputs[n].dtype for n in expr.names},
        in_shapes={n: inputs[n].shape for n in expr.names},
        acc_dtype=acc_dtype,
        dims=tuple(ref_dims or _default_dims(ndim, win.axes)),
        stats=stats,
        out_dtypes=out_dtypes,
        stat_bounds=stat_bounds,
        fill_values=fills,
        missing_possible=missing_possible,
        nodata=nd_used,
        cval=cval,
        **_window_fields(win),
        **{f.name: getattr(grid, f.name) for f in fields(grid)},
    )


def _window_plan(base: Plan, op: str | Mapping[str, str], inputs: Mapping[str, ArraySpec], weights) -> Plan:
    """The plan of window expressions: ``base`` (the window, grid and missing pixels of all the
    inputs used) with the results typed for its window and one part per distinct pointwise
    expression, the statistics of its terms."""
    ops = winplan.named_ops(op)
    typing = winplan.typing_for(base.area, weights is not None, base.bnd, base.cval)
    results = winplan.parse_results(ops, {n: s.dtype for n, s in inputs.items()}, typing, isinstance(op, str))
    parts = {}
    for text, (expr, stats) in winplan.stats_per_expression(results).items():
        reds = registry.reducers(stats)
        if base.weights is not None:
            try:
                check_weighted_reducers(reds)
            except ConfigError as e:  # the statistic comes from op's window functions
                raise ConfigError(e.message, where="op") from None
        values = registry.Values(expr.dtype, registry.window_values(expr.bounds, base.bnd, base.cval), base.area, base.boundary, base.weights)
        out_dtypes, stat_bounds, _, acc_dtype = plan_dtypes(reds, values, False, None, None)
        parts[text] = replace(
            base, expr=expr, stats=stats, out_dtypes=out_dtypes, stat_bounds=stat_bounds, fill_values={}, acc_dtype=acc_dtype,
            in_dtypes={n: inputs[n].dtype for n in expr.names}, in_shapes={n: inputs[n].shape for n in expr.names},
        )
    fewest = winplan.fewest_valid(base.area, base.size, base.lo, base.hi, base.bnd, base.shape == "rect")
    missing = base.missing_possible or any(p.expr.dtype.kind == "f" for p in parts.values())
    out_dtypes, stat_bounds, fills = winplan.result_dtypes(results, missing, fewest)
    first = next(iter(results.values()))
    text = op if isinstance(op, str) else "; ".join(f"{k}: {v}" for k, v in ops.items())
    expr = Expr(text=text, names=base.expr.names, dtype=first.dtype, bounds=first.bounds, root=first.root)
    return replace(
        base, expr=expr, stats=tuple(results), out_dtypes=out_dtypes, stat_bounds=stat_bounds, fill_values=fills,
        missing_possible=missing, results=results, parts=parts,
    )


def _window_fields(win: Window) -> dict[str, Any]:
    """The plan's fields that describe the window."""
    return dict(window_axes=win.axes, size=win.sizes, lo=win.lo, hi=win.hi, shape=win.kind, footprint=win.footprint, weights=win.weights)


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


def _default_dims(ndim: int, window: Sequence[int] = ()) -> tuple[str, ...]:
    """Names for unnamed dimensions: ``y`` and ``x`` for the window axes (``x`` alone for a 1-D
    window; ``z``, ``y``, ``x`` for the last three of a window over more axes), ``dim_0``,
    ``dim_1``, ... for the others."""
    window = tuple(window) or tuple(range(max(0, ndim - 2), ndim))
    named = ("x",) if len(window) == 1 else ("y", "x") if len(window) == 2 else ("z", "y", "x")
    spatial = dict(zip(window[-len(named):], named))
    names, k = [], 0
    for ax in range(ndim):
        if ax in spatial:
            names.append(spatial[ax])
        else:
            names.append(f"dim_{k}")
            k += 1
    return tuple(names)
