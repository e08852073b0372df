"""xarray inputs and results of :func:`pipeline.window_reduce`, as ``xr.apply_ufunc`` does it.

* :func:`align`: the inputs an expression uses are matched by dimension *name* (``(y, x)`` and
  ``(x, y)`` inputs combine), their coordinates must be equal (``join="exact"``: a shifted grid is
  an error naming the coordinate), and they broadcast by name: a ``(y, x)`` mask against a
  ``(time, y, x)`` stack gets a length-1 ``time`` axis (numpy broadcasting does the rest, no copy).
* :func:`wrap`: the result carries the used inputs' dims and coordinates (trimmed for
  ``boundary="valid"``), a name (``<name>_<stat>``) and only the attrs that stay true of it.

Nothing here imports xarray unless xarray objects are passed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.errors import InputError


def is_xarray(x: Any) -> bool:
    return type(x).__module__.startswith("xarray") and hasattr(x, "dims")


def is_dataset(x: Any) -> bool:
    return is_xarray(x) and hasattr(x, "data_vars")


def align(names: Sequence[str], inputs: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, ...] | None]:
    """Match the xarray inputs among ``names`` by dimension name and coordinate.

    Returns the arrays to compute on (xarray inputs replaced by their ``.data``, transposed to the
    common dimension order, with length-1 axes for the dims they lack) and the common dims (None
    when no used input is an xarray object).  The common order is that of the used input with the
    most dims (the first such, in ``inputs`` order), then the dims only others have, in order of appearance.
    """
    labelled = [n for n in inputs if n in names and is_xarray(inputs[n])]  # in the caller's order
    if not labelled:
        return dict(inputs), None
    widest = max(labelled, key=lambda n: len(inputs[n].dims))
    dims: list[str] = [str(d) for d in inputs[widest].dims]
    for n in labelled:
        for d in inputs[n].dims:
            if d not in dims:
                dims.insert(0, str(d))  # broadcast dims go first, as numpy's do
    _check_coords(labelled, inputs)
    out = dict(inputs)
    for n in labelled:
        x = inputs[n]
        own = [d for d in dims if d in x.dims]
        data = x.transpose(*own).data
        index = tuple(slice(None) if d in x.dims else None for d in dims)
        # numpy broadcasting is right-aligned: leading length-1 axes may be left out
        while index and index[0] is None:
            index = index[1:]
        out[n] = data[index] if None in index else data
    # a plain (numpy, dask) input broadcasts positionally against the common dims (numpy rules)
    return out, tuple(dims)


def _check_coords(labelled: Sequence[str], inputs: Mapping[str, Any]) -> None:
    """join="exact": each dimension has one length and one index across the used inputs."""
    seen: dict[str, tuple[str, Any]] = {}
    for n in labelled:
        x = inputs[n]
        for d in x.dims:
            size = x.sizes[d]
            index = x.indexes[d] if d in x.indexes else None
            if d not in seen:
                seen[d] = (n, x)
                continue
            m, y = seen[d]
            if y.sizes[d] != size:
                raise InputError(
                    f"dimension {d!r} has length {size}, inputs['{m}'] has {y.sizes[d]}", where=f"inputs['{n}']"
                )
            other = y.indexes[d] if d in y.indexes else None
            if index is None or other is None:
                if other is not None:
                    seen[d] = (m, y)
                elif index is not None:
                    seen[d] = (n, x)
                continue
            if not index.equals(other):
                raise InputError(
                    f"coordinate {d!r} differs from inputs['{m}']{_how(index, other)}; window_reduce "
                    "aligns exactly (join='exact'): resample or align the inputs first, e.g. "
                    f"{n} = {n}.interp_like({m}) or xr.align(..., join='inner')",
                    where=f"inputs['{n}']",
                )


def _how(a: Any, b: Any) -> str:
    """A short description of how two indexes differ (an offset, for a shifted regular grid)."""
    try:
        import numpy as np

        d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
        if len(d) and np.all(d == d[0]):
            return f" (shifted by {d[0]:g})"
        bad = int(np.argmax(d != 0))
        return f" (first at position {bad}: {a[bad]!r} against {b[bad]!r})"
    except (TypeError, ValueError):
        return ""


def result_attrs(op: str, names: Sequence[str], inputs: Mapping[str, Any], stat: str) -> dict[str, Any]:
    """The attrs that stay true of a window ``stat`` of ``op``: those every used xarray input
    shares, filtered by :func:`pipeline.plan.metadata.output_attrs` (the same rule as the CLI's
    outputs: nothing about the inputs' values or encoding; ``units`` where still true)."""
    from pipeline.plan import metadata

    labelled = [inputs[n] for n in names if is_xarray(inputs[n])]
    if not labelled:
        return {}
    attrs = dict(labelled[0].attrs)
    for x in labelled[1:]:
        attrs = {k: v for k, v in attrs.items() if k in x.attrs and _same(x.attrs[k], v)}
    return metadata.output_attrs(attrs, statistic=stat, same_units=metadata.same_units(op, names),
                                 bare=op.strip() in names, fill=None, dtype=None)


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def result_name(op: str, names: Sequence[str], inputs: Mapping[str, Any], stat: str) -> str:
    """``<name>_<stat>`` for a bare input name (its DataArray name, else its key), else ``stat``."""
    text = op.strip()
    if text in names:
        x = inputs[text]
        base = x.name if is_xarray(x) and isinstance(x.name, str) and x.name else text
        return f"{base}_{stat}"
    return stat


def wrap(result: Any, plan: Any, dims: Sequence[str], names: Sequence[str], inputs: Mapping[str, Any],
         op: str, stat: str) -> Any:
    """The DataArray for one statistic: common dims, the used inputs' coordinates (trimmed on the
    window axes where the boundary shrinks the output, ``boundary="valid"``), a name and the
    attrs that stay true."""
    import xarray as xr

    from pipeline.plan.metadata import output_span

    coords: dict[str, Any] = {}
    for n in names:
        x = inputs[n]
        if not is_xarray(x):
            continue
        for cname, coord in x.coords.items():
            if cname in coords or not set(coord.dims) <= set(dims):
                continue
            index = {}
            for d in coord.dims:
                span = output_span(plan, list(dims).index(d))
                if span is not None:
                    index[d] = span
            coords[cname] = coord.isel(index) if index else coord
    attrs = result_attrs(op, names, inputs, stat)
    gm = next((inputs[n].attrs.get("grid_mapping") for n in names if is_xarray(inputs[n])), None)
    if isinstance(gm, str) and gm in coords:  # the CRS variable is carried: keep the reference
        attrs["grid_mapping"] = gm
    return xr.DataArray(result, dims=tuple(dims), coords=coords, name=result_name(op, names, inputs, stat),
                        attrs=attrs)
