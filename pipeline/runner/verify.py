"""``pipeline verify``: read every chunk of an output, report damaged and missing ones.

*Damaged*: a stored chunk that does not decode (the crc32c checksum of the output codecs does not
match, or the compressed stream is broken).  *Missing*: a chunk that is not stored although the
output says it should be: every chunk when ``pipeline.complete`` is true, else the chunks of the
blocks the ledger records as done.  Outputs are written with ``write_empty_chunks`` on, so a chunk
of fill values is stored too and "not stored" never means "empty".

Unless ``mark=False``, the blocks holding bad chunks are dropped from the ledger and the output is
marked incomplete (under the output's lock), so that rerunning its config recomputes exactly them.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import InputError, LockedError, OutputError
from pipeline.storage import io, ledger, safety
from pipeline.storage.lock import OutputLock
from pipeline.storage.targets import RETIRED, STAGED, open_target
from pipeline.storage.targets.zarrswap import JOURNAL

MAX_CHUNKS = 10_000_000  #: chunks ``verify`` lists at most (pipeline.plan.planner.MAX_BLOCKS blocks hold fewer)


@dataclass
class ArrayReport:
    store: str
    array: str
    chunks: int = 0  #: chunks in the grid
    stored: int = 0  #: chunks read and decoded
    damaged: list[tuple[str, str]] = field(default_factory=list)  #: (chunk key, reason)
    missing: list[str] = field(default_factory=list)
    #: chunks not stored of an array not written by pipeline (an input): they read as the fill
    #: value, which zarr allows (so not a fault by itself) but a half-delivered input looks the same
    unstored: list[str] = field(default_factory=list)
    complete: bool | None = None  #: pipeline.complete, None for arrays not written by pipeline
    marked: int = 0  #: blocks dropped from the ledger, to be recomputed by a rerun

    @property
    def ok(self) -> bool:
        return not self.damaged and not self.missing

    def lines(self) -> list[str]:
        name = io.location(self.store, self.array)
        status = {None: "", True: ", complete", False: ", INCOMPLETE"}[self.complete]
        out = [
            f"{name}: {self.stored} of {self.chunks} chunks stored and readable, "
            f"{len(self.damaged)} damaged, {len(self.missing)} missing{status}"
        ]
        out += [f"  damaged {self.array}/{key}: {why}" for key, why in self.damaged[:SHOWN]]
        if len(self.damaged) > SHOWN:
            out.append(f"  ... and {len(self.damaged) - SHOWN} more damaged")
        out += [f"  missing {self.array}/{key}" for key in self.missing[:SHOWN]]
        if len(self.missing) > SHOWN:
            out.append(f"  ... and {len(self.missing) - SHOWN} more missing")
        if self.unstored:
            out[0] += f"; {len(self.unstored)} not stored (read as the fill value: an input still arriving, or sparse)"
            out += [f"  not stored {self.array}/{key}" for key in self.unstored[:SHOWN_UNSTORED]]
            if len(self.unstored) > SHOWN_UNSTORED:
                out.append(f"  ... and {len(self.unstored) - SHOWN_UNSTORED} more")
        if self.marked:
            out.append(f"  {self.marked} blocks marked for recomputation: rerun the config to repair")
        return out


#: unstored keys listed by ``verify`` per array
SHOWN_UNSTORED = 20

#: damaged and missing keys listed by ``verify`` per array (each); the counts are always whole
SHOWN = 100


def _check(arr: Any, coords: tuple[int, ...]) -> str | None:
    try:
        io.read_chunk(arr, coords)
    except Exception as e:  # noqa: BLE001 - any decode failure is damage
        return f"{e.__class__.__name__}: {e}".splitlines()[0][:200]
    return None


def verify_array(path: str, array: str, *, mark: bool = True, workers: int | None = None) -> ArrayReport:
    arr = io.open_output(path, array, mode="r")
    raw = arr.attrs.get("pipeline")
    state: dict[str, Any] | None = dict(raw) if isinstance(raw, dict) else None
    report = ArrayReport(store=path, array=array, complete=None if state is None else bool(state.get("complete")))
    grid_shape = io.chunk_grid(arr)
    n = math.prod(grid_shape)
    if n > MAX_CHUNKS:  # a hostile zarr.json (shape 2**40 x 2**40) must not make a huge walk
        raise OutputError(f"{n:,} chunks in the grid, more than {MAX_CHUNKS:,}; not a pipeline output", where=io.location(path, array))
    report.chunks = n
    stored = io.stored_chunk_keys(arr)

    grid = state.get("grid") if state else None
    found = None
    local = io.is_local(path)
    if state is not None and local and state.get("fingerprint"):
        found = ledger.find(io.local_path(path), ledger_name(array, state), state["fingerprint"])
    expected: set[tuple[int, ...]] | None = None  # None: every chunk (a complete output)
    if state is None or not report.complete:
        expected = set()
        if state is not None and found is not None and grid:
            for b in found[0].done():
                expected.update(ledger.block_chunks(grid, b))

    bad: list[tuple[int, ...]] = []  # chunks damaged or missing, for the ledger
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        every = itertools.product(*(range(k) for k in grid_shape))
        while batch := tuple(itertools.islice(every, BATCH)):
            _walk(arr, batch, stored, expected, state is None and arr.ndim > 0, pool, report, bad)
    report.damaged.sort()
    report.missing.sort()

    if mark and not report.ok and state is not None and grid and local and state.get("fingerprint"):
        report.marked = _mark(path, array, state, grid, bad)
        report.complete = False
    return report


#: chunks checked per batch: ``verify`` holds a batch's keys, never the whole grid's
BATCH = 4096


def _walk(
    arr: Any, coords: Sequence[tuple[int, ...]], stored: set[str], expected: set[tuple[int, ...]] | None, input_array: bool,
    pool: ThreadPoolExecutor, report: ArrayReport, bad: list[tuple[int, ...]],
) -> None:
    """Check one batch of chunks: decode the stored ones, list the missing (and, for an array
    not written by pipeline, the unstored) ones."""
    keys = [io.chunk_key(arr, c) for c in coords]
    present = [(c, k) for c, k in zip(coords, keys) if k in stored]
    for c, k in zip(coords, keys):
        if k in stored:
            continue
        if expected is None or c in expected:
            report.missing.append(k)
            bad.append(c)
        elif input_array:  # a scalar (a CF grid mapping such as rioxarray's spatial_ref: its
            # information is in its attributes) is not stored when it holds its fill value
            report.unstored.append(k)
    for (c, k), why in zip(present, pool.map(lambda ck: _check(arr, ck[0]), present)):
        if why is None:
            report.stored += 1
        else:
            report.damaged.append((k, why))
            bad.append(c)


def ledger_name(array: str, state: dict[str, Any]) -> str:
    """The ledger an output array's blocks are recorded in: the array's own name, or for several
    statistics (arrays ``<name>_<stat>``) the shared ``<name>``.  The metadata's ``ledger`` key is
    accepted only when it is one of these (metadata is input, never a path to trust)."""
    name = state.get("ledger", array)
    stat = state.get("statistic")
    for suffix in (STAGED, RETIRED):  # arrays an earlier version staged inside the store
        array = array.removesuffix(suffix)
    if name == array or (isinstance(name, str) and isinstance(stat, str) and array == f"{name}_{stat}"):
        return safety.check_name(name, f"{array}: pipeline.storage.ledger")
    raise OutputError(
        f"the output's pipeline attribute names the ledger {str(name)[:80]!r}, which is not this array's; "
        "refusing to use it (metadata is not trusted as a path)",
        where=array,
    )


def _recover(path: str) -> None:
    """Complete a swap interrupted by a crash (see :mod:`pipeline.storage.targets.zarrswap`), under the lock."""
    if not io.is_local(path) or not (ledger.sidecar(io.local_path(path)) / JOURNAL).exists():
        return
    with contextlib.suppress(LockedError), OutputLock(ledger.sidecar(io.local_path(path)) / "lock", io.location(path, None)):
        open_target(path).recover()


def _mark(path: str, array: str, state: dict[str, Any], grid: dict[str, Any], bad: Sequence[tuple[int, ...]]) -> int:
    """Drop the blocks holding the ``bad`` chunks from the ledger; mark the output incomplete."""
    store = io.local_path(path)
    name = ledger_name(array, state)
    safety.check_sidecar(ledger.sidecar(store), [name], {})
    bad_blocks = {ledger.chunk_block(grid, c) for c in bad}
    with OutputLock(ledger.sidecar(store) / "lock", io.location(path, array)):
        fp = state["fingerprint"]
        found = ledger.find(store, name, fp)
        if found is None:  # a complete output whose ledger was removed: rebuild it as all done
            led = ledger.Ledger(store, name, fp)
            led.reset(grid)
            led.add(itertools.product(*(range(len(e) - 1) for e in grid["edges"])))  # one record
        else:
            led = found[0]
        led.drop(bad_blocks)
        target = io.open_output(path, array)
        io.update_state(target, complete=False)
        io.finalize(path)
    return len(bad_blocks)


def verify(path: str, *, array: str | None = None, mark: bool = True) -> list[ArrayReport]:
    """Verify one array of a store, or every array in it (a replacement killed in its swap is
    completed first, unless a run holds the output's lock: that run completes it)."""
    _recover(path)
    found = io.list_arrays(path)
    if array is not None and array not in found and "/" not in array:  # (nested paths: opened below)
        raise InputError(f"no array {array!r} in {path} (arrays there: {', '.join(found) or 'none'})", where="--array")
    names = [array] if array is not None else found
    return [verify_array(path, name, mark=mark) for name in names]
