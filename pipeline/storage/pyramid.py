"""The OME-Zarr (NGFF 0.5) pyramid of a Zarr output (``output.multiscale: true``), so that napari
and neuroglancer open gigapixel results.

Level 0 is the full-resolution output array itself (``result``); level ``n`` is the array
``multiscale/<array>/<n>`` of the same group, half the size of level ``n-1`` on the last two axes
(rounded up), made from it 2x2 pixels at a time, chunk by chunk (memory: four chunks of level
``n-1`` and one of level ``n``), until a level fits one chunk.  The group's ``ome`` attribute
holds one ``multiscales`` entry per output array (its axes, and each level's ``scale`` and
``translation``: pixel centres of level ``n`` are ``(2**n - 1) / 2`` level-0 pixels in).

Each statistic's rule (:data:`RULES`), over the valid pixels of each 2x2 block (missing pixels,
NaN or the output's fill value, are skipped; a block with none is missing):

- ``mean``, ``var``: the mean of the four values; ``std``: the root of the mean of the squares
  (the mean variance): a display aid, not the statistic of the larger window;
- ``min``: the minimum; ``max``: the maximum (integers stay exact, in the output's dtype);
- ``sum``, ``count``: the sum, integers in int64 (exact: a level-``n`` pixel adds at most
  ``4**n`` values), with int64's lowest value as the fill of empty blocks.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import zarr

from pipeline.storage.stores import store_args
from pipeline.storage.targets.zarr import default_compressors

#: the downsampling rule of each statistic (see the module's docstring)
RULES = {"mean": "mean", "var": "mean", "std": "rms", "min": "min", "max": "max", "sum": "sum", "count": "sum"}
#: the group holding the levels above 0
LEVELS = "multiscale"
#: axis types by dimension name (the last two axes are always ``space``)
AXIS_TYPES = {"t": "time", "time": "time", "c": "channel", "channel": "channel", "band": "channel", "z": "space"}


def build(path: str, arrays: Mapping[str, tuple[str, Any]], storage_options: Mapping[str, Any] | None = None) -> None:
    """Write the pyramid of each output array (name -> (statistic, fill value or None)) and the
    group's ``ome`` attribute."""
    group = zarr.open_group(**store_args(path, storage_options), mode="r+", use_consolidated=False)
    entries = []
    for name, (stat, fill) in arrays.items():
        base = group[name]
        assert isinstance(base, zarr.Array)
        rule = RULES[stat]
        level, paths = base, [name]
        while any(n > c for n, c in zip(level.shape[-2:], level.chunks[-2:])):
            level, fill = _next_level(group, f"{LEVELS}/{name}/{len(paths)}", level, rule, fill)
            paths.append(f"{LEVELS}/{name}/{len(paths)}")
        entries.append(multiscale(name, _dims(base), paths, rule))
    group.update_attributes({"ome": {"version": "0.5", "multiscales": entries}})


def multiscale(name: str, dims: tuple[str, ...], paths: list[str], rule: str) -> dict[str, Any]:
    """The NGFF ``multiscales`` entry of one array's levels ``paths`` (level 0 first)."""
    nd = len(dims)
    axes = [{"name": d, "type": "space" if i >= nd - 2 else AXIS_TYPES.get(d.lower(), "space")} for i, d in enumerate(dims)]
    datasets = []
    for n, p in enumerate(paths):
        scale = [1.0] * (nd - 2) + [float(2**n)] * 2
        shift = [0.0] * (nd - 2) + [(2**n - 1) / 2] * 2
        datasets.append({"path": p, "coordinateTransformations": [{"type": "scale", "scale": scale}, {"type": "translation", "translation": shift}]})
    return {"name": name, "axes": axes, "datasets": datasets, "type": f"2x2 {rule}", "metadata": {"method": "pipeline.storage.pyramid"}}


def _dims(arr: zarr.Array) -> tuple[str, ...]:
    names = getattr(arr.metadata, "dimension_names", None)
    return tuple(names) if names and all(names) else tuple(f"dim_{i}" for i in range(arr.ndim))


def _next_level(group: zarr.Group, path: str, src: zarr.Array, rule: str, fill: Any) -> tuple[zarr.Array, Any]:
    """Level ``path`` made from ``src`` chunk by chunk; returns it and its fill value."""
    dtype, out_fill = level_dtype(src.dtype, rule, fill)
    shape = src.shape[:-2] + tuple(-(-n // 2) for n in src.shape[-2:])
    chunks = tuple(min(c, n) for c, n in zip(src.chunks, shape))
    dst = group.create_array(
        path, shape=shape, dtype=dtype, chunks=chunks, dimension_names=_dims(src), compressors=default_compressors(dtype),
        fill_value=out_fill if out_fill is not None else 0, overwrite=True,
    )
    for region in _regions(shape, chunks):
        source = region[:-2] + tuple(slice(2 * s.start, min(2 * s.stop, n)) for s, n in zip(region[-2:], src.shape[-2:]))
        dst[region] = downsample(np.asarray(src[source]), rule, fill).astype(dtype)
    return dst, out_fill


def _regions(shape: tuple[int, ...], chunks: tuple[int, ...]) -> Iterator[tuple[slice, ...]]:
    starts = [range(0, n, c) for n, c in zip(shape, chunks)]
    for corner in itertools.product(*starts):
        yield tuple(slice(s, min(s + c, n)) for s, c, n in zip(corner, chunks, shape))


def level_dtype(dtype: np.dtype, rule: str, fill: Any) -> tuple[np.dtype, Any]:
    """The dtype and fill value of the levels of an output of ``dtype`` under ``rule``."""
    if dtype.kind in "iub" and rule == "sum":
        return np.dtype("int64"), None if fill is None else int(np.iinfo(np.int64).min)
    return dtype, fill


def downsample(block: np.ndarray, rule: str, fill: Any) -> np.ndarray:
    """``block`` reduced 2x2 on its last two axes under ``rule`` (see the module's docstring),
    skipping missing pixels (NaN, or ``fill`` for integers; odd edges count as missing)."""
    is_float = block.dtype.kind == "f"
    pad = [(0, 0)] * (block.ndim - 2) + [(0, n % 2) for n in block.shape[-2:]]
    if is_float or fill is not None:
        b = np.pad(block, pad, constant_values=np.nan if is_float else fill)
    else:  # integers without a fill: every pixel valid; edges repeated (min/max) or zero (sum)
        b = np.pad(block, pad, mode="edge" if rule in ("min", "max") else "constant")
    b = b.reshape(b.shape[:-2] + (b.shape[-2] // 2, 2, b.shape[-1] // 2, 2))
    axes = (-3, -1)
    missing = np.isnan(b) if is_float else (b == fill) if fill is not None else np.zeros(b.shape, bool)
    empty = missing.all(axis=axes)
    if rule in ("min", "max"):
        info = np.finfo(b.dtype) if is_float else np.iinfo(b.dtype)
        neutral = info.max if rule == "min" else info.min
        out = (np.min if rule == "min" else np.max)(np.where(missing, neutral, b), axis=axes)
    elif rule == "sum":
        acc = np.float64 if is_float else np.int64
        out = np.where(missing, 0, b).astype(acc).sum(axis=axes)
    else:
        n = (~missing).sum(axis=axes)
        values = np.where(missing, 0.0, b.astype(np.float64))
        total = (values * values if rule == "rms" else values).sum(axis=axes)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = total / n
        out = np.sqrt(out) if rule == "rms" else out
    missing_value = np.nan if is_float else level_dtype(block.dtype, rule, fill)[1]
    return np.where(empty, missing_value, out) if empty.any() else out
