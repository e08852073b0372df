"""Missing pixels of :func:`pipeline.window_reduce`'s inputs: each input's nodata by the rule of
configs (:func:`pipeline.plan.metadata.input_nodata`), and the mask of ``numpy.ma`` inputs.

* :func:`resolve`: ``nodata={name: value}`` when given (``None``: off), else what the input
  declares: its attrs (``_FillValue``, ``missing_value``, ``nodata``: xarray, rioxarray, zarr
  arrays), else xarray's ``encoding`` where the values are still the encoded ones.
* :func:`unmask`: masked pixels of a ``numpy.ma`` array (netCDF4's default) or of a dask array
  of masked chunks are missing, as nodata pixels are: float inputs get NaN there, integer
  inputs the nodata value (given, else a value no unmasked pixel holds).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.api import labelled
from pipeline.api.compute import kind
from pipeline.errors import InputError
from pipeline.plan import metadata

#: the encoding's keys that declare a fill value (xarray moves ``_FillValue`` there when decoding)
_ENCODED = ("_FillValue", "missing_value")


def declared(x: Any) -> tuple[Any, str] | None:
    """The nodata an input declares, as ``(value, key)``: :func:`metadata.declared_nodata` of
    its attrs, else of its xarray ``encoding`` where the values are still the encoded ones (the
    same dtype, not scaled; where xarray decoded them, those pixels are NaN already)."""
    attrs = getattr(x, "attrs", None)
    if isinstance(attrs, Mapping):
        found = metadata.declared_nodata(attrs)
        if found is not None:
            return found
    encoding = getattr(x, "encoding", None) if labelled.is_xarray(x) else None
    if not encoding or "scale_factor" in encoding or "add_offset" in encoding:
        return None
    if "dtype" in encoding and np.dtype(encoding["dtype"]) != np.dtype(x.dtype):
        return None
    found = metadata.declared_nodata({k: encoding[k] for k in _ENCODED if k in encoding})
    return None if found is None else (found[0], f"encoding {found[1]}")


def resolve(names: Sequence[str], inputs: Mapping[str, Any], nodata: Mapping[str, Any] | None) -> dict[str, Any]:
    """Per used input its nodata: ``nodata[name]`` when that key is given (None: none), else
    what ``inputs[name]`` declares where a pixel of its dtype can hold it."""
    given = dict(nodata or {})
    out = {}
    for n in names:
        x = inputs[n]
        out[n], _ = metadata.input_nodata(declared(x), np.dtype(x.dtype), given=n in given, value=given.get(n))
    return out


def unmask(names: Sequence[str], data: Mapping[str, Any], nodata: dict[str, Any]) -> dict[str, Any]:
    """``data`` with the masked inputs filled so that their masked pixels are missing
    (``nodata`` updated where an integer input gets a nodata value)."""
    out = dict(data)
    for n in names:
        x = data[n]
        if isinstance(x, np.ma.MaskedArray):
            out[n], nodata[n] = _filled(x, nodata.get(n), n)
        elif kind(x) == "dask" and isinstance(getattr(x, "_meta", None), np.ma.MaskedArray):
            fill = _given_fill(np.dtype(x.dtype), nodata.get(n), n)
            if fill is None and nodata.get(n) is None:
                raise InputError(
                    f"is a dask array of masked {x.dtype} chunks: pass nodata={{'{n}': value}} with a value no "
                    f"unmasked pixel holds (masked pixels become it), or fill it first ({n}.map_blocks(np.ma.filled, value))",
                    where=f"inputs['{n}']",
                )
            if fill is not None:  # else a nodata no pixel of the dtype can hold: the plan says so
                out[n] = x.map_blocks(np.ma.filled, fill, dtype=x.dtype, meta=np.empty((0,) * x.ndim, x.dtype))
    return out


def _given_fill(dtype: np.dtype, nd: Any, name: str) -> Any:
    """What masked pixels become without a search: NaN in float inputs, the nodata of integer
    inputs that have one (a given one that no pixel can hold: None, so the plan refuses it);
    boolean and other inputs are refused."""
    if dtype.kind == "f":
        return np.nan
    if dtype.kind not in "iu":
        raise InputError(f"is a masked {dtype} array: its masked pixels cannot be told missing; fill it first",
                         where=f"inputs['{name}']")
    return None if nd is None else metadata.usable_nodata(nd, dtype)


def _filled(x: np.ma.MaskedArray, nd: Any, name: str) -> tuple[np.ndarray, Any]:
    """A masked numpy array as a plain one and its nodata: float masked pixels NaN; integer
    ones the nodata, else a value no unmasked pixel holds, which becomes the nodata (the dtype
    widened when every value of it occurs)."""
    mask = np.ma.getmaskarray(x)
    values = np.asarray(x.data)
    if not mask.any():
        return values, nd
    dtype = values.dtype
    fill = _given_fill(dtype, nd, name)
    if fill is None and nd is not None:
        return values, nd  # a nodata no pixel of the dtype can hold: the plan says so
    if fill is None:
        fill = _absent(values[~mask], dtype)
        nd = fill
    if fill is None:  # every value of an 8- or 16-bit dtype occurs: one wider holds one more
        dtype = np.dtype(f"i{2 * dtype.itemsize}")
        fill = nd = int(np.iinfo(dtype).min)
    return np.where(mask, np.asarray(fill, dtype), values.astype(dtype, copy=False)), nd


def _absent(values: np.ndarray, dtype: np.dtype) -> int | None:
    """A value of the integer ``dtype`` that ``values`` does not hold, next to their range where
    possible (so that int64 inputs still narrow); None when they hold every value."""
    if values.size == 0:
        return 0
    info = np.iinfo(dtype)
    lo, hi = int(values.min()), int(values.max())
    if lo > info.min:
        return lo - 1
    if hi < info.max:
        return hi + 1
    held = np.unique(values)
    gaps = np.flatnonzero(held[1:] != held[:-1] + 1)
    return int(held[gaps[0]]) + 1 if gaps.size else None
