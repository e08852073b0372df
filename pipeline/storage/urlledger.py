"""The resume ledger of an output on object storage (``s3://``, ``gs://``, any fsspec URL).

The same rules as :mod:`pipeline.storage.ledger` (a record per task), kept beside the output in
the same store::

    s3://bucket/out.zarr.pipeline/<array>/<fingerprint[:16]>/grid.json
    s3://bucket/out.zarr.pipeline/<array>/<fingerprint[:16]>/done/t.<i>.<j>.<token>.json

A record is one object per task: the JSON list of the blocks a task (a tile) wrote, PUT when the
task ends and, in a task longer than :data:`FLUSH_S`, every :data:`FLUSH_S` seconds (so a task
killed outright loses at most that much recorded work; one stopped by an exception records what
it wrote).  So a run makes about as many PUTs of records as tasks, not one per block, and a
resume lists and reads that many objects.  Ledgers of earlier versions (one empty object
``done/<i>.<j>`` per block) are read too.  A record is written only after all its blocks' chunks
are written (an object PUT is atomic: readers see the whole object or none), so "recorded as done"
implies "written", from any worker that can reach the store.

The output's lock on object stores is :mod:`pipeline.storage.urllock`: a create-if-absent where
the backend sends the condition (s3fs), none elsewhere.  Without it two runs of the same config at
once are not refused; they write the same bytes to the same keys (blocks are deterministic), so the
output is still right; they only duplicate work.  Runs of *different* configs on one output are
refused as on local disks (the output's fingerprint differs) unless ``overwrite`` is given.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
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


#: seconds of a long task between two records of its blocks
FLUSH_S = 60.0


def _record_name(indices: Sequence[Sequence[int]]) -> str:
    return f"t.{_name(indices[0])}.{uuid.uuid4().hex[:12]}.json"


def _is_record(name: str) -> bool:
    return name.startswith("t.") and name.endswith(".json")


@dataclass(frozen=True)
class ObjectRecorder:
    """The object-store ledger's recorder: ``task()`` is a task's :class:`TaskBatch`;
    ``record.many(indices)`` writes one record of blocks done (``record(index)``: a record of one
    block).  Picklable (a URL and the storage options), so it runs on any worker that can reach
    the store."""

    done_url: str
    storage_options: dict[str, Any] = field(default_factory=dict)

    def task(self) -> TaskBatch:
        return TaskBatch(self)

    def __call__(self, index: Sequence[int]) -> None:
        self.many([index])

    def many(self, indices: Sequence[Sequence[int]]) -> None:
        if not indices:
            return
        fs, root = _fs(self.done_url, self.storage_options)
        fs.pipe_file(f"{root}/{_record_name(indices)}", json.dumps([[int(i) for i in idx] for idx in indices]).encode())


class TaskBatch:
    """The blocks a task wrote, recorded together (``record.many``): at the task's end
    (``close()``, also when it stops on an error), and every :data:`FLUSH_S` seconds of a long
    task.  Thread-safe."""

    def __init__(self, record: ObjectRecorder) -> None:
        self.record = record
        self.blocks: list[Sequence[int]] = []
        self.lock = threading.Lock()
        self.since = time.monotonic()

    def __call__(self, index: Sequence[int]) -> None:
        with self.lock:
            self.blocks.append(index)
            if time.monotonic() - self.since >= FLUSH_S:
                self._flush()

    def close(self) -> None:
        with self.lock:
            self._flush()

    def _flush(self) -> None:
        if self.blocks:
            self.record.many(self.blocks)
        self.blocks, self.since = [], time.monotonic()


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

    def records(self) -> dict[str, list[tuple[int, ...]]]:
        """Each record's path and its blocks: one listing, then the records read at once."""
        self.fs.invalidate_cache(self.done_dir)
        try:
            paths = [n.rstrip("/") for n in self.fs.ls(self.done_dir, detail=False)]
        except FileNotFoundError:
            return {}
        out: dict[str, list[tuple[int, ...]]] = {}
        for path in paths:
            index = _parse(path.rsplit("/", 1)[-1])
            if index is not None:  # one block per object: an earlier version's ledger
                out[path] = [index]
        wanted = [p for p in paths if _is_record(p.rsplit("/", 1)[-1])]
        for path, data in (self.fs.cat(wanted, on_error="omit") if wanted else {}).items():
            with contextlib.suppress(ValueError, TypeError):
                out[path.rstrip("/")] = [tuple(int(i) for i in idx) for idx in json.loads(data)]
        return out

    def done(self) -> set[tuple[int, ...]]:
        return {idx for blocks in self.records().values() for idx in blocks}

    def drop(self, indices: Iterable[Sequence[int]]) -> None:
        """Forget blocks: each record holding one is replaced by a record of the others."""
        gone = {tuple(int(i) for i in idx) for idx in indices}
        if not gone:
            return
        for path, blocks in self.records().items():
            if gone.isdisjoint(blocks):
                continue
            self.recorder.many([b for b in blocks if b not in gone])
            self.fs.rm_file(path)


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
