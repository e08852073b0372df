"""The resume ledger of an output on object storage (``s3://``, ``gs://``, any fsspec URL).

The same layout and rules as :mod:`pipeline.storage.ledger`, kept beside the output in the same store::

    s3://bucket/out.zarr.pipeline/<array>/<fingerprint[:16]>/grid.json
    s3://bucket/out.zarr.pipeline/<array>/<fingerprint[:16]>/done/<i>.<j>

A block's object is written only after all its chunks are written (an object PUT is atomic:
readers see the whole object or none), so "recorded as done" implies "written", from any worker
that can reach the store.  ``done()`` is one listing of the ``done/`` prefix (paged by the store).

The output's lock on object stores is :mod:`pipeline.storage.urllock`: a create-if-absent where
the backend sends the condition (s3fs), none elsewhere.  Without it two runs of the same config at
once are not refused; they write the same bytes to the same keys (blocks are deterministic), so the
output is still right; they only duplicate work.  Runs of *different* configs on one output are
refused as on local disks (the output's fingerprint differs) unless ``overwrite`` is given.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.storage.ledger import SUFFIX, _name, _parse


def _fs(url: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str]:
    import fsspec

    return fsspec.core.url_to_fs(url, **dict(storage_options or {}))


def sidecar(url: str) -> str:
    """The sidecar prefix of an output store URL."""
    return url.rstrip("/") + SUFFIX


@dataclass(frozen=True)
class ObjectRecorder:
    """``record(index)``: writes the block's empty object.  Picklable (a URL and the storage
    options), so it runs on any worker that can reach the store."""

    done_url: str
    storage_options: dict[str, Any] = field(default_factory=dict)

    def __call__(self, index: Sequence[int]) -> None:
        fs, root = _fs(self.done_url, self.storage_options)
        fs.pipe_file(f"{root}/{_name(index)}", b"")


class Ledger:
    """The ledger of one output array for one fingerprint, on an fsspec URL."""

    def __init__(self, url: str, array: str, fp: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self.storage_options = dict(storage_options or {})
        self.fp = fp
        self.base_url = f"{sidecar(url)}/{array}"
        self.root_url = f"{self.base_url}/{fp[:16]}"
        self.fs, self.root = _fs(self.root_url, self.storage_options)
        self.base = self.root.rsplit("/", 1)[0]
        self.done_dir = f"{self.root}/done"

    @property
    def recorder(self) -> ObjectRecorder:
        return ObjectRecorder(f"{self.root_url}/done", self.storage_options)

    def reset(self, grid: dict[str, Any]) -> None:
        """Forget every ledger of this array (any fingerprint) and start an empty one."""
        if self.fs.exists(self.base):
            self.fs.rm(self.base, recursive=True)
        self.fs.invalidate_cache()
        self.fs.pipe_file(f"{self.root}/grid.json", json.dumps({"fingerprint": self.fp, **grid}).encode())

    def done(self) -> set[tuple[int, ...]]:
        self.fs.invalidate_cache(self.done_dir)
        try:
            names = self.fs.ls(self.done_dir, detail=False)
        except FileNotFoundError:
            return set()
        return {i for i in (_parse(n.rstrip("/").rsplit("/", 1)[-1]) for n in names) if i is not None}

    def drop(self, indices: Iterable[Sequence[int]]) -> None:
        paths = [f"{self.done_dir}/{_name(i)}" for i in indices]
        if paths:
            self.fs.rm(paths)


def find(url: str, array: str, fp: str | None, storage_options: Mapping[str, Any] | None = None) -> tuple[Ledger, dict[str, Any]] | None:
    """The ledger of ``array`` for fingerprint ``fp`` and its grid, or None."""
    if not fp:
        return None
    led = Ledger(url, array, fp, storage_options)
    try:
        grid = json.loads(led.fs.cat_file(f"{led.root}/grid.json"))
    except (FileNotFoundError, ValueError):
        return None
    if grid.get("fingerprint") != fp:
        return None
    return led, grid
