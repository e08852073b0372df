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

_ACCEPTED_KINDS = "iuf"  # signed, unsigned, float


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
            a = s - self.depth[ax] if k > 0 else s  # where the delivered data starts
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
            f"window:        {'x'.join(map(str, self.size))} on axes {self.window_axes}, "
            f"reduce {self.reduce}, boundary {self.boundary}",
            f"output:        shape {self.out_shape}, dtype {self.out_dtype}"
            + (f", values in [{self.out_bounds[0]}, {self.out_bounds[1]}]" if self.out_bounds else ""),
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


def _window(size: int | Sequence[int], ndim: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Window axes and sizes: the last two axes (the last one for 1-D data)."""
    sizes = (size,) * min(2, ndim) if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)
    if len(sizes) > ndim:
        raise ConfigError(f"a {len(sizes)}-D window needs inputs with at least {len(sizes)} dimensions, got {ndim}", where="window.size")
    if any(s < 1 for s in sizes):
        raise ConfigError(f"window sizes must be >= 1, got {list(sizes)}", where="window.size")
    axes = tuple(range(ndim - len(sizes), ndim))
    return axes, sizes


def _axis_grid(m: int, c: int, depth: int) -> tuple[int, ...]:
    """Blocks of ``c`` over ``m`` pixels; a last block narrower than ``depth`` joins the one before."""
    if m == 0:
        return (0,)
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


def check_inputs(specs: Sequence[ArraySpec]) -> None:
    """Refuse input arrays the pipeline cannot process exactly (dtype, emptiness, shapes)."""
    for s in specs:
        if s.dtype.kind not in _ACCEPTED_KINDS or s.dtype.fields is not None:
            raise InputError(
                f"dtype {s.dtype} is not supported (integer or floating point images only)",
                where=s.source or s.name,
            )
        if len(s.shape) == 0:
            raise InputError("is a scalar; an image needs at least one dimension", where=s.source or s.name)
        if math.prod(s.shape) == 0:
            raise InputError(f"is empty (shape {s.shape})", where=s.source or s.name)
    first = specs[0]
    for s in specs[1:]:
        if s.shape != first.shape:
            raise InputError(
                f"shape {s.shape} differs from {first.source or first.name} {first.shape}",
                where=s.source or s.name,
            )


def make_plan(
    op: str,
    inputs: Mapping[str, ArraySpec],
    *,
    size: int | Sequence[int],
    reduce: str = "sum",
    boundary: str = "shrink",
    chunks: str | int | Sequence[int] = "auto",
) -> Plan:
    """Decide everything about a run from input metadata alone (no I/O)."""
    if reduce not in ("sum",):
        raise ConfigError(f"unknown reducer {reduce!r} (available: sum)", where="window.reduce")
    if boundary not in ("shrink", "valid"):
        raise ConfigError(f"unknown boundary {boundary!r} (available: shrink, valid)", where="window.boundary")
    expr = parse_expression(op, {name: spec.dtype for name, spec in inputs.items()})
    used = [inputs[n] for n in expr.names]
    check_inputs(used)
    ref = used[0]
    shape = ref.shape
    ndim = len(shape)
    axes, sizes = _window(size, ndim)
    lo = tuple(w // 2 for w in sizes)
    hi = tuple(w - 1 - l for w, l in zip(sizes, lo))
    area = math.prod(sizes)
    acc_dtype, out_bounds = sum_dtype(expr.bounds, area)

    out_shape = list(shape)
    if boundary == "valid":
        for ax, w in zip(axes, sizes):
            if shape[ax] < w:
                raise ConfigError(
                    f"window {w} is larger than the image ({shape[ax]} pixels on axis {ax}); "
                    "boundary 'valid' would give an empty output",
                    where="window.size",
                )
            out_shape[ax] = shape[ax] - w + 1

    if isinstance(chunks, str):
        if chunks != "auto":
            raise ConfigError(f"must be 'auto', an int or a list of ints, got {chunks!r}", where="compute.chunks")
        requested: tuple[int | None, ...] = (None,) * len(axes)
    elif isinstance(chunks, (int, np.integer)):
        requested = (int(chunks),) * len(axes)
    else:
        requested = tuple(int(c) for c in chunks)
        if len(requested) != len(axes):
            raise ConfigError(f"needs {len(axes)} values (one per window axis), got {len(requested)}", where="compute.chunks")
    if any(c is not None and c < 1 for c in requested):
        raise ConfigError(f"chunk sizes must be >= 1, got {list(requested)}", where="compute.chunks")

    notes: list[str] = []
    storage = list(ref.chunks) if ref.chunks else [None] * ndim
    storage_chunks: list[int] = []
    in_chunks: list[tuple[int, ...]] = []
    out_chunks: list[tuple[int, ...]] = []
    depth: list[int] = []
    for ax in range(ndim):
        m = out_shape[ax]
        if ax not in axes:
            c = storage[ax] or shape[ax]
            storage_chunks.append(min(c, m))
            grid = _axis_grid(m, min(c, m), 0)
            in_chunks.append(grid)
            out_chunks.append(grid)
            depth.append(0)
            continue
        i = axes.index(ax)
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

    dims = ref.dims if ref.dims and len(ref.dims) == ndim else _default_dims(ndim)
    return Plan(
        expr=expr,
        reduce=reduce,
        boundary=boundary,
        window_axes=axes,
        size=sizes,
        lo=lo,
        hi=hi,
        in_shape=shape,
        out_shape=tuple(out_shape),
        in_dtypes={n: inputs[n].dtype for n in expr.names},
        acc_dtype=acc_dtype,
        out_dtype=acc_dtype,
        out_bounds=out_bounds,
        dims=tuple(dims),
        storage_chunks=tuple(storage_chunks),
        in_chunks=tuple(in_chunks),
        out_chunks=tuple(out_chunks),
        depth=tuple(depth),
        notes=tuple(notes),
    )


def _default_dims(ndim: int) -> tuple[str, ...]:
    base = ("y", "x") if ndim >= 2 else ("x",)
    extra = tuple(f"dim_{i}" for i in range(ndim - len(base)))
    return extra + base
