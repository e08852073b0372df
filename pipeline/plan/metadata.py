"""What the inputs' attributes say, and which attributes are true of the output (no I/O).

Inputs written by xarray, rioxarray or GDAL-based tools carry attributes that describe their
*values* or their *encoding*: the missing-value marker (CF ``_FillValue``/``missing_value``,
GDAL/rioxarray ``nodata``), ``scale_factor``/``add_offset``, ``valid_range``, band statistics,
flag meanings.  None of them is true of a window reduction, so none is copied to the output; the
output declares its own fill value (``_FillValue``, encoded as xarray reads it for Zarr v3) and
carries the georeferencing (the ``grid_mapping`` variable, ``spatial_ref``) only together with
the variable it names.  Descriptive attributes (``long_name``, ``source``, ``history``,
``AREA_OR_POINT``, ...) carry over; ``long_name``/``description`` only where ``op`` is a single
input (``a - b`` is not the quantity ``a`` names).

``units`` carry only where they stay true: the statistic is sum, mean, min, max or std of an
expression in the inputs' own units (a single input ``op: a``, or sums and differences of inputs
with equal units, ``a - b``; see :func:`same_units`); var (units²), count (no units) and any other
expression (``a * b``, ``a * 0.5``) drop them.
"""

from __future__ import annotations

import ast
import base64
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: Attributes that declare the input's missing-value marker, in the order they are consulted.
NODATA_ATTRS = ("_FillValue", "missing_value", "nodata")

#: Attributes about the input's values or encoding: never true of the output.
VALUE_ATTRS = frozenset(
    {
        *NODATA_ATTRS,
        "scale_factor",
        "add_offset",
        "valid_range",
        "valid_min",
        "valid_max",
        "actual_range",
        "standard_name",  # a window statistic is not the input's quantity
        "units",  # re-added by :func:`output_attrs` where still true
        "_Unsigned",
        "dtype",
        "fill_value",  # the pipeline's own record of the output fill (set per output)
        "coordinates",  # references to variables the output does not carry
        "grid_mapping",  # re-added when the referenced variable is carried
        "_ARRAY_DIMENSIONS",
        "pipeline",
    }
)
#: Prefixes of attribute names about the input's values (GDAL band statistics, CF flags).
VALUE_PREFIXES = ("STATISTICS_", "flag_")

#: Attributes naming the input's quantity: true of statistics of a bare input only.
QUANTITY_ATTRS = ("long_name", "description")

#: Statistics that keep the units of a single input.
SAME_UNITS = ("sum", "mean", "min", "max", "std")


def declared_nodata(attrs: Mapping[str, Any]) -> tuple[Any, str] | None:
    """The missing-value marker an input declares in its attributes, as ``(value, attribute)``;
    None when it declares none.

    The first of :data:`NODATA_ATTRS` present wins; a list (CF allows several ``missing_value``)
    gives its first element; xarray's base64 text for float fill values and the texts ``"NaN"``,
    ``"nan"`` are decoded.  The Zarr array's own ``fill_value`` is not a declaration (plain Zarr
    arrays have 0 there by default)."""
    for key in NODATA_ATTRS:
        if key not in attrs:
            continue
        value = attrs[key]
        if isinstance(value, (list, tuple)):
            if not value:
                continue
            value = value[0]
        value = _number(value)
        if value is not None:
            return value, key
    return None


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text) if "." in text or text.lower() in ("nan", "inf", "-inf", "infinity", "-infinity") else int(text)
        except ValueError:
            pass
        try:  # xarray writes float fill values of Zarr v3 arrays as base64 of the 8 bytes
            raw = base64.b64decode(text, validate=True)
        except ValueError:
            return None
        if len(raw) == 8:
            return float(np.frombuffer(raw, "<f8")[0])
        if len(raw) == 4:
            return float(np.frombuffer(raw, "<f4")[0])
    return None


def usable_nodata(value: int | float, dtype: np.dtype) -> int | float | None:
    """``value`` as a nodata of an input of ``dtype``, or None where no pixel can equal it (a
    float marker on an integer input, a value outside the dtype's range, NaN, which float inputs
    always treat as missing)."""
    dtype = np.dtype(dtype)
    if isinstance(value, float) and math.isnan(value):
        return None
    if dtype.kind in "iu":
        if isinstance(value, float) and not value.is_integer():
            return None
        info = np.iinfo(dtype)
        return int(value) if info.min <= int(value) <= info.max else None
    if dtype.kind == "b":
        return None
    return value


def input_nodata(
    declared: tuple[Any, str] | None, dtype: np.dtype, *, given: bool = False, value: int | float | None = None
) -> tuple[int | float | None, str | None]:
    """One input's nodata and where it comes from, the one rule of configs and the Python API:
    the ``value`` a user gave when ``given`` (None: switched off), else the ``declared`` marker
    (:func:`declared_nodata` of its attributes) where a pixel of ``dtype`` can hold it
    (:func:`usable_nodata`).  The source is None where there is nothing to say (nothing
    declared, or NaN, which float inputs always treat as missing)."""
    if given:
        if value is not None:
            return value, "config"
        return None, (f"off (attribute {declared[1]} = {declared[0]} ignored)" if declared is not None else None)
    if declared is None:
        return None, None
    usable = usable_nodata(declared[0], dtype)
    if usable is not None:
        return usable, f"attribute {declared[1]}"
    if isinstance(declared[0], float) and declared[0] != declared[0]:  # NaN: always missing
        return None, None
    return None, f"none (attribute {declared[1]} = {declared[0]} cannot occur in {np.dtype(dtype)})"


def fill_attr(fill: Any, dtype: np.dtype | None) -> Any:
    """The ``_FillValue`` attribute of an output of ``dtype``, as xarray reads it from a Zarr v3
    array: integers as they are, floats as base64 of their 8 little-endian bytes."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return base64.b64encode(np.asarray(fill, dtype=dtype).astype(dtype.newbyteorder("<")).tobytes()).decode("ascii")
    if dtype.kind == "b":
        return bool(fill)
    return int(fill)


def output_attrs(
    common: Mapping[str, Any],
    *,
    statistic: str,
    same_units: bool,
    bare: bool = False,
    fill: Any,
    dtype: np.dtype | None,
    grid_mapping: str | None = None,
) -> dict[str, Any]:
    """The attributes of one output array: the inputs' ``common`` attributes without those about
    their values or encoding, ``units`` where still true, the output's own ``_FillValue`` (and
    the pipeline's ``fill_value`` record) when windows can be empty, and ``grid_mapping`` (with
    ``coordinates``, so xarray and rioxarray attach it) when that variable is carried."""
    out = {k: v for k, v in common.items() if k not in VALUE_ATTRS and not k.startswith(VALUE_PREFIXES)}
    if not bare:  # a computed expression is not the quantity the inputs' names describe
        for k in QUANTITY_ATTRS:
            out.pop(k, None)
    if "units" in common and same_units and statistic in SAME_UNITS:
        out["units"] = common["units"]
    if fill is not None:
        out["_FillValue"] = fill_attr(fill, dtype)
        out["fill_value"] = "NaN" if fill != fill else fill  # windows without a valid pixel
    if grid_mapping is not None:
        out["grid_mapping"] = grid_mapping
        out["coordinates"] = grid_mapping
    return out


def same_units(op: str, names: Sequence[str]) -> bool:
    """Whether the values of ``op`` are in its inputs' units: a bare input name, or only sums and
    differences of inputs and constants (whose ``units`` the caller has checked to be equal)."""
    if op.strip() in names:
        return True
    try:
        tree = ast.parse(op.strip(), mode="eval")
    except SyntaxError:  # pragma: no cover - the plan parsed it already
        return False
    allowed = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Name, ast.Constant, ast.Load, ast.Add, ast.Sub, ast.UAdd, ast.USub)
    return all(isinstance(node, allowed) for node in ast.walk(tree))


def shifted_geotransform(text: str, offsets: Sequence[int]) -> str | None:
    """A GDAL ``GeoTransform`` (``"c a b f d e"``) moved by ``offsets`` = (rows, cols) pixels,
    for a ``valid`` output that starts ``lo`` pixels into the input; None if ``text`` is not one."""
    try:
        c, a, b, f, d, e = (float(v) for v in str(text).split())
    except ValueError:
        return None
    dy, dx = offsets
    c, f = c + a * dx + b * dy, f + d * dx + e * dy
    return " ".join(str(v) for v in (c, a, b, f, d, e))


def output_span(plan: Any, ax: int) -> slice | None:
    """The part of input axis ``ax`` that the output covers, where the boundary shrinks the
    output (the registry's ``shrinks``: ``valid``) and ``ax`` is a window axis; None where the
    output covers all of it.  Coordinates are trimmed by it (:mod:`pipeline.api.labelled` for
    xarray results, the run's output coordinates)."""
    if not (plan.bnd.shrinks and ax in plan.window_axes):
        return None
    i = plan.window_axes.index(ax)
    return slice(plan.lo[i], plan.in_shape[ax] - plan.hi[i])
