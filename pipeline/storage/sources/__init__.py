"""Input sources: what a run reads, behind one small protocol.

An :class:`InputSource` is one input array: its shape, dtype, storage chunks, dimension names,
attributes and coordinates, a region read, and a cheap identity for the resume fingerprint.
The rest of the package opens inputs through :func:`open_source` and never branches on the
format.  Zarr (:mod:`pipeline.storage.sources.zarr`, OME-Zarr included) is the fallback; GeoTIFF
and COG files (:mod:`pipeline.storage.sources.geotiff`) are chosen by their suffix.  A new format
is one new module here with a class satisfying :class:`InputSource` and one :func:`register`
line below, chosen by file suffix or URL scheme.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

from pipeline.errors import InputError
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


Opener = Callable[..., InputSource]  #: (path, array, *, where, storage_options[, band][, level]) -> InputSource


def _zarr() -> Opener:
    from pipeline.storage.sources.zarr import ZarrSource

    return ZarrSource.open


#: the input formats, by file suffix or URL scheme; Zarr is the fallback
_FORMATS: Registry[Opener] = Registry(_zarr)
register = _FORMATS.register  #: ``register(".tif", opener)``: open paths ending (or starting) with it with ``opener``
opener_for = _FORMATS.opener_for  #: the opener for a store path: the first registered match, else Zarr


def _geotiff(path: str, array: str | None, **options: Any) -> InputSource:
    from pipeline.storage.sources.geotiff import GeoTiffSource

    return GeoTiffSource.open(path, array, **options)


for _suffix in (".tif", ".tiff"):
    register(_suffix, _geotiff)


def open_source(
    path: str, array: str | None, *, where: str, storage_options: Mapping[str, Any] | None = None,
    band: int | None = None, level: int | str | None = None,
) -> InputSource:
    """Open one input array read-only; ``where`` is the config key for messages; ``band`` picks
    one band of a multiband file, ``level`` one level of a multiscale (OME-Zarr) image (passed to
    the opener only when set)."""
    picks = {k: v for k, v in (("band", band), ("level", level)) if v is not None}
    return opener_for(path)(path, array, where=where, storage_options=storage_options, **picks)


def spec_of(name: str, source: InputSource) -> ArraySpec:
    """What the plan needs to know of an input."""
    return ArraySpec(name=name, shape=source.shape, dtype=source.dtype, chunks=source.chunks, dims=source.dims, source=source.name)


def georeferencing(source: InputSource) -> tuple[str | None, tuple[float, ...] | None] | None:
    """An input's (CRS as WKT, GDAL GeoTransform) from its grid-mapping variable; None when it has none."""
    gm = source.attrs.get("grid_mapping")
    found = source.scalar(gm) if isinstance(gm, str) else None
    if found is None:
        return None
    attrs = found[1]
    crs = attrs.get("crs_wkt") or attrs.get("spatial_ref")
    try:
        transform = tuple(float(v) for v in str(attrs["GeoTransform"]).split())
    except (KeyError, ValueError):
        transform = None
    return (str(crs) if crs else None), transform


def _same_crs(a: str | None, b: str | None) -> bool:
    if a == b or a is None or b is None:
        return a == b
    try:
        from pyproj import CRS
    except ImportError:  # pragma: no cover - the geotiff extra brings pyproj
        return False
    return bool(CRS.from_wkt(a) == CRS.from_wkt(b))


def check_same_grid(opened: Mapping[str, InputSource]) -> None:
    """Refuse inputs of one run that carry georeferencing on different grids: another CRS,
    another GeoTransform, or another (rows, cols) shape; the one-line message names both inputs
    and what differs."""
    geo = {n: (g, s.shape[-2:]) for n, s in opened.items() if (g := georeferencing(s)) is not None}
    names = list(geo)
    for other in names[1:]:
        (crs_a, gt_a), shape_a = geo[names[0]]
        (crs_b, gt_b), shape_b = geo[other]
        if not _same_crs(crs_a, crs_b):
            what = f"CRS {_crs_name(crs_a)} vs {_crs_name(crs_b)}"
        elif (gt_a is None) != (gt_b is None) or (gt_a and gt_b and not np.allclose(gt_a, gt_b, rtol=1e-12, atol=0)):
            what = f"transform {gt_a} vs {gt_b}"
        elif shape_a != shape_b:
            what = f"shape {shape_a} vs {shape_b}"
        else:
            continue
        raise InputError(f"inputs.{names[0]} and inputs.{other} are on different grids: {what}", where="inputs")


def _crs_name(wkt: str | None) -> str:
    """A CRS for a message: its EPSG code where it has one, else its name."""
    if wkt is None:
        return "none"
    try:
        from pyproj import CRS

        crs = CRS.from_wkt(wkt)
        code = crs.to_epsg()
        return f"EPSG:{code}" if code else crs.name
    except Exception:  # noqa: BLE001 - no pyproj, or a WKT it cannot parse
        return wkt[:40]


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
    from pipeline.storage.sources import geotiff, zarr

    if isinstance(arr, geotiff.RasterArray):
        return geotiff.dask_view(arr, label)

    return zarr.dask_view(arr, label, where)


__all__ = ["InputSource", "check_same_grid", "checked", "dask_view", "open_source", "opener_for", "read_region", "register", "spec_of", "storage_chunks"]
