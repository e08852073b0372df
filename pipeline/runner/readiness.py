"""Input readiness: ready markers and unstored input chunks, checked before a run.

Zarr allows chunks that are not stored (they read as the array's fill value; zarr itself skips
writing chunks that hold only the fill value), so an unstored chunk is not always a fault.  But a
half-delivered input looks exactly like that, and it must never be computed silently: every
unstored chunk of every input is counted and its first keys are shown (``validate``, ``run``,
``verify``), and each input says what an unstored chunk means (``inputs.<name>.unstored_chunks``):

* ``warn`` (default): report them and run (sparse inputs written by zarr are valid);
* ``error``: refuse the run (exit 2);
* ``not-ready``: the delivery is still arriving (exit 5, retry later).

``inputs.<name>.ready_marker`` names a file that the delivery writes last; until it exists the
input is not ready (exit 5), whatever its chunks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config.load import Config
from pipeline.errors import InputError, NotReadyError
from pipeline.storage import io, zarrchunks

#: unstored keys shown in a message
SHOWN = 3


@dataclass
class InputReadiness:
    """The unstored chunks of one input array."""

    name: str  #: the input's name in the config
    where: str  #: store and array, for messages
    chunks: int  #: chunks (shards, for sharded arrays) in the grid
    unstored: int = 0  #: chunks not stored
    first: list[str] = field(default_factory=list)  #: keys of the first :data:`SHOWN` of them, in grid order

    def message(self) -> str:
        keys = ", ".join(self.first[:SHOWN]) + (", ..." if self.unstored > SHOWN else "")
        return f"{self.unstored} of {self.chunks} chunks of {self.where} are not stored (read as the fill value): {keys}"


def chunk_grid(arr: Any) -> tuple[int, ...]:
    """Stored objects per axis: shards for a sharded array, else chunks."""
    shape = getattr(arr, "shards", None) or arr.chunks
    return tuple(-(-s // c) for s, c in zip(arr.shape, shape))


def unstored_chunks(arr: Any) -> tuple[int, int, list[str]]:
    """(chunks in the grid, chunks not stored, the first :data:`SHOWN` keys of those) of a Zarr
    array: one listing of the store, only real chunk keys count as stored, as in ``verify``;
    nothing is built per chunk of the grid, so a planet-sized input is checked in its listing's time."""
    grid = chunk_grid(arr)
    return (math.prod(grid), *zarrchunks.unstored_keys(arr, grid, SHOWN))


def _marker_exists(path: str, storage_options: Any) -> bool:
    if io.is_local(path):
        return Path(io.local_path(path)).exists()
    import fsspec

    fs, p = fsspec.core.url_to_fs(path, **(storage_options or {}))
    return bool(fs.exists(p))


def check_markers(cfg: Config) -> None:
    """NotReadyError for the first input whose ``ready_marker`` does not exist yet (checked before
    the input itself is opened: a delivery that has not started has no store either)."""
    for name, spec in cfg.inputs.items():
        if spec.ready_marker is not None and not _marker_exists(spec.ready_marker, spec.storage_options):
            raise NotReadyError(f"not ready: its ready marker {spec.ready_marker} does not exist yet; retry later", where=f"inputs.{name}")


def check(cfg: Config, arrays: Mapping[str, Any]) -> list[InputReadiness]:
    """Check the unstored chunks of the opened input ``arrays`` (name -> zarr array: those the
    expression uses) by each input's ``unstored_chunks`` rule (after :func:`check_markers`).
    Returns the inputs that have unstored chunks (rule ``warn``); raises NotReadyError (exit 5)
    or InputError (exit 2) as the rules say."""
    found = []
    for name, arr in arrays.items():
        spec = cfg.inputs[name]
        if not hasattr(arr, "store_path"):  # not a Zarr array (a GeoTIFF): no chunk can be unstored
            continue
        total, missing, first = unstored_chunks(arr)
        if not missing:
            continue
        rep = InputReadiness(name, io.location(spec.path, spec.array), total, missing, first)
        if spec.unstored_chunks == "not-ready":
            raise NotReadyError(f"not ready: {rep.message()}; retry later", where=f"inputs.{name}")
        if spec.unstored_chunks == "error":
            raise InputError(f"{rep.message()} (unstored_chunks: error)", where=f"inputs.{name}")
        found.append(rep)
    return found
