"""``pipeline convert``: a GeoTIFF/COG, TIFF or PNG file to a Zarr v3 array, once, for those
who prefer Zarr inputs.

The output is a Zarr v3 group holding one array (``data`` unless named) with dimension names,
written as a run's output is (:func:`pipeline.storage.targets.zarr.create_output`: compressed,
checksummed chunks, consolidated metadata):

* GeoTIFF/COG (read with rasterio, the extra ``geotiff``): (y, x), or (band, y, x) for several
  bands; the CRS and transform as rioxarray writes them (the ``spatial_ref`` variable with
  ``crs_wkt``, ``spatial_ref`` and ``GeoTransform``, the array's ``grid_mapping``), pixel-centre
  ``y``/``x`` coordinates, and the file's nodata as ``_FillValue`` and the array's fill value;
* other TIFF (tifffile): the first image series, its axes named from tifffile's axis letters
  (``Y`` y, ``X`` x, ``C``/``S`` c, ``Z`` z, ``T`` t, others lower-cased);
* PNG and other Pillow formats: (y, x), or (y, x, c) for colour.

Chunks follow the file's internal tiles or strips, grown by doubling along y and x to 1-4 MiB.
TIFF and GeoTIFF are copied chunk by chunk (memory: one chunk); a PNG has no random access and
is decoded whole by Pillow (memory: the image).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.errors import InputError, OutputError
from pipeline.plan import metadata
from pipeline.storage import stores

LOW, HIGH = 1 << 20, 4 << 20  #: chunk size bounds in bytes
_AXES = {"Y": "y", "X": "x", "C": "c", "S": "c", "Z": "z", "T": "t"}
PILLOW = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


@dataclass
class Image:
    """A file opened for copying: an array-like (``[region]``), its dims and storage blocks,
    and what goes beside it in the Zarr group."""

    array: Any
    dims: tuple[str, ...]
    block: tuple[int, ...]
    dtype: np.dtype
    attrs: dict[str, Any] = field(default_factory=dict)
    coords: dict[str, np.ndarray] = field(default_factory=dict)
    scalars: dict[str, tuple[Any, Mapping[str, Any]]] = field(default_factory=dict)
    fill_value: Any = 0


def choose_chunks(shape: Sequence[int], block: Sequence[int], itemsize: int, spatial: Sequence[int]) -> tuple[int, ...]:
    """Chunks aligned to the file's ``block`` (whole blocks, or a whole axis), grown by doubling
    along the ``spatial`` axes (the smaller first) until they hold at least :data:`LOW` bytes,
    never past :data:`HIGH` (a single block larger than that stays as it is)."""
    chunks = [max(1, min(b, n)) for b, n in zip(block, shape)]
    while math.prod(chunks) * itemsize < LOW:
        growable = [ax for ax in spatial if chunks[ax] < shape[ax]]
        if not growable:
            break
        ax = min(growable, key=lambda a: chunks[a])
        grown = chunks.copy()
        grown[ax] = min(shape[ax], chunks[ax] * 2)
        if math.prod(grown) * itemsize > HIGH:
            break
        chunks = grown
    return tuple(chunks)


def _regions(shape: Sequence[int], chunks: Sequence[int]) -> Iterator[tuple[slice, ...]]:
    for idx in np.ndindex(*(-(-n // c) for n, c in zip(shape, chunks))):
        yield tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(idx, chunks, shape))


def _is_geotiff(path: str, storage_options: Mapping[str, Any] | None) -> bool:
    """Whether a TIFF carries georeferencing and rasterio is there to read it."""
    try:
        import rasterio  # noqa: F401
    except ImportError:
        return False
    from pipeline.storage.sources.geotiff import open_dataset

    with open_dataset(path, storage_options) as ds:
        return ds.crs is not None or not ds.transform.is_identity


def _geotiff(path: str, storage_options: Mapping[str, Any] | None) -> Image:
    from pipeline.storage.sources.geotiff import GRID_MAPPING, GeoTiffSource

    src = GeoTiffSource.open(path, None, where=path, storage_options=storage_options)
    dims = src.dims or ()
    attrs = {k: v for k, v in src.attrs.items() if k not in ("nodata", "grid_mapping")}
    scalars: dict[str, tuple[Any, Mapping[str, Any]]] = {}
    found = src.scalar(GRID_MAPPING)
    if found is not None:
        scalars[GRID_MAPPING] = found
        attrs.update(grid_mapping=GRID_MAPPING, coordinates=GRID_MAPPING)
    nodata = src.meta["nodata"]
    usable = metadata.usable_nodata(nodata, src.dtype) if nodata is not None else None
    if usable is not None:
        attrs["_FillValue"] = metadata.fill_attr(usable, src.dtype)
    return Image(src.array, tuple(dims), src.chunks, src.dtype, attrs, src.coords(), scalars, usable if usable is not None else 0)


def _tiff(path: str, storage_options: Mapping[str, Any] | None) -> Image:
    import tifffile
    import zarr

    if stores.is_local(path):
        tf = tifffile.TiffFile(stores.local_path(path))
    else:
        import fsspec

        tf = tifffile.TiffFile(fsspec.open(path, "rb", **dict(storage_options or {})).open())
    series = tf.series[0]
    arr = zarr.open_array(series.aszarr(), mode="r")  # the series' tiles or strips, read on demand
    names: list[str] = []
    for letter in series.axes:
        name = _AXES.get(letter, letter.lower())
        names.append(name if name not in names else f"{name}{len(names)}")
    return Image(arr, tuple(names), tuple(arr.chunks), np.dtype(arr.dtype))


def _pillow(path: str, storage_options: Mapping[str, Any] | None) -> Image:
    from PIL import Image as PILImage

    if stores.is_local(path):
        data = np.asarray(PILImage.open(stores.local_path(path)))
    else:
        import fsspec

        with fsspec.open(path, "rb", **dict(storage_options or {})) as f:
            data = np.asarray(PILImage.open(f))
    dims = ("y", "x") if data.ndim == 2 else ("y", "x", "c")
    return Image(data, dims, (256, 256, *data.shape[2:]), data.dtype)


def open_image(path: str, storage_options: Mapping[str, Any] | None = None) -> Image:
    """Open ``path`` by its suffix (a TIFF by its georeferencing); unknown formats are refused."""
    bare = path.rstrip("/").lower()
    if stores.is_local(path) and not os.path.isfile(stores.local_path(path)):
        raise InputError(f"file {path} does not exist", where="IN")
    try:
        if bare.endswith((".tif", ".tiff")):
            return _geotiff(path, storage_options) if _is_geotiff(path, storage_options) else _tiff(path, storage_options)
        if bare.endswith(PILLOW):
            return _pillow(path, storage_options)
    except ImportError as e:
        raise InputError(f"reading {path} needs {e.name}: pip install 'pipeline[geotiff]'", where="IN") from None
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - damaged or unreadable files: one line, naming the file
        raise InputError(f"cannot read {path}: {e.__class__.__name__}: {e}", where="IN") from None
    raise InputError(f"{path}: not a GeoTIFF, TIFF or PNG (suffixes .tif, .tiff, {', '.join(PILLOW)})", where="IN")


def convert(
    src: str, dst: str, *, array: str = "data", overwrite: bool = False, storage_options: Mapping[str, Any] | None = None
) -> str:
    """Copy the image ``src`` into the Zarr v3 group ``dst`` as ``array``; returns a summary line."""
    from pipeline.storage import targets
    from pipeline.storage.targets import OutputArray

    if stores.is_local(dst) and os.path.exists(stores.local_path(dst)) and not overwrite:
        raise OutputError(f"{dst} exists; pass --overwrite to replace it", where="OUT")
    img = open_image(src, storage_options)
    shape = tuple(int(n) for n in img.array.shape)
    spatial = [img.dims.index(d) for d in ("y", "x") if d in img.dims] or [len(shape) - 2, len(shape) - 1]
    chunks = choose_chunks(shape, img.block, img.dtype.itemsize, spatial)
    target = targets.open_target(dst, storage_options)
    spec = OutputArray(shape, img.dtype, chunks, img.dims, img.attrs, img.coords, img.scalars, img.fill_value)
    out = target.create_array(array, spec, overwrite=overwrite)
    for region in _regions(shape, chunks):
        out[region] = np.asarray(img.array[region])
    target.finalize()
    return f"wrote {stores.location(dst, array)}: shape {shape}, dims {img.dims}, dtype {img.dtype}, chunks {chunks}"
