"""Output targets: where a run writes, behind one small protocol (the counterpart of
:mod:`pipeline.storage.sources`).

An :class:`OutputTarget` is one output store: it creates and opens the output arrays (with their
coordinates, 0-D variables such as the CRS, and attributes), reads and updates the output state
attribute, lists the stored chunks for resume, writes blocks, consolidates, and swaps a staged
replacement in.  :mod:`pipeline.runner.runconfig` and :mod:`pipeline.execution.engine` reach the output only through
:func:`open_target` and this protocol.  Zarr (:mod:`pipeline.storage.targets.zarr`) is the
default; :mod:`pipeline.storage.targets.cog` writes Cloud-Optimized GeoTIFFs (paths ending in
``.tif``/``.tiff``, or ``output.format: cog``).  A new format is one new module here with a class
satisfying :class:`OutputTarget` and one :func:`register` line, chosen by file suffix or URL
scheme.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pipeline.storage.stores import Registry
from pipeline.storage.targets.base import RETIRED, STAGED, OutputArray, OutputTarget, checkpoint

Opener = Callable[..., OutputTarget]  #: (path, *, storage_options) -> OutputTarget


def _zarr() -> Opener:
    from pipeline.storage.targets.zarr import ZarrTarget

    return ZarrTarget.open


def _cog(path: str, *, storage_options: Mapping[str, Any] | None = None) -> OutputTarget:
    from pipeline.storage.targets.cog import CogTarget

    return CogTarget.open(path, storage_options=storage_options)


#: the output formats, by file suffix or URL scheme; Zarr is the fallback
_FORMATS: Registry[Opener] = Registry(_zarr)
register = _FORMATS.register  #: ``register(".tif", opener)``: write paths ending (or starting) with it with ``opener``
opener_for = _FORMATS.opener_for  #: the opener for an output path: the first registered match, else Zarr
register(".tif", _cog)
register(".tiff", _cog)
#: the openers of the formats named by ``output.format``
NAMED: dict[str, Callable[[], Opener]] = {"zarr": _zarr, "cog": lambda: _cog}


def open_target(path: str, storage_options: Mapping[str, Any] | None = None, format: str | None = None) -> OutputTarget:
    """The output target of a store path, in the format named (``output.format``) or else the
    one its suffix says (nothing is read or written yet)."""
    opener = NAMED[format]() if format is not None else opener_for(path)
    return opener(path, storage_options=storage_options)


__all__ = ["RETIRED", "STAGED", "OutputArray", "OutputTarget", "open_target", "opener_for", "register", "checkpoint"]
