"""The resume ledger: which output blocks of a run are done, kept beside the output store.

Layout, for an output store ``out.zarr`` (local paths only)::

    out.zarr.pipeline/                 the sidecar folder (beside the store: zarr would warn about a
      lock                             foreign folder inside the group); the one-writer lock
      <array>/<fingerprint[:16]>/      one ledger per (array, fingerprint)
        grid.json                      fingerprint and block edges (for ``pipeline verify``)
        done/t.<i>.<j>.<token>.log     one record file per task: a line ``<i>.<j>`` per block done
        done/<i>.<j>                   (ledgers of earlier versions: one empty file per block)
        damaged.json                   an unreadable input chunk that stopped a run (pipeline.runner.repaired)

A task (a tile; on the ``threads`` and ``synchronous`` schedulers the whole run is one tile)
records its blocks in its own record file (:class:`TaskLog`), named after its first block: one
line per block, appended (``O_APPEND``, one ``write`` per line, the task's threads one at a time)
only *after* all that block's chunks are written (zarr writes each chunk file atomically: temp
file + rename), so "recorded as done" implies "written".  A record file is written by one process
only, so it needs no coordinator on a shared filesystem, and a resume lists about as many files
as tasks, not one per block.  A reader takes every line ended by ``\\n`` that parses as a block
index; a torn last line (no ``\\n``) and garbage are ignored.  Nothing is ``fsync``-ed: a killed
process (``kill -9``, OOM, pre-emption) loses nothing that was recorded; a power loss may (the OS
may not have flushed chunk data yet) — run ``pipeline verify`` after one.

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
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

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


def _parse(name: str | bytes) -> tuple[int, ...] | None:
    try:
        return tuple(map(int, name.split(".") if isinstance(name, str) else name.split(b".")))
    except ValueError:
        return None  # a temp file or a stray


def _record_name(first: Sequence[int]) -> str:
    return f"t.{_name(first)}.{uuid.uuid4().hex[:12]}.log"


def _is_record(name: str) -> bool:
    return name.startswith("t.") and name.endswith(".log")


def _lines(data: bytes) -> list[tuple[int, ...]]:
    """The blocks of a record file: each line ended by ``\\n`` that parses; the last piece (empty,
    or a line torn by a crash) and unparsable lines are ignored."""
    lines = data.split(b"\n")[:-1]
    try:
        return [tuple(map(int, line.split(b"."))) for line in lines]
    except ValueError:  # a line that is not a block: parsed one by one
        return [idx for idx in map(_parse, lines) if idx is not None]


class TaskRecorder(Protocol):
    """What a task records its blocks through: ``record(index)`` once each block is written,
    ``close()`` at the task's end (also when it stops on an error)."""

    def __call__(self, index: Sequence[int]) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class Recorder(Protocol):
    """A ledger's recorder (picklable): ``task()`` gives each task its :class:`TaskRecorder`."""

    def task(self) -> TaskRecorder: ...


class TaskLog:
    """One task's record file, appended one line per block (see the module docstring).  The
    file is opened for each line (``O_APPEND``): a ledger folder removed or replaced mid-run is an
    error, not lines written into a file nobody will read.  Thread-safe; lives in one process."""

    def __init__(self, done_dir: str) -> None:
        self.done_dir = done_dir
        self.path: str | None = None
        self.lock = threading.Lock()

    def __call__(self, index: Sequence[int]) -> None:
        line = f"{_name(index)}\n".encode()
        with self.lock:  # one writer at a time: a short write is never followed by another line
            if self.path is None:
                self.path = os.path.join(self.done_dir, _record_name(index))
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                written = os.write(fd, line)
                if written < len(line):  # a full disk or a file size limit: never append after a torn line
                    self.path = None
                    os.write(fd, line[written:])  # raises the cause (or completes the line)
            finally:
                os.close(fd)

    def close(self) -> None:
        """Nothing to do: each line was written (and the file closed) when its block was recorded."""


class _Each:
    """A plain ``record(index)`` callable as a :class:`TaskRecorder`."""

    def __init__(self, record: Any) -> None:
        self.record = record

    def __call__(self, index: Sequence[int]) -> None:
        self.record(index)

    def close(self) -> None:
        """Nothing to do: ``record`` recorded each block."""


def task_recorder(record: Any) -> TaskRecorder | None:
    """The recorder of one task: ``record.task()`` for a ledger's :class:`Recorder`, a plain
    ``record(index)`` callable (tests, the API) as it is; None for None."""
    if record is None:
        return None
    return record.task() if isinstance(record, Recorder) else _Each(record)


@dataclass(frozen=True)
class BlockRecorder:
    """The local ledger's :class:`Recorder` (:func:`pipeline.runner.runconfig.execute`):
    ``task()`` is a task's :class:`TaskLog`; ``record(index)`` a record file of one block.
    Picklable (a path string), so it runs in threads, worker processes or on cluster workers."""

    done_dir: str

    def task(self) -> TaskLog:
        return TaskLog(self.done_dir)

    def __call__(self, index: Sequence[int]) -> None:
        self.task()(index)


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

    def records(self) -> dict[str, list[tuple[int, ...]]]:
        """Each record file's name and its blocks (an earlier version's empty file: its block)."""
        try:
            names = os.listdir(self.done_dir)
        except FileNotFoundError:
            return {}
        out: dict[str, list[tuple[int, ...]]] = {}
        for name in names:
            if _is_record(name):
                with contextlib.suppress(FileNotFoundError):  # replaced by a concurrent drop
                    with open(os.path.join(self.done_dir, name), "rb") as f:
                        out[name] = _lines(f.read())
            elif (index := _parse(name)) is not None:
                out[name] = [index]
        return out

    def done(self) -> set[tuple[int, ...]]:
        return {idx for blocks in self.records().values() for idx in blocks}

    def add(self, blocks: Iterable[Sequence[int]], replacing: str | None = None) -> None:
        """Record ``blocks`` in one record file, written whole (a temp file, then ``os.replace``).
        With ``replacing`` (a record's name), that record is removed just before: a crash in
        between loses records, which only recomputes their blocks, never keeps a dropped one."""
        todo = list(blocks)
        tmp = self.done_dir / f".{uuid.uuid4().hex}.tmp"  # neither a record nor a block name
        if todo:
            tmp.write_text("".join(f"{_name(b)}\n" for b in todo), encoding="ascii")
        if replacing is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.done_dir / replacing)
        if todo:
            os.replace(tmp, self.done_dir / _record_name(todo[0]))

    def drop(self, indices: Iterable[Sequence[int]]) -> None:
        """Forget blocks: each record holding one is replaced by a record of its other blocks."""
        gone = {tuple(int(i) for i in idx) for idx in indices}
        if not gone:
            return
        for name, blocks in self.records().items():
            if not gone.isdisjoint(blocks):
                self.add([b for b in blocks if b not in gone], replacing=name)


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
