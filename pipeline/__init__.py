"""pipeline: exact moving-window reductions of pointwise expressions over huge images.

Public API: :func:`window_reduce` (numpy, dask or xarray arrays; also the xarray accessor
``da.pipeline.window_reduce(...)``) and :func:`run` (a YAML config path or a mapping).  User
errors raise :class:`PipelineError`, a :class:`ValueError`.

``import pipeline`` is light (numpy only): the engine (numba, zarr, pydantic, dask) is imported
on first use.  When xarray is already imported, the ``.pipeline`` accessor is registered at once;
otherwise the first call to :func:`window_reduce` (or ``import pipeline.accessor``) registers it.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from .errors import ArgumentTypeError, ConfigError, InputError, OutputError, PipelineError


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pipeline")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0+unknown"


__all__ = [
    "ArgumentTypeError",
    "ConfigError",
    "InputError",
    "OutputError",
    "PipelineError",
    "__version__",
    "run",
    "window_reduce",
]

#: public functions, imported from their module on first access
_LAZY = {"window_reduce": "api", "run": "api"}


def __getattr__(name: str) -> Any:
    if name == "__version__":  # importlib.metadata costs ~60 ms: on first use
        globals()[name] = value = _version()
        return value
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    try:  # submodules (pipeline.plan, pipeline.io, ...) stay reachable as attributes
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return list(__all__)


if "xarray" in sys.modules:  # the notebook order (import xarray, then pipeline): accessor now
    from . import accessor as _accessor  # noqa: F401
