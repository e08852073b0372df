"""Running a config: prepare (:mod:`pipeline.runner.prepare`), then, holding the output lock, decide
(fresh, resume, replace or up to date), create or open the output arrays through the output
target (:mod:`pipeline.storage.targets`), execute the block writes (:mod:`pipeline.execution.engine`), mark the
output complete, swap a replacement in and consolidate.

Data flows one way: config -> inputs (metadata only) -> plan -> output -> execute.  The
fingerprint and the resume ledger are :mod:`pipeline.runner.resume`; the output arrays' names,
attributes and coordinates are :mod:`pipeline.runner.outputs`.
"""

from __future__ import annotations

import contextlib
import errno
import math
import numbers
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.config.load import Config
from pipeline.errors import LockedError, OutputError, WriteError
from pipeline.execution import engine, sessions, tiling
from pipeline.execution.engine import block_regions, input_regions, strip_width  # noqa: F401 - part of this module's API
from pipeline.execution.prepared import Prepared  # noqa: F401 - part of this module's API
from pipeline.runner import repaired, resume
from pipeline.runner.outputs import create_outputs, out_coords, output_names, output_scalars, provenance  # noqa: F401 - part of this module's API
from pipeline.runner.prepare import prepare  # noqa: F401 - part of this module's API
from pipeline.runner.resume import fingerprint_doc  # noqa: F401 - part of this module's API
from pipeline.storage import io, ledger, pyramid, targets, urlledger
from pipeline.storage.lock import OutputLock
from pipeline.storage.targets import RETIRED, STAGED  # noqa: F401 - part of this module's API
from pipeline.storage.urllock import ObjectLock

ProgressFn = Callable[[int, int], None]


#: RunResult.status values (also used by batch reports)
DONE = "done"  #: the output is complete; ``computed`` blocks were computed by this run
UP_TO_DATE = "up-to-date"  #: the output was already complete: nothing computed
FAILED = "failed"  #: set on ``exc.pipeline_result`` of an exception that ended a run


@dataclass
class RunResult:
    output: str
    array: str
    shape: tuple[int, ...]
    dtype: str
    blocks: int  #: blocks in the output
    seconds: float
    minimum: Any = None  #: over the blocks computed by this run, when it computed all of them
    maximum: Any = None  #: (several statistics: the first one's; all in ``ranges``)
    status: str = DONE
    computed: int = 0  #: blocks computed (and written) by this run
    skipped: int = 0  #: blocks already done by an earlier run (resume), not recomputed
    error: str | None = None  #: the one-line error, for status FAILED
    #: statistic -> (min, max) of its results (the fill value excluded), like minimum/maximum
    ranges: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def set_range(self, stats: Sequence[str], lo: Any, hi: Any) -> None:
        """Record an executor's range (values, or dicts statistic -> value)."""
        if not isinstance(lo, Mapping):
            lo, hi = {stats[0]: lo}, {stats[0]: hi}
        self.ranges = {st: (lo.get(st), hi.get(st)) for st in stats if lo.get(st) is not None}
        self.minimum, self.maximum = lo.get(stats[0]), hi.get(stats[0])

    def summary(self) -> str:
        where = io.location(self.output, self.array)
        if self.status == UP_TO_DATE:
            return f"{where} is up to date ({_blocks(self.blocks)}, shape {self.shape}, dtype {self.dtype}); nothing to compute"
        if self.status == FAILED:
            return f"{where}: failed after computing {_blocks(self.computed)} ({self.skipped + self.computed} of {self.blocks} done): {self.error}"
        pixels = math.prod(self.shape) * (self.computed / max(self.blocks, 1))
        if len(self.ranges) > 1:
            rng = "; values: " + ", ".join(f"{st} in [{_value(lo)}, {_value(hi)}]" for st, (lo, hi) in self.ranges.items())
        else:
            rng = f", values in [{_value(self.minimum)}, {_value(self.maximum)}]" if self.minimum is not None else ""
        resumed = f" (resumed: {_blocks(self.skipped)} were already done)" if self.skipped else ""
        return (
            f"wrote {where}: shape {self.shape}, dtype {self.dtype}{rng}; "
            f"{_blocks(self.computed)} in {self.seconds:.2f} s ({rate(pixels, self.seconds)}){resumed}"
        )


def _value(x: Any) -> str:
    """A range bound for people: integers exactly, floats to 6 significant digits."""
    return f"{x:.6g}" if isinstance(x, numbers.Real) and not isinstance(x, numbers.Integral) else str(x)


def rate(pixels: float, seconds: float) -> str:
    """Pixels per second in the unit that shows about three significant digits: ``812 pix/s``,
    ``45.3 kpix/s``, ``12.6 Mpix/s``, ``1.20 Gpix/s``."""
    per = pixels / max(seconds, 1e-9)
    unit, scale = next(((u, f) for u, f in (("Gpix/s", 1e9), ("Mpix/s", 1e6), ("kpix/s", 1e3)) if per >= f), ("pix/s", 1.0))
    v = per / scale
    return f"{v:.{0 if v >= 100 else 1 if v >= 10 else 2}f} {unit}"


def _blocks(n: int) -> str:
    return f"{n} block" if n == 1 else f"{n} blocks"


def execute(
    prep: Prepared,
    target: Any,
    *,
    blocks: Sequence[tuple[int, ...]] | None = None,
    record: Callable[[tuple[int, ...]], None] | None = None,
    progress: ProgressFn | None = None,
    session: sessions.Session | None = None,
) -> tuple[int, Any, Any]:
    """Compute and write the output blocks ``blocks`` (default: all), calling ``record(index)``
    inside the task right after each block is written; returns (blocks written, min, max).
    With several statistics ``target`` maps each statistic to its array; a block index covers
    the block of every statistic.

    ``record`` runs where the task runs (a thread, a process or a cluster worker), so it must be
    picklable and reach shared state (e.g. a file beside the output).

    Every scheduler runs the same block task through :func:`pipeline.execution.engine.execute`: read the
    block's inputs with their halo, compute, write, record; a bounded number of blocks in
    flight, so memory does not grow with the image.  ``session`` (from :func:`sessions.session`)
    says where the tasks run; without one, a session for the config is opened for this call."""
    if session is not None:
        sessions.check_session(prep.config, session)
        return engine.execute(prep, target, session, blocks=blocks, record=record, progress=progress)
    with sessions.session(prep.config, task_bytes=prep.plan.task_bytes) as sess:
        return engine.execute(prep, target, sess, blocks=blocks, record=record, progress=progress)


def run(
    config: Prepared | Config | str | os.PathLike[str] | Mapping[str, Any],
    *,
    progress: ProgressFn | None = None,
    overwrite: bool | None = None,
    notify: sessions.Notify | None = None,
    session: sessions.Session | None = None,
    force: bool = False,
) -> RunResult:
    """Run a config (a path, a mapping, a :class:`Config` or an already :func:`prepare`d one) and return what was done.

    A rerun of the same config resumes (computes only the blocks not recorded as done) or, when
    the output is complete, does nothing (status ``up-to-date``).  An output written by another
    config is replaced only with ``overwrite`` (default: the config's ``output.overwrite``).  An
    exception that ends the run carries ``exc.pipeline_result`` (status ``failed``, blocks
    computed) when the output had been opened.  ``notify`` receives one-line messages about the
    scheduler (dashboard link, warnings).  ``session`` (from :func:`sessions.session`) runs the
    tasks; without one, a session for the config is opened for this run and closed after it.
    ``force`` recomputes every block whatever the ledger or the output's state says (an output
    written by another config still needs ``overwrite``).
    """
    t0 = time.perf_counter()
    prep = config if isinstance(config, Prepared) else prepare(config)  # a batch prepares once
    cfg = prep.config
    overwrite = cfg.output.overwrite if overwrite is None else overwrite
    try:
        if not io.is_local(cfg.output.path):  # object storage: the ledger beside it, a lock where the store can (see urllock)
            url = f"{urlledger.sidecar(cfg.output.path)}/lock"
            with ObjectLock(url, cfg.output.storage_options, io.location(cfg.output.path, cfg.output.array)) as olock:
                with _session(prep, session, notify) as sess:
                    return _run_locked(prep, t0, progress, overwrite, cfg.output.path, olock, sess, force=force)
        store = io.local_path(cfg.output.path)
        # the lock first (a second run exits at once), then the scheduler/cluster is started and
        # checked (storage reachable, tasks fit) before anything is written
        with OutputLock(ledger.sidecar(store) / "lock", io.location(cfg.output.path, cfg.output.array)) as lock:
            with _session(prep, session, notify) as sess:
                return _run_locked(prep, t0, progress, overwrite, store, lock, sess, force=force)
    except OSError as exc:  # before the output was opened (the lock, the sidecar folder): nothing written
        raise os_fault(exc, io.location(cfg.output.path, cfg.output.array), "nothing was written") from None


def os_fault(exc: OSError, where: str, kept: str) -> WriteError:
    """The one-line error of an operating-system fault while writing ``where``: the path (the
    output's when the OS names none) and the cause, and ``kept`` (what is done and kept)."""
    path = exc.filename if exc.filename is not None else where
    cause = exc.strerror or exc.__class__.__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what, fix = f"no space left on device while writing {where} ({cause})", "free space and rerun to resume"
    else:
        hint = _OS_HINTS.get(exc.errno or 0, "")
        what, fix = f"cannot write {path}: {cause}{hint}", "fix it and rerun to resume"
    return WriteError(f"{what}; {kept}: {fix}")


#: what an OS fault usually means, by errno
_OS_HINTS = {
    errno.EFBIG: " (over the file size limit: see ulimit -f)",
    errno.EACCES: " (permission denied: check the owner and mode of the output and its .pipeline folder)",
    errno.EPERM: " (operation not permitted)",
    errno.ENOTDIR: " (a file where the tool keeps a folder: something replaced it)",
    errno.EISDIR: " (a folder where the tool writes a file: something replaced it)",
    errno.EEXIST: " (something is in the way: a file where the tool keeps a folder?)",
    errno.EROFS: " (read-only file system)",
}


@contextlib.contextmanager
def _session(prep: Prepared, given: sessions.Session | None, notify: sessions.Notify | None) -> Iterator[sessions.Session]:
    """The session given (checked for this run), or one opened for this run."""
    if given is not None:
        sessions.check_session(prep.config, given, task_bytes=prep.plan.task_bytes, notify=notify)
        yield given
        return
    with sessions.session(prep.config, task_bytes=prep.plan.task_bytes, notify=notify) as sess:
        yield sess


def _run_locked(
    prep: Prepared, t0: float, progress: ProgressFn | None, overwrite: bool, store: str, lock: OutputLock | ObjectLock,
    session: sessions.Session, *, force: bool = False,
) -> RunResult:
    out = prep.config.output
    locked = _LockedRun(prep, targets.open_target(out.path, out.storage_options, out.format), store, t0)
    locked.target.recover()  # a replacement killed in its swap is completed first
    if not locked.start(overwrite, force):
        return locked.result  # up to date
    try:
        coords = out_coords(prep)
        handles = locked.open(coords)
        todo = locked.todo()
        target = handles if prep.plan.multi else handles[prep.plan.stats[0]]
        watched = _watch_lock(lock, locked.where, progress, locked.result.skipped, len(locked.all_blocks))
        _, lo, hi = execute(prep, target, blocks=todo, record=locked.led.recorder, progress=watched, session=session)
        locked.result.computed = len(todo)
        locked.finish(handles)
    except BaseException as exc:
        err = locked.failed(exc)
        if err is not None:
            raise err from None
        raise
    if locked.result.skipped == 0:
        locked.result.set_range(prep.plan.stats, lo, hi)
    locked.result.seconds = time.perf_counter() - t0
    return locked.result


def _watch_lock(lock: OutputLock | ObjectLock, where: str, progress: ProgressFn | None, skipped: int, total: int) -> ProgressFn:
    """The engine's progress callback: stops the run when another run took the lock over, and
    reports progress counting the blocks an earlier run did."""

    def _progress(n: int, _: int) -> None:
        if lock.lost:
            raise LockedError(f"{where}: another run took the lock over (this run's heartbeat stalled)", where="output.path")
        if progress is not None:
            progress(skipped + n, total)

    return _progress


class _LockedRun:
    """One run with the output lock held (or none needed), in steps that share what they find:
    :meth:`start` decides (fresh, resume, replace, or up to date), :meth:`open` creates or opens
    the output arrays and the ledger, :meth:`finish` marks the output complete and swaps a
    replacement in, :meth:`failed` records a failure on the result."""

    def __init__(self, prep: Prepared, target: targets.OutputTarget, store: str, t0: float) -> None:
        cfg, plan = prep.config, prep.plan
        self.prep, self.target, self.store, self.t0 = prep, target, store, t0
        self.array = cfg.output.array
        self.where = target.location(self.array)
        self.doc = fingerprint_doc(prep)
        self.fp = ledger.fingerprint(self.doc)
        self.grid = resume.grid(plan)
        self.all_blocks = [idx for idx, _ in block_regions(plan)]
        self.names = output_names(plan, self.array)
        self.result = RunResult(
            output=cfg.output.path,
            array=", ".join(self.names.values()),
            shape=plan.out_shape,
            dtype=", ".join(str(plan.out_dtypes.get(st, plan.out_dtype)) for st in plan.stats),
            blocks=len(self.all_blocks),
            seconds=0.0,
        )
        self.present: list[dict[str, Any]] = []  #: the state of each output array found
        self.found: Any = None  #: the ledger (and grid) of the earlier run this one resumes
        self.replace = False  #: written beside the old output (staged), swapped in at the end
        self.stage: targets.OutputTarget = target  #: where the arrays are written (the staged target for a replacement)
        self.led: Any = None  #: the resume ledger, once the output is open
        self.done: set[tuple[int, ...]] = set()  #: blocks done by earlier runs

    def start(self, overwrite: bool, force: bool) -> bool:
        """Decide what this run does from the output's state; False: it is up to date."""
        repaired.adopt(self.prep, self.target, self.store, list(self.names.values()), self.fp, self.doc)
        states = {name: self.target.state(name) for name in self.names.values()}
        self.present = [st for st in states.values() if st is not None]
        if not self.present:
            return True
        if any(st.get("fingerprint") != self.fp for st in self.present) or len(self.present) < len(states):
            self._replace(overwrite)
        elif force:  # recompute everything: replace our own output, forget its ledger
            pass
        elif all(st.get("complete") for st in self.present):
            if any(self.target.finalized_state(name) != st for name, st in states.items()):
                self.target.finalize()  # a run killed between its last two writes: readers see what is there
            self.result.status, self.result.skipped = UP_TO_DATE, len(self.all_blocks)
            self.result.seconds = time.perf_counter() - self.t0
            return False
        else:
            self.found = resume.find_ledger(self.prep.config, self.store, self.array, self.fp)
        return True

    def _replace(self, overwrite: bool) -> None:
        """An output written by another config: refused without ``overwrite``; else replaced."""
        if not overwrite:
            raise OutputError(
                f"{self.where} already exists and was written by a different config, inputs or version "
                f"({resume.what_changed(self.doc, self.present)}); "
                "pass --overwrite (or set output.overwrite: true) to replace it "
                "(the old array is kept until the new one is complete)",
                where="output.path",
            )
        # write beside the old arrays and swap at the end: the old result survives a failure
        if self.target.can_swap:  # else (object storage) replaced from the start
            self.replace = True
            self.stage = self.target.staged(fresh=False)  # a staging place not ours: refused before computing
            staged = [self.stage.state(name) for name in self.names.values()]
            if all(st is not None and st.get("fingerprint") == self.fp for st in staged):
                self.found = resume.find_ledger(self.prep.config, self.store, self.array, self.fp)  # resume an interrupted replacement

    def open(self, coords: Mapping[str, Any]) -> dict[str, Any]:
        """Create (fresh) or open (resumed) the output arrays and the ledger; the arrays by statistic."""
        if self.replace:  # coordinates too are replaced only once the new arrays are complete; equal ones are carried
            needed = self.target.check_coords(coords, overwrite=True, scalars=output_scalars(self.prep))
            coords = {d: v for d, v in coords.items() if d in needed}
        if self.found is None:  # fresh, replaced, or our own output killed before its ledger existed
            state = {"fingerprint": self.fp, "complete": False, "grid": self.grid, "ledger": self.array, "parts": resume.parts(self.doc)}
            if self.replace:
                self.stage = self.target.staged(fresh=True)
            handles = create_outputs(
                self.prep, self.stage, self.names, state, overwrite=bool(self.present) and not self.replace, coords=coords
            )
            self.led = resume.new_ledger(self.prep.config, self.store, self.array, self.fp)
            self.led.reset(self.grid)
            self.stage.finalize()  # consolidated metadata says "incomplete" from now on
            return handles
        self.led = self.found[0]
        handles = {st: self.stage.open_array(name) for st, name in self.names.items()}
        self.done = self.led.done() & set(self.all_blocks)
        for h in handles.values():
            self.done -= resume.missing_chunks(self.stage, h, self.grid, self.done, self.led)
        return handles

    def todo(self) -> list[tuple[int, ...]]:
        """The blocks left to compute (counting the others as skipped); sharded, every block of
        a shard with any block left (a shard is written whole)."""
        todo = tiling.whole_shards(self.prep.plan, [b for b in self.all_blocks if b not in self.done])
        again = self.done & set(todo)  # recorded blocks of a shard to rewrite
        if again:
            self.led.drop(again)
            self.done -= again
        self.result.skipped = len(self.all_blocks) - len(todo)
        return todo

    def finish(self, handles: Mapping[str, Any]) -> None:
        """Check every block is recorded, mark the output complete (last), then consolidate, or
        swap the replacement in (which consolidates it)."""
        left = set(self.all_blocks) - self.led.done()
        if left:
            raise RuntimeError(f"{len(left)} blocks of {self.where} were not recorded as done")
        resume.check_inputs_unchanged(self.prep, self.doc)
        if self.prep.config.output.multiscale:  # before "complete": a run killed while it is made resumes here
            fills = self.prep.plan.fill_values
            pyramid.build(self.stage.path, {self.names[st]: (st, fills.get(st)) for st in handles}, self.stage.storage_options)
        for st, h in handles.items():
            self.stage.update_state(h, complete=True)  # written last: the output is complete
            targets.checkpoint(f"{self.names[st]} marked complete")
        if self.replace:
            self.target.swap(self.fp)
        else:
            self.target.finalize()

    def failed(self, exc: BaseException) -> WriteError | None:
        """Record ``exc`` on the result (and the result on ``exc``); an OS fault (a full disk, a
        permission, a file size limit) becomes the :class:`WriteError` to raise instead."""
        result = self.result
        repaired.record(self.prep, self.led, self.doc, exc)
        computed = max(0, len(self.led.done()) - len(self.done)) if self.led is not None else 0
        result.status, result.computed = FAILED, computed
        result.seconds = time.perf_counter() - self.t0
        if isinstance(exc, OSError):
            err = os_fault(exc, self.where, f"{result.skipped + computed} of {len(self.all_blocks)} blocks are done and kept")
            result.error = str(err)
            err.pipeline_result = result  # type: ignore[attr-defined]
            return err
        result.error = str(exc) or exc.__class__.__name__
        with contextlib.suppress(Exception):
            exc.pipeline_result = result  # type: ignore[attr-defined]
        return None
