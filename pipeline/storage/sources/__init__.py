"""Input sources: what a run reads, behind one small protocol.

An :class:`InputSource` is one input array: its shape, dtype, storage chunks, dimension names,
attributes and coordinates, a region read, and a cheap identity for the resume fingerprint.
The rest of the package opens inputs through :func:`open_source` and never branches on the
format.  Zarr (:mod:`pipeline.storage.sources.zarr`) is the one implementation today; a new format (a
GeoTIFF reader, say) is one new module here with a class satisfying :class:`InputSource` and
one :func:`register` line below, chosen by file suffix or URL scheme.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

from pipeline.plan.planner import ArraySpec
from pipeline.storage.stores import Registry


@runtime_checkable
class InputSource(Protocol):
    """One input array of a run."""

    name: str  #: store and array, for messages (``data/seed.zarr:a``)
    array: Any  #: the array-like the engine reads blocks from (shape, dtype, chunks, ``[region]``)

    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def dtype(self) -> np.dtype: ...
    @property
    def chunks(self) -> tuple[int, ...]:
        """The chunk shape reads should align to (the shard shape for sharded arrays)."""
        ...
    @property
    def dims(self) -> tuple[str, ...] | None: ...
    @property
    def attrs(self) -> Mapping[str, Any]: ...
    def coords(self) -> dict[str, Any]:
        """1-D coordinate arrays by dimension name (empty when the format has none)."""
        ...
    def scalar(self, name: str) -> tuple[Any, dict[str, Any]] | None:
        """A 0-D variable beside the array (a CF grid mapping): (value, attributes), or None."""
        ...
    def read(self, region: tuple[slice, ...]) -> np.ndarray: ...
    def identity(self) -> dict[str, Any]:
        """A JSON-able identity of the content: changes when the data does."""
        ...


Opener = Callable[..., InputSource]  #: (path, array, *, where, storage_options) -> InputSource


def _zarr() -> Opener:
    from pipeline.storage.sources.zarr import ZarrSource

    return ZarrSource.open


#: the input formats, by file suffix or URL scheme; Zarr is the fallback
_FORMATS: Registry[Opener] = Registry(_zarr)
register = _FORMATS.register  #: ``register(".tif", opener)``: open paths ending (or starting) with it with ``opener``
opener_for = _FORMATS.opener_for  #: the opener for a store path: the first registered match, else Zarr


def open_source(
    path: str, array: str | None, *, where: str, storage_options: Mapping[str, Any] | None = None
) -> InputSource:
    """Open one input array read-only; ``where`` is the config key for messages."""
    return opener_for(path)(path, array, where=where, storage_options=storage_options)


def spec_of(name: str, source: InputSource) -> ArraySpec:
    """What the plan needs to know of an input."""
    return ArraySpec(name=name, shape=source.shape, dtype=source.dtype, chunks=source.chunks, dims=source.dims, source=source.name)


def read_region(arr: Any, region: tuple[slice, ...]) -> np.ndarray:
    """Read one region of an input array into memory."""
    return np.asarray(arr[region])


def storage_chunks(arr: Any) -> tuple[int, ...]:
    """The storage chunk shape reads should align to (the shard shape for sharded arrays)."""
    shards = getattr(arr, "shards", None)
    return tuple(shards) if shards else tuple(arr.chunks)


def checked(arr: Any, where: str) -> Any:
    """``arr`` for reading, its failing chunk reads named by ``where`` and the chunk key."""
    from pipeline.storage.sources import zarr

    return zarr.checked(arr, where)


def dask_view(arr: Any, label: str, where: str) -> Any:
    """A dask array over an input array (keys named after ``label``); chunk read errors name
    ``where`` and the chunk key."""
    from pipeline.storage.sources import zarr

    return zarr.dask_view(arr, label, where)


__all__ = ["InputSource", "checked", "dask_view", "open_source", "opener_for", "read_region", "register", "spec_of", "storage_chunks"]
