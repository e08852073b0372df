"""pipeline: exact moving-window reductions of pointwise expressions over huge images.

Public API: :func:`window_reduce` (numpy, dask or xarray arrays; also the xarray accessor
``da.pipeline.window_reduce(...)``) and :func:`run` (a YAML config path or a mapping).  User
errors raise :class:`PipelineError`, a :class:`ValueError`.

``import pipeline`` is light (no numpy, xarray, dask, numba, zarr or pydantic): the engine is
imported on first use.  The ``.pipeline`` accessor is registered as soon as xarray is imported,
before or after pipeline.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import logging
import sys
from typing import Any

from .errors import ArgumentTypeError, ConfigError, InputError, OutputError, PipelineError

# the library's records go to the handlers its user configures (none: Python's last-resort
# printer stays quiet, the command prints its own lines)
logging.getLogger("pipeline").addHandler(logging.NullHandler())

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
_LAZY = {"window_reduce": "api.reduce", "run": "api.reduce"}


def __getattr__(name: str) -> Any:
    if name == "__version__":  # importlib.metadata costs ~60 ms: on first use
        from ._version import version

        globals()[name] = value = version()
        return value
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    try:  # submodules (pipeline.plan.planner, pipeline.storage.io, ...) stay reachable as attributes
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return list(__all__)


class _AccessorOnXarrayImport(importlib.abc.MetaPathFinder):
    """Registers the ``.pipeline`` accessor right after xarray is imported (without importing
    xarray here, which would cost its ~0.5 s to every ``import pipeline``)."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "xarray":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)  # once; and so that find_spec below uses the real finders
        spec = importlib.util.find_spec("xarray")
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            run(module)
            importlib.import_module(".api.accessor", __name__)

        setattr(spec.loader, "exec_module", exec_module)  # this spec's own loader instance (mypy: no method-assign)
        return spec


if "xarray" in sys.modules:  # xarray first, then pipeline: register now
    from pipeline.api import accessor as _accessor  # noqa: F401
elif not any(isinstance(f, _AccessorOnXarrayImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _AccessorOnXarrayImport())
