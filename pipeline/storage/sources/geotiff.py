"""GeoTIFF and Cloud-Optimized GeoTIFF as an input source, read with rasterio (the optional
extra ``geotiff``).

A single-band file is a 2-D array with dimensions (y, x); a multiband file is (band, y, x), or
the one band ``inputs.<name>.band`` names (1-based, as in GDAL), 2-D.  Storage chunks are the
file's internal blocks (its tiles, or its strips), with all bands in one chunk where the file
interleaves them by pixel, so the engine reads every tile once.  Reads open the file for the one
region they read and close it again: nothing is held open, no lock is shared, and the array
pickles to dask.distributed workers.  A URL (``s3://``, ``https://``, any fsspec protocol) is
read through fsspec with the input's ``storage_options``, by byte ranges.

The file's nodata becomes the ``nodata`` attribute (which the run's nodata rule reads), its CRS
and transform the CF grid-mapping variable ``spatial_ref`` that rioxarray writes (``crs_wkt``,
``spatial_ref``, ``GeoTransform`` and the CF parameters), its GDAL metadata tags the array's
attributes, and the pixel centres its ``y``/``x`` coordinates.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.errors import InputError
from pipeline.plan.dtypes import as_computable, computable
from pipeline.storage import stores

#: the grid-mapping variable's name, as rioxarray writes it
GRID_MAPPING = "spatial_ref"
EXTRA = "reading GeoTIFF needs rasterio: pip install 'pipeline[geotiff]'"


@functools.cache
def _quiet() -> None:
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)


@contextmanager
def open_dataset(path: str, storage_options: Mapping[str, Any] | None = None) -> Iterator[Any]:
    """The rasterio dataset of a local path or an fsspec URL, open for the ``with`` block.  A
    file without georeferencing is an image like any other: rasterio's
    ``NotGeoreferencedWarning`` is silenced (one filter for that category, set on first use;
    :func:`warnings.catch_warnings` is not thread-safe)."""
    import rasterio

    _quiet()

    if stores.is_local(path):
        with rasterio.open(stores.local_path(path)) as ds:
            yield ds
        return
    import fsspec

    fs, inner = fsspec.core.url_to_fs(path, **dict(storage_options or {}))
    with rasterio.open(inner, opener=fs) as ds:
        yield ds


@dataclass(frozen=True)
class RasterArray:
    """The array the engine reads blocks from: shape, dtype (computable), chunks and
    ``[region]``; holds only the path, options and band numbers, so it pickles."""

    path: str
    storage_options: Mapping[str, Any] | None
    bands: tuple[int, ...]  #: 1-based band numbers read
    squeeze: bool  #: one band, read as 2-D
    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: tuple[int, ...]
    where: str  #: the input, for messages
    attrs: Mapping[str, Any] = field(default_factory=dict)  #: the file's tags, nodata and grid mapping

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, selection: Any) -> np.ndarray:
        from rasterio.windows import Window

        sel = selection if isinstance(selection, tuple) else (selection,)
        sel = sel + (slice(None),) * (self.ndim - len(sel))
        spans = [_span(s, n) for s, n in zip(sel, self.shape)]
        rows, cols = spans[-2], spans[-1]
        bands = list(self.bands[spans[0]]) if not self.squeeze else list(self.bands)
        window = Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
        try:
            with open_dataset(self.path, self.storage_options) as ds:
                data = ds.read(bands, window=window)
        except Exception as e:  # rasterio, GDAL and fsspec raise many types for unreadable bytes
            raise InputError(f"cannot read rows {rows.start}:{rows.stop}, cols {cols.start}:{cols.stop}: {e}", where=self.where) from None
        data = data[0] if self.squeeze else data
        picks = tuple(0 if isinstance(s, (int, np.integer)) else slice(None) for s in sel)
        return np.asarray(as_computable(data[picks]))

    def __dask_tokenize__(self) -> Any:
        return ("pipeline-geotiff", self.path, self.bands)


def _span(s: Any, n: int) -> slice:
    """A region axis as a step-1 slice within ``[0, n)`` (an int index as a length-1 slice)."""
    if isinstance(s, (int, np.integer)):
        i = int(s) + (n if s < 0 else 0)
        return slice(i, i + 1)
    start, stop, step = s.indices(n)
    if step != 1:
        raise IndexError("GeoTIFF inputs read regions with step 1 only")
    return slice(start, max(start, stop))


def dask_view(arr: RasterArray, label: str) -> Any:
    """A dask array over ``arr``, one task per storage chunk, keys named after ``label``."""
    import dask.array as da

    from pipeline.storage import ledger

    token = ledger.fingerprint([arr.path, list(arr.bands), list(arr.shape)])[:24]
    return da.from_array(arr, chunks=arr.chunks, name=f"input-{label}-{token}", asarray=False, fancy=False)


@dataclass
class GeoTiffSource:
    """One GeoTIFF input (all bands or one), as an :class:`~pipeline.storage.sources.InputSource`."""

    path: str
    array: RasterArray
    meta: dict[str, Any]  #: crs_wkt, transform (GDAL order), nodata, tags, count
    storage_options: Mapping[str, Any] | None = None
    name: str = field(init=False)

    def __post_init__(self) -> None:
        band = self.array.bands[0] if self.array.squeeze and self.meta["count"] > 1 else None
        self.name = self.path if band is None else f"{self.path} band {band}"

    @classmethod
    def open(
        cls, path: str, array: str | None, *, where: str, storage_options: Mapping[str, Any] | None = None,
        band: int | None = None, level: int | str | None = None,
    ) -> GeoTiffSource:
        if array is not None or level is not None:
            key = "array" if array is not None else "level"
            raise InputError(f"{path} is a GeoTIFF: '{key}' applies to Zarr stores (use 'band' to pick a band)", where=f"{where}.{key}")
        try:
            import rasterio  # noqa: F401 - the extra's presence, checked before any read
        except ImportError:
            raise InputError(EXTRA, where=where) from None
        if stores.is_local(path) and not os.path.exists(stores.local_path(path)):
            raise InputError(f"file {path} does not exist", where=where)
        if not stores.is_local(path) and not stores.remote_exists(path, storage_options, where):
            raise InputError(f"file {path} does not exist", where=where)
        try:
            with open_dataset(path, storage_options) as ds:
                meta = _meta(ds)
                chunk = tuple(ds.block_shapes[0])
                per_pixel = ds.interleaving is not None and ds.interleaving.name == "pixel"
                dtype = computable(np.dtype(ds.dtypes[0]))
        except Exception as e:  # noqa: BLE001 - not a TIFF, damaged, unreachable: all reported
            raise InputError(f"cannot open GeoTIFF {path}: {e}", where=where) from None
        count = meta["count"]
        if band is not None and not 1 <= band <= count:
            raise InputError(f"band {band} is not in {path} (bands 1 to {count})", where=f"{where}.band")
        bands = (band,) if band is not None else tuple(range(1, count + 1))
        squeeze = len(bands) == 1
        shape = (meta["height"], meta["width"]) if squeeze else (count, meta["height"], meta["width"])
        chunks = chunk if squeeze else ((count if per_pixel else 1), *chunk)
        arr = RasterArray(path, storage_options, bands, squeeze, shape, dtype, chunks, f"{where} ({path})", _attrs(meta))
        return cls(path, arr, meta, storage_options)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    @property
    def chunks(self) -> tuple[int, ...]:
        return self.array.chunks

    @property
    def dims(self) -> tuple[str, ...] | None:
        return ("y", "x") if self.array.squeeze else ("band", "y", "x")

    @property
    def attrs(self) -> Mapping[str, Any]:
        return self.array.attrs

    def coords(self) -> dict[str, Any]:
        """Pixel centres along y and x (for an unrotated transform) and the band numbers."""
        out: dict[str, Any] = {}
        t = self.meta["transform"]
        if t is not None and t[2] == 0 and t[4] == 0:
            c, a, _, f, _, e = t
            out["y"] = f + e * (np.arange(self.meta["height"]) + 0.5)
            out["x"] = c + a * (np.arange(self.meta["width"]) + 0.5)
        if not self.array.squeeze:
            out["band"] = np.asarray(self.array.bands, dtype=np.int64)
        return out

    def scalar(self, name: str) -> tuple[Any, dict[str, Any]] | None:
        if name != GRID_MAPPING or "grid_mapping" not in self.attrs:
            return None
        return np.int64(0), grid_mapping_attrs(self.meta["crs_wkt"], self.meta["transform"])

    def read(self, region: tuple[slice, ...]) -> np.ndarray:
        return self.array[region]

    def identity(self) -> dict[str, Any]:
        """The path, bands, shape and dtype, and the file's size and modification time (local) or
        its ETag, else its time and size, on an object store."""
        from pipeline.config import redact

        ident: dict[str, Any] = {
            "path": redact.url(self.path), "bands": list(self.array.bands), "shape": list(self.shape), "dtype": str(self.dtype),
        }
        if stores.is_local(self.path):
            st = os.stat(stores.local_path(self.path))
            ident["file"] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        else:
            ident["file"] = object_version(self.path, self.storage_options)
        return ident


def object_version(path: str, storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """An object's size and version tag (ETag, else a modification time) from one fsspec ``info``."""
    import fsspec

    from pipeline.storage.sources.zarr import _VERSION_KEYS

    fs, inner = fsspec.core.url_to_fs(path, **dict(storage_options or {}))
    try:
        info = fs.info(inner)
    except (FileNotFoundError, OSError) as e:
        raise InputError(f"cannot read the object's metadata: {e}", where=path) from None
    key = next((k for k in _VERSION_KEYS if info.get(k) is not None), None)
    return {"size": info.get("size"), "by": key, "tag": str(info.get(key)) if key else None}


def _meta(ds: Any) -> dict[str, Any]:
    """What a run keeps of an open dataset (plain values: the source pickles)."""
    georef = not ds.transform.is_identity
    return {
        "count": ds.count,
        "height": ds.height,
        "width": ds.width,
        "crs_wkt": ds.crs.to_wkt() if ds.crs is not None else None,
        "transform": tuple(float(v) for v in ds.transform.to_gdal()) if georef or ds.crs is not None else None,
        "nodata": _plain(ds.nodata),
        "tags": {str(k): str(v) for k, v in ds.tags().items()},
    }


def _attrs(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The array's attributes: the file's tags, its ``nodata``, the grid mapping's name."""
    out: dict[str, Any] = dict(meta["tags"])
    if meta["nodata"] is not None:
        out["nodata"] = meta["nodata"]
    if meta["crs_wkt"] is not None or meta["transform"] is not None:
        out["grid_mapping"] = GRID_MAPPING
    return out


def _plain(v: Any) -> int | float | None:
    if v is None:
        return None
    return int(v) if float(v).is_integer() else float(v)


def grid_mapping_attrs(crs_wkt: str | None, transform: tuple[float, ...] | None) -> dict[str, Any]:
    """The attributes of a CF grid-mapping variable as rioxarray writes them: the CF parameters
    (pyproj's ``to_cf``, where pyproj is installed), ``crs_wkt``, ``spatial_ref`` and GDAL's
    ``GeoTransform`` text."""
    attrs: dict[str, Any] = {}
    if crs_wkt is not None:
        try:
            from pyproj import CRS

            attrs.update({k: v for k, v in CRS.from_wkt(crs_wkt).to_cf().items() if k != "crs_wkt"})
        except ImportError:  # pragma: no cover - rioxarray, in the same extra, requires pyproj
            pass
        attrs["crs_wkt"] = crs_wkt
        attrs["spatial_ref"] = crs_wkt
    if transform is not None:
        attrs["GeoTransform"] = " ".join(repr(v) for v in transform)
    return attrs
