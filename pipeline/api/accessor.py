"""The xarray accessor: ``da.pipeline.window_reduce(...)`` and ``ds.pipeline.window_reduce(...)``.

Registered when this module is imported, which ``import pipeline`` arranges as soon as xarray is
imported (before or after pipeline).
"""

from __future__ import annotations

from typing import Any

import xarray as xr

from pipeline.api import reduce
from pipeline.errors import ConfigError


class _Accessor:
    def __init__(self, obj: xr.DataArray | xr.Dataset) -> None:
        self._obj = obj


@xr.register_dataarray_accessor("pipeline")
class DataArrayAccessor(_Accessor):
    """``da.pipeline.window_reduce(size=..., reduce=...)``: the window statistic of this array."""

    def window_reduce(self, op: str | None = None, *, name: str | None = None, others: dict[str, Any] | None = None,
                      **kwargs: Any) -> Any:
        """:func:`pipeline.window_reduce` of this DataArray, called ``name`` (default: its own
        name, or ``a`` when it has none) in ``op`` (default: the array itself).  ``others`` adds
        more named inputs for ``op``; every other argument is :func:`pipeline.window_reduce`'s
        (``size`` may be a mapping ``{dim: W}``)."""
        da = self._obj
        if name is None:
            name = da.name if isinstance(da.name, str) and da.name.isidentifier() else "a"
        inputs = {name: da, **(others or {})}
        if len(inputs) != 1 + len(others or {}):
            raise ConfigError(f"names {name!r}, which is also this array's name", where="others")
        return reduce.window_reduce(op if op is not None else name, inputs, **kwargs)


@xr.register_dataset_accessor("pipeline")
class DatasetAccessor(_Accessor):
    """``ds.pipeline.window_reduce("t - t_mean", size=...)``: the data variables are the names."""

    def window_reduce(self, op: str, **kwargs: Any) -> Any:
        """:func:`pipeline.window_reduce` with this Dataset's data variables as the inputs."""
        ds = self._obj
        assert isinstance(ds, xr.Dataset)  # registered on Datasets only
        return reduce.window_reduce(op, ds, **kwargs)
