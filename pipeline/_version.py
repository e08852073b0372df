"""The installed version of this package, read once from its distribution's metadata."""

from __future__ import annotations

import functools

#: the distribution's name on the package index (``pipeline`` there is an unrelated project);
#: the import name and the command stay ``pipeline``
DISTRIBUTION = "pipeline-windows"


@functools.cache
def version() -> str:
    """The version of the installed distribution (``0.0.0+unknown`` when running from a source
    tree that was never installed).  importlib.metadata costs ~60 ms: read on first use."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version(DISTRIBUTION)
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0+unknown"
