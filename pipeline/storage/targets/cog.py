"""Cloud-Optimized GeoTIFF as the output target (``output.format: cog``, or an output path ending
in ``.tif``/``.tiff``; local paths only; needs the ``geotiff`` extra, rasterio).

A COG cannot be written block by block from many workers, nor resumed once half written, so the
run's blocks go where they can: a Zarr store in the output's sidecar folder
(``<path>.pipeline/cog-blocks.pipeline-new``), written and resumed exactly like a Zarr output
(:class:`~pipeline.storage.targets.zarr.ZarrTarget`, the ledger beside it).  When every array is
complete, :meth:`CogTarget.finalize` makes each COG in one process with bounded memory: the
Zarr chunks are copied one at a time into a temporary tiled GeoTIFF, GDAL's COG driver adds the
overviews and the COG layout, the result is renamed over the output (readers see the old COG or
the new one), and the Zarr blocks are deleted.  The run's state (fingerprint, completeness,
provenance) is kept in the COG's ``PIPELINE`` metadata tag, so a rerun of the same config is
"up to date".

One statistic: the COG is ``path``.  Several: one COG per statistic, ``<stem>_<stat><suffix>``
(``out/ndvi.tif`` -> ``out/ndvi_mean.tif``, ``out/ndvi_max.tif``).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from pipeline.errors import OutputError
from pipeline.storage import ledger
from pipeline.storage.stores import is_local, local_path
from pipeline.storage.targets.base import STAGED, OutputArray
from pipeline.storage.targets.zarr import ZarrTarget

#: the metadata tag of a COG that holds the run's ``pipeline`` state attribute (JSON)
TAG = "PIPELINE"
#: the COG's internal tiles and GDAL's block cache while the COG is made (MB)
TILE, CACHE_MB = 512, 256
#: COG creation options: DEFLATE with the predictor GDAL picks for the dtype, overviews by 2x down
#: to one tile; overviews average floats and take the nearest value of integers (exact values)
COG_OPTIONS = {"COMPRESS": "DEFLATE", "PREDICTOR": "YES", "BLOCKSIZE": str(TILE), "OVERVIEWS": "AUTO", "BIGTIFF": "IF_SAFER"}


@dataclass
class CogTarget:
    """A COG file (one per statistic) as an :class:`~pipeline.storage.targets.OutputTarget`."""

    path: str
    storage_options: Mapping[str, Any] | None = None

    @classmethod
    def open(cls, path: str, *, storage_options: Mapping[str, Any] | None = None) -> CogTarget:
        return cls(path, storage_options)

    @property
    def blocks(self) -> ZarrTarget:
        """The Zarr store the blocks are written to until the COGs are made."""
        return ZarrTarget(str(ledger.sidecar(local_path(self.path)) / ("cog-blocks" + STAGED)))

    @property
    def can_swap(self) -> bool:
        return False  # the COG replaces the old one by a rename once complete (finalize)

    def location(self, array: str | None) -> str:
        return self.path

    def check_path(self) -> None:
        if not is_local(self.path):
            raise OutputError(f"{self.path}: a COG output is written to a local path only (copy it to object storage after the run)", where="output.path")
        p = Path(local_path(self.path))
        if p.is_dir():
            raise OutputError(f"{self.path} is a folder; a COG output is a file", where="output.path")
        try:
            import rasterio  # noqa: F401
        except ImportError:
            raise OutputError("a COG output needs rasterio: pip install 'pipeline[geotiff]'", where="output.path") from None

    def state(self, array: str) -> dict[str, Any] | None:
        if (Path(self.blocks.path) / "zarr.json").exists():
            return self.blocks.state(array)
        return self.finalized_state(array)

    def finalized_state(self, array: str) -> dict[str, Any] | None:
        return cog_state(self._file(array), array)

    def create_array(self, array: str, spec: OutputArray, *, overwrite: bool = False) -> zarr.Array:
        if len(spec.shape) != 2:
            raise OutputError(f"{self.path}: a COG output is 2-D (rows, columns); this output has shape {spec.shape}: write Zarr", where="output.format")
        return self.blocks.create_array(array, spec, overwrite=overwrite)

    def open_array(self, array: str, mode: str = "r+") -> zarr.Array:
        return self.blocks.open_array(array, mode)

    def update_state(self, handle: zarr.Array, **changes: Any) -> None:
        self.blocks.update_state(handle, **changes)

    def check_coords(
        self, coords: Mapping[str, np.ndarray], *, overwrite: bool, scalars: Mapping[str, tuple[Any, Mapping[str, Any]]] | None = None
    ) -> list[str]:
        return list(coords)

    def stored_chunk_keys(self, handle: zarr.Array) -> set[str]:
        return self.blocks.stored_chunk_keys(handle)

    def chunk_key(self, handle: zarr.Array, coords: Sequence[int]) -> str:
        return self.blocks.chunk_key(handle, coords)

    def writer(self, handle: Any) -> Any:
        return self.blocks.writer(handle)

    def write_block(self, writer: Any, region: tuple[slice, ...], block: np.ndarray) -> None:
        self.blocks.write_block(writer, region, block)

    def finalize(self) -> None:
        """Consolidate the blocks' store; once every array in it is complete, make the COGs and
        delete the blocks."""
        store = Path(self.blocks.path)
        if not (store / "zarr.json").exists():
            return
        self.blocks.finalize()
        group = zarr.open_group(store=store, mode="r", use_consolidated=False)
        states = {name: self.blocks.state(name) or {} for name, _ in group.arrays()}
        arrays = {name: a for name, a in group.arrays() if states[name]}
        if not arrays or not all(states[name].get("complete") for name in arrays):
            return
        many = len(arrays) > 1
        for name, arr in arrays.items():
            write_cog(arr, group, self._file(name, str(states[name].get("statistic")) if many else None))
        shutil.rmtree(store)

    def staged(self, *, fresh: bool) -> CogTarget:
        raise NotImplementedError("a COG output is not staged")  # can_swap is False

    def swap(self, fingerprint: str) -> None:
        raise NotImplementedError("a COG output is not staged")  # can_swap is False

    def recover(self) -> None:
        """Nothing to complete: a COG is renamed into place in one step."""

    def _file(self, array: str, statistic: str | None = None) -> Path:
        """The COG of ``array``: ``path``, or ``<stem>_<statistic><suffix>`` with several
        statistics (found by the name ``<array>_<statistic>`` once the blocks are gone)."""
        p = Path(local_path(self.path))
        if statistic is None:
            state = cog_state(p, array)
            if state is not None or "_" not in array:
                return p
            statistic = array.rpartition("_")[2]
        return p.with_name(f"{p.stem}_{statistic}{p.suffix}")


def cog_state(path: Path, array: str) -> dict[str, Any] | None:
    """The ``pipeline`` state kept in the COG ``path`` made for ``array`` (None: no such COG)."""
    if not path.is_file():
        return None
    import rasterio

    try:
        with rasterio.open(path) as ds:
            tags = ds.tags()
    except Exception:  # noqa: BLE001 - not a GeoTIFF the tool wrote: no state
        return None
    doc = json.loads(tags.get(TAG, "{}"))
    return dict(doc["state"]) if doc.get("array") == array else None


def georeference(group: zarr.Group, arr: zarr.Array) -> dict[str, Any]:
    """The CRS and affine transform of ``arr`` for rasterio: from its grid-mapping variable's
    ``crs_wkt`` and ``GeoTransform`` (CF, rioxarray), else none."""
    from affine import Affine

    name = arr.attrs.get("grid_mapping")
    gm = group.get(name) if isinstance(name, str) else None
    if not isinstance(gm, zarr.Array):
        return {}
    out: dict[str, Any] = {}
    wkt = gm.attrs.get("crs_wkt") or gm.attrs.get("spatial_ref")
    if isinstance(wkt, str):
        out["crs"] = wkt
    gt = gm.attrs.get("GeoTransform")
    if isinstance(gt, str) and len(gt.split()) == 6:
        out["transform"] = Affine.from_gdal(*(float(v) for v in gt.split()))
    return out


def write_cog(arr: zarr.Array, group: zarr.Group, dest: Path) -> None:
    """Make the COG ``dest`` from the complete 2-D Zarr array ``arr``: each chunk copied in turn
    into a temporary tiled GeoTIFF (memory: one chunk and GDAL's block cache), then GDAL's COG
    driver (overviews, layout), then renamed into place."""
    import rasterio
    from rasterio.shutil import copy as gdal_copy

    tmp, part = dest.with_name(dest.name + ".tiled.tmp"), dest.with_name(dest.name + ".cog.tmp")
    attrs = dict(arr.attrs)
    fill = arr.fill_value
    profile = {
        "driver": "GTiff", "width": arr.shape[1], "height": arr.shape[0], "count": 1, "dtype": arr.dtype.name,
        "tiled": True, "blockxsize": TILE, "blockysize": TILE, "compress": "DEFLATE", "zlevel": 1, "BIGTIFF": "IF_SAFER",
        "nodata": None if fill is None else fill.item() if hasattr(fill, "item") else fill, **georeference(group, arr),
    }
    tag = json.dumps({"array": arr.basename, "state": attrs["pipeline"]}, default=str)
    resampling = "AVERAGE" if arr.dtype.kind == "f" else "NEAREST"
    with rasterio.Env(GDAL_CACHEMAX=CACHE_MB):
        with rasterio.open(tmp, "w", **profile) as ds:
            ds.update_tags(**{TAG: tag})
            for window, block in _chunks(arr):
                ds.write(block, 1, window=window)
        gdal_copy(tmp, part, driver="COG", RESAMPLING=resampling, **COG_OPTIONS)
    os.replace(part, dest)
    tmp.unlink()


def _chunks(arr: zarr.Array) -> Any:
    """(rasterio window, values) of each chunk of the 2-D ``arr``, in row-major order."""
    from rasterio.windows import Window

    ch_r, ch_c = arr.chunks
    for r in range(0, arr.shape[0], ch_r):
        for c in range(0, arr.shape[1], ch_c):
            block = np.asarray(arr[r : r + ch_r, c : c + ch_c])
            yield Window(c, r, block.shape[1], block.shape[0]), block
