"""pipeline: exact moving-window reductions of pointwise expressions over huge images.

Public API: :func:`window_reduce` (numpy, dask or xarray arrays) and :func:`run` (a YAML config
path or a mapping).  User errors raise :class:`PipelineError`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pipeline")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

from .api import run, window_reduce
from .errors import ConfigError, InputError, OutputError, PipelineError

__all__ = ["ConfigError", "InputError", "OutputError", "PipelineError", "__version__", "run", "window_reduce"]
