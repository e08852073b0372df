"""The resume ledger: which output blocks of a run are done, kept beside the output store.

Layout, for an output store ``out.zarr`` (local paths only)::

    out.zarr.pipeline/                 the sidecar folder (beside the store: zarr would warn about a
      lock                             foreign folder inside the group); the one-writer lock
      <array>/<fingerprint[:16]>/      one ledger per (array, fingerprint)
        grid.json                      fingerprint and block edges (for ``pipeline verify``)
        done/<i>.<j>                   one empty file per block whose chunks are all written
        damaged.json                   an unreadable input chunk that stopped a run (pipeline.runner.repaired)

A block's file is created only *after* all its chunks are written (zarr writes each chunk file
atomically: temp file + rename), so "recorded as done" implies "written".  Creating an empty file
is atomic, needs no coordinator and works from threads, processes and cluster workers on a shared
filesystem.  Nothing is ``fsync``-ed: a killed process (``kill -9``, OOM, pre-emption) loses
nothing that was recorded; a power loss may (the OS may not have flushed chunk data yet) — run
``pipeline verify`` after one.

The fingerprint is a SHA-256 of the resolved config's part that changes the output values
(:func:`pipeline.runner.resume.fingerprint_config`), the package version, each input's identity (:meth:`pipeline.storage.sources.InputSource.identity`)
and the output grid (shape, dtype, chunks, processing blocks).  Same fingerprint: a rerun resumes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.storage import safety

SUFFIX = ".pipeline"


def fingerprint(doc: Any) -> str:
    """SHA-256 of a JSON document, keys sorted."""
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def sidecar(local_store: str | os.PathLike[str]) -> Path:
    """The sidecar folder of a local output store."""
    p = Path(local_store)
    return p.with_name(p.name + SUFFIX)


def _name(index: Sequence[int]) -> str:
    return ".".join(str(int(i)) for i in index)


def _parse(name: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(x) for x in name.split("."))
    except ValueError:
        return None  # a temp file or a stray


@dataclass(frozen=True)
class BlockRecorder:
    """``record(index)`` for :func:`pipeline.runner.runconfig.execute`: marks a block done.  Picklable (a
    path string), so it runs in threads, worker processes or on cluster workers alike."""

    done_dir: str

    def __call__(self, index: Sequence[int]) -> None:
        # an empty file: creating it is atomic, so there is nothing to tear
        with open(os.path.join(self.done_dir, _name(index)), "wb"):
            pass


class Ledger:
    """The ledger of one output array for one fingerprint."""

    def __init__(self, local_store: str | os.PathLike[str], array: str, fp: str) -> None:
        # names may come from an output's metadata (``pipeline verify``): checked, never trusted
        safety.check_name(array, "the output's ledger name")
        safety.check_fingerprint(fp, "the output's fingerprint")
        self.side = sidecar(local_store)
        self.array = array
        self.base = self.side / array
        self.fp = fp
        self.root = self.base / fp[:16]
        self.done_dir = self.root / "done"

    @property
    def recorder(self) -> BlockRecorder:
        return BlockRecorder(str(self.done_dir))

    def reset(self, grid: dict[str, Any]) -> None:
        """Forget every ledger of this array (any fingerprint) and start an empty one.  Deletes
        only inside the sidecar folder, through no symlink."""
        safety.check_no_symlink(self.side.parent, Path(self.side.name) / self.array, "output.path")
        if self.base.exists():
            shutil.rmtree(self.base)
        self.done_dir.mkdir(parents=True)
        tmp = self.root / "grid.json.tmp"
        tmp.write_text(json.dumps({"fingerprint": self.fp, **grid}))
        os.replace(tmp, self.root / "grid.json")

    def done(self) -> set[tuple[int, ...]]:
        try:
            names = os.listdir(self.done_dir)
        except FileNotFoundError:
            return set()
        return {i for i in map(_parse, names) if i is not None}

    def drop(self, indices: Iterable[Sequence[int]]) -> None:
        for index in indices:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.done_dir / _name(index))


def find(local_store: str | os.PathLike[str], array: str, fp: str | None) -> tuple[Ledger, dict[str, Any]] | None:
    """The ledger of ``array`` for fingerprint ``fp`` and its grid, or None."""
    if not fp:
        return None
    safety.check_no_symlink(Path(local_store).parent, Path(sidecar(local_store).name) / array, "output.path")
    led = Ledger(local_store, array, fp)
    try:
        grid = json.loads((led.root / "grid.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    if grid.get("fingerprint") != fp or not led.done_dir.is_dir():
        return None
    return led, grid


def block_chunks(grid: dict[str, Any], index: Sequence[int]) -> list[tuple[int, ...]]:
    """The storage chunks (coordinates) making up the block ``index`` of the ledger's grid."""
    import itertools

    per_axis = []
    for ax, i in enumerate(index):
        edges = grid["edges"][ax]
        c = grid["chunks"][ax]
        per_axis.append(range(edges[i] // c, -(-edges[i + 1] // c)))
    return list(itertools.product(*per_axis))


def chunk_block(grid: dict[str, Any], coords: Sequence[int]) -> tuple[int, ...]:
    """The block containing the storage chunk ``coords``."""
    import bisect

    return tuple(bisect.bisect_right(grid["edges"][ax], k * grid["chunks"][ax]) - 1 for ax, k in enumerate(coords))
