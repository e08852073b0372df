"""Running a config: open inputs, plan, create the output, execute block writes.

Data flows one way: config -> inputs (metadata only) -> plan -> lazy result -> output -> execute.
``prepare`` does everything up to (not including) creating the output, so ``pipeline validate``
and ``pipeline run`` share it and a bad config or input never touches the disk.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import engine, io, ledger, metadata, safety, sessions, sources, urlledger
from .config import Config, load_config
from .engine import block_regions, input_regions, strip_width  # noqa: F401 - part of this module's API
from .errors import LockedError, OutputError, WriteError
from .lock import OutputLock
from .plan import ArraySpec, Plan, check_inputs, make_plan

ProgressFn = Callable[[int, int], None]


@dataclass
class Prepared:
    """A validated run: config, opened inputs (lazily), and the plan."""

    config: Config
    arrays: dict[str, Any]  #: name -> zarr.Array, for the inputs the expression uses
    specs: dict[str, ArraySpec]
    plan: Plan
    coords: dict[str, Any] = field(default_factory=dict)  #: output dim -> 1-D coordinate array (lazy)
    attrs: dict[str, Any] = field(default_factory=dict)  #: attributes common to the used inputs
    #: per input: where its nodata comes from ("config", "attribute _FillValue", "off", ...), if any
    nodata_source: dict[str, str] = field(default_factory=dict)
    #: the inputs' grid-mapping (CRS) variable, carried to the output: (name, value, attributes)
    grid_mapping: tuple[str, Any, dict[str, Any]] | None = None
    #: the used inputs as :class:`~pipeline.sources.InputSource` (``arrays`` holds their arrays)
    sources: dict[str, Any] = field(default_factory=dict)


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
        mpix = math.prod(self.shape) / 1e6 * (self.computed / max(self.blocks, 1))
        if len(self.ranges) > 1:
            rng = "; values: " + ", ".join(f"{st} in [{lo}, {hi}]" for st, (lo, hi) in self.ranges.items())
        else:
            rng = f", values in [{self.minimum}, {self.maximum}]" if self.minimum is not None else ""
        resumed = f" (resumed: {_blocks(self.skipped)} were already done)" if self.skipped else ""
        return (
            f"wrote {where}: shape {self.shape}, dtype {self.dtype}{rng}; "
            f"{_blocks(self.computed)} in {self.seconds:.2f} s ({mpix / max(self.seconds, 1e-9):.1f} Mpix/s){resumed}"
        )


def _blocks(n: int) -> str:
    return f"{n} block" if n == 1 else f"{n} blocks"


def prepare(config: Config | str | os.PathLike[str] | Mapping[str, Any]) -> Prepared:
    """Validate a config against its inputs and plan the run; reads metadata only."""
    cfg = config if isinstance(config, Config) else load_config(config)
    opened: dict[str, sources.InputSource] = {}
    zarrs = {}
    specs = {}
    for name, spec in cfg.inputs.items():
        src = opened[name] = sources.open_source(spec.path, spec.array, where=f"inputs.{name}", storage_options=spec.storage_options)
        zarrs[name] = src.array
        specs[name] = sources.spec_of(name, src)
        check_inputs([specs[name]])  # dtype, emptiness: named by store and array
    nodata, nodata_source = _nodata(cfg, zarrs)
    plan = make_plan(
        cfg.op,
        specs,
        size=cfg.window.size,
        reduce=cfg.window.reduce,
        boundary=cfg.window.boundary,
        chunks=cfg.compute.chunks,
        cval=cfg.window.cval,
        shape=cfg.window.shape,
        weights=cfg.window.weights,
        axes=cfg.window.axes,
        nodata=nodata,
        dtype=cfg.output.dtype,
        fill_value=cfg.output.fill_value,
    )
    used = {n: zarrs[n] for n in plan.expr.names}
    io.check_not_overlapping(cfg.output.path, {n: cfg.inputs[n].path for n in plan.expr.names}, cfg.output.array)
    io.check_output_target(cfg.output.path)
    first = plan.expr.names[0]
    coords = opened[first].coords()
    attrs = _common_attrs(used)
    gm = attrs.get("grid_mapping")
    gm_name: str | None = gm if isinstance(gm, str) else None
    gm_var = opened[first].scalar(gm_name) if gm_name is not None else None
    grid_mapping = (gm_name, *gm_var) if gm_name is not None and gm_var is not None else None
    _check_local_output(cfg, plan, extra=[grid_mapping[0]] if grid_mapping is not None else ())
    return Prepared(
        config=cfg, arrays=used, specs=specs, plan=plan, coords=coords, attrs=attrs,
        sources={n: opened[n] for n in used},
        nodata_source={n: v for n, v in nodata_source.items() if n in plan.expr.names},
        grid_mapping=grid_mapping,
    )


def _nodata(cfg: Config, arrays: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Each input's nodata: the config's ``nodata`` when set (``null``/``none``: off), else what
    the input's attributes declare (see :func:`metadata.declared_nodata`); and where it comes
    from.  A declared value no pixel can hold (255.5 on integers, 300 on uint8) is ignored."""
    values: dict[str, Any] = {}
    source: dict[str, str] = {}
    for name, spec in cfg.inputs.items():
        declared = metadata.declared_nodata(arrays[name].attrs)
        if spec.nodata_given:
            values[name] = spec.nodata_value
            if values[name] is not None:
                source[name] = "config"
            elif declared is not None:
                source[name] = f"off (attribute {declared[1]} = {declared[0]} ignored)"
            continue
        if declared is not None:
            value = metadata.usable_nodata(declared[0], arrays[name].dtype)
            values[name] = value
            if value is not None:
                source[name] = f"attribute {declared[1]}"
            elif not (isinstance(declared[0], float) and declared[0] != declared[0]):  # NaN: always missing
                source[name] = f"none (attribute {declared[1]} = {declared[0]} cannot occur in {arrays[name].dtype})"
    return values, source


def _check_local_output(cfg: Config, plan: Plan, extra: Sequence[str] = ()) -> None:
    """Where a local output writes or deletes (the sidecar folder with the lock and ledgers, the
    output arrays' folders with their chunks, the coordinate arrays) holds no symlink, and the
    sidecar overlaps no input (a store named ``out.zarr.pipeline`` or a symlink to one)."""
    if not io.is_local(cfg.output.path):
        return
    store = Path(io.local_path(cfg.output.path))
    inputs = {f"inputs.{n}": io.local_path(s.path) for n, s in cfg.inputs.items() if io.is_local(s.path)}
    names = list(output_names(plan, cfg.output.array).values())
    names += [n + sfx for n in names for sfx in (STAGED, RETIRED)]
    safety.check_sidecar(ledger.sidecar(store), [cfg.output.array], inputs)
    others = [d for d in (plan.dims or ()) if d not in names] + list(extra)
    safety.check_tree(store, names + others)


def _common_attrs(arrays: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes present with equal values on every input (xarray's 'drop_conflicts')."""
    dicts = [dict(a.attrs) for a in arrays.values()]
    common = dict(dicts[0]) if dicts else {}
    for d in dicts[1:]:
        common = {k: v for k, v in common.items() if k in d and d[k] == v}
    common.pop("_ARRAY_DIMENSIONS", None)
    common.pop("pipeline", None)
    return common  # filtered per output by metadata.output_attrs


def provenance(prep: Prepared) -> dict[str, Any]:
    from . import __version__

    cfg = prep.config
    return {
        "version": __version__,
        "config": cfg.model_dump(mode="json"),
        "inputs": {
            n: {
                "path": cfg.inputs[n].path,
                "array": cfg.inputs[n].array,
                "shape": list(prep.specs[n].shape),
                "dtype": str(prep.specs[n].dtype),
            }
            for n in prep.plan.expr.names
        },
        "op": prep.plan.expr.text,
        "window": {"size": list(prep.plan.size), "reduce": prep.plan.reduce, "boundary": prep.plan.boundary},
    }


def output_names(plan: Plan, array: str) -> dict[str, str]:
    """The output array per statistic: ``array`` for one statistic, ``<array>_<stat>`` for
    several."""
    if not plan.multi:
        return {plan.stats[0]: array}
    return {st: f"{array}_{st}" for st in plan.stats}


def _out_coords(prep: Prepared) -> dict[str, np.ndarray]:
    plan = prep.plan
    out = {}
    for ax, dim in enumerate(plan.dims):
        if dim not in prep.coords:
            continue
        values = np.asarray(prep.coords[dim][...])
        if plan.boundary == "valid" and ax in plan.window_axes:
            i = plan.window_axes.index(ax)
            values = values[plan.lo[i] : plan.in_shape[ax] - plan.hi[i]]
        out[dim] = values
    return out


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

    Every scheduler runs the same block task through :func:`pipeline.engine.execute`: read the
    block's inputs with their halo, compute, write, record; a bounded number of blocks in
    flight, so memory does not grow with the image.  ``session`` (from :func:`sessions.session`)
    says where the tasks run; without one, a session for the config is opened for this call."""
    if session is not None:
        sessions.check_session(prep.config, session)
        return engine.execute(prep, target, session, blocks=blocks, record=record, progress=progress)
    with sessions.session(prep.config, task_bytes=prep.plan.task_bytes) as sess:
        return engine.execute(prep, target, sess, blocks=blocks, record=record, progress=progress)


def fingerprint_doc(prep: Prepared) -> dict[str, Any]:
    """What a run's result depends on: the resolved config (without execution-only keys), the
    package version, each used input's identity and the output grid."""
    from . import __version__

    cfg = prep.config.model_dump(mode="json")
    cfg.pop("compute", None)
    cfg.get("output", {}).pop("overwrite", None)
    plan = prep.plan
    return {
        "version": __version__,
        "config": cfg,
        "inputs": {
            n: prep.sources[n].identity()
            for n in prep.arrays
        },
        "grid": _grid(plan),
        # nodata taken from attributes or switched off: not visible in the config dump
        **({"nodata": {n: [plan.nodata.get(n), src] for n, src in prep.nodata_source.items()}}
           if any(src != "config" for src in prep.nodata_source.values()) else {}),
    }


def _grid(plan: Plan) -> dict[str, Any]:
    return {
        "shape": list(plan.out_shape),
        "dtype": str(plan.out_dtype),
        "chunks": list(plan.storage_chunks),
        "edges": [[int(x) for x in np.cumsum((0,) + tuple(c))] for c in plan.out_chunks],
    }


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
    if not io.is_local(cfg.output.path):  # object storage: the ledger beside it, no lock (see urlledger)
        with _session(prep, session, notify) as sess:
            return _run_locked(prep, t0, progress, overwrite, cfg.output.path, _NoLock(), sess, force=force)
    store = io.local_path(cfg.output.path)
    # the lock first (a second run exits at once), then the scheduler/cluster is started and
    # checked (storage reachable, tasks fit) before anything is written
    with OutputLock(ledger.sidecar(store) / "lock", io.location(cfg.output.path, cfg.output.array)) as lock:
        with _session(prep, session, notify) as sess:
            return _run_locked(prep, t0, progress, overwrite, store, lock, sess, force=force)


class _NoLock:
    """The lock of an output on object storage: none (:mod:`pipeline.urlledger` says why)."""

    lost = False


def _find_ledger(cfg: Config, store: str, array: str, fp: str) -> Any:
    if io.is_local(cfg.output.path):
        return ledger.find(store, array, fp)
    return urlledger.find(cfg.output.path, array, fp, cfg.output.storage_options)


def _new_ledger(cfg: Config, store: str, array: str, fp: str) -> Any:
    if io.is_local(cfg.output.path):
        return ledger.Ledger(store, array, fp)
    return urlledger.Ledger(cfg.output.path, array, fp, cfg.output.storage_options)


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
    prep: Prepared, t0: float, progress: ProgressFn | None, overwrite: bool, store: str, lock: OutputLock | _NoLock,
    session: sessions.Session, *, force: bool = False,
) -> RunResult:
    cfg, plan = prep.config, prep.plan
    path, array = cfg.output.path, cfg.output.array
    where = io.location(path, array)
    doc = fingerprint_doc(prep)
    fp = ledger.fingerprint(doc)
    grid = _grid(plan)
    all_blocks = [idx for idx, _ in block_regions(plan)]
    names = output_names(plan, array)
    result = RunResult(
        output=path,
        array=", ".join(names.values()),
        shape=plan.out_shape,
        dtype=", ".join(str(plan.out_dtypes.get(st, plan.out_dtype)) for st in plan.stats),
        blocks=len(all_blocks),
        seconds=0.0,
    )

    so = cfg.output.storage_options
    states = {name: io.output_state(path, name, so) for name in names.values()}
    present = [st for st in states.values() if st is not None]
    found = None
    replace = False
    if present:
        if any(st.get("fingerprint") != fp for st in present) or len(present) < len(states):
            if not overwrite:
                raise OutputError(
                    f"{where} already exists and was written by a different config, inputs or version "
                    f"({_what_changed(doc, present)}); "
                    "pass --overwrite (or set output.overwrite: true) to replace it "
                    "(the old array is kept until the new one is complete)",
                    where="output.path",
                )
            # write beside the old arrays and swap at the end: the old result survives a failure
            if io.is_local(path):  # object storage: replaced from the start (no renames there)
                replace = True
                names = {st: staging(name) for st, name in names.items()}
                staged = [io.output_state(path, name) for name in names.values()]
                if all(st is not None and st.get("fingerprint") == fp for st in staged):
                    found = _find_ledger(cfg, store, array, fp)  # resume an interrupted replacement
        elif force:  # recompute everything: replace our own output, forget its ledger
            pass
        elif all(st.get("complete") for st in present):
            if any(io.consolidated_complete(path, name, so) is not True for name in names.values()):
                io.finalize(path, so)  # a run killed between its last two writes
            result.status, result.skipped = UP_TO_DATE, len(all_blocks)
            result.seconds = time.perf_counter() - t0
            return result
        else:
            found = _find_ledger(cfg, store, array, fp)

    done: set[tuple[int, ...]] = set()
    led = None  # the resume ledger, once the output is open
    try:
        coords = _out_coords(prep)
        if replace:  # coordinates too are replaced only once the new arrays are complete
            io.check_coords(path, coords, overwrite=True)
        if found is None:  # fresh, replaced, or our own output killed before its ledger existed
            state = {"fingerprint": fp, "complete": False, "grid": grid, "ledger": array, "parts": _parts(doc)}
            targets = _create_outputs(prep, names, state, overwrite=bool(present), coords={} if replace else coords)
            led = _new_ledger(cfg, store, array, fp)
            led.reset(grid)
            io.finalize(path, cfg.output.storage_options)  # consolidated metadata says "incomplete" from now on
        else:
            led = found[0]
            targets = {st: io.open_output(path, name, storage_options=so) for st, name in names.items()}
            done = led.done() & set(all_blocks)
            for t in targets.values():
                done -= _missing_chunks(t, grid, done, led)
        target = targets if plan.multi else targets[plan.stats[0]]
        todo = [b for b in all_blocks if b not in done]
        result.skipped = len(all_blocks) - len(todo)

        def _progress(n: int, total: int) -> None:
            if lock.lost:
                raise LockedError(f"{where}: another run took the lock over (this run's heartbeat stalled)", where="output.path")
            if progress is not None:
                progress(result.skipped + n, len(all_blocks))

        _, lo, hi = execute(prep, target, blocks=todo, record=led.recorder, progress=_progress, session=session)
        result.computed = len(todo)
        left = set(all_blocks) - led.done()
        if left:
            raise RuntimeError(f"{len(left)} blocks of {where} were not recorded as done")
        for t in targets.values():
            io.update_state(t, complete=True)  # written last: the output is complete
        if replace:
            _swap(prep, store, names, coords)
        io.finalize(path, cfg.output.storage_options)
    except BaseException as exc:
        computed = max(0, len(led.done()) - len(done)) if led is not None else 0
        result.status, result.computed = FAILED, computed
        result.seconds = time.perf_counter() - t0
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            err = WriteError(
                f"no space left on device while writing {where} ({exc.strerror}); "
                f"{result.skipped + computed} of {len(all_blocks)} blocks are done and kept: free space and rerun to resume",
                where=path,
            )
            result.error = str(err)
            err.pipeline_result = result  # type: ignore[attr-defined]
            raise err from None
        result.error = str(exc) or exc.__class__.__name__
        with contextlib.suppress(Exception):
            exc.pipeline_result = result  # type: ignore[attr-defined]
        raise
    if result.skipped == 0:
        result.set_range(plan.stats, lo, hi)
    result.seconds = time.perf_counter() - t0
    return result


def _missing_chunks(target: Any, grid: dict[str, Any], done: set[tuple[int, ...]], led: Any) -> set[tuple[int, ...]]:
    """Blocks recorded as done whose chunks are not all stored (deleted, lost): forgotten."""
    stored = io.stored_chunk_keys(target)
    lost = {b for b in done if any(io.chunk_key(target, c) not in stored for c in ledger.block_chunks(grid, b))}
    led.drop(lost)
    return lost


#: Suffixes of the arrays a replacement (``--overwrite``) writes beside the old output and of the
#: old arrays while they are swapped out: ``result.pipeline-new``, ``result.pipeline-old``.
STAGED, RETIRED = ".pipeline-new", ".pipeline-old"


def staging(name: str) -> str:
    return name + STAGED


def _swap(prep: Prepared, store: str, staged: Mapping[str, str], coords: Mapping[str, np.ndarray]) -> None:
    """Move each complete staged array in place of the old one (two renames), then delete the
    old one, then write changed coordinates.  Everything renamed or deleted is inside the output
    store, checked for symlinks by :func:`_check_local_output` and again here."""
    import shutil

    root = Path(store)
    for name in staged.values():
        final = name[: -len(STAGED)]
        new, old, retired = root / name, root / final, root / (final + RETIRED)
        safety.check_tree(root, [name, final, final + RETIRED])
        if retired.exists():
            shutil.rmtree(retired)  # left by a replacement killed between its renames
        if old.exists():
            os.rename(old, retired)
        os.rename(new, old)
        if retired.exists():
            shutil.rmtree(retired)
    if coords:
        import zarr

        io.write_coords(zarr.open_group(store=store, mode="a"), coords, overwrite=True, path=prep.config.output.path)


def _parts(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A digest per part of the fingerprint document, stored in the output's ``pipeline``
    attribute so that a refusal can say what changed."""
    return {
        "version": doc["version"],
        "config": ledger.fingerprint(doc["config"])[:16],
        "grid": ledger.fingerprint(doc["grid"])[:16],
        "inputs": {n: ledger.fingerprint(v)[:16] for n, v in doc["inputs"].items()},
    }


def _what_changed(doc: Mapping[str, Any], present: Sequence[Mapping[str, Any]]) -> str:
    """What differs from the run that wrote the existing output, for the refusal message."""
    old = next((st.get("parts") for st in present if isinstance(st.get("parts"), dict)), None)
    if not any(st for st in present):
        return "it has no pipeline attribute: not written by pipeline"
    if old is None:
        return "written by an older pipeline: the changed part is not recorded"
    new = _parts(doc)
    what = []
    if old.get("version") != new["version"]:
        what.append(f"pipeline version was {str(old.get('version'))[:40]}, now {new['version']}")
    if old.get("config") != new["config"]:
        what.append("the config changed")
    old_inputs = old.get("inputs") if isinstance(old.get("inputs"), dict) else {}
    changed = [n for n in new["inputs"] if old_inputs.get(n) != new["inputs"][n]]
    if changed:
        what.append("the data or metadata of input " + ", ".join(changed) + " changed")
    if not what and old.get("grid") != new["grid"]:
        what.append("the output grid changed")
    return "; ".join(what) or "some of its statistics' arrays are missing"


def _create_outputs(
    prep: Prepared, names: Mapping[str, str], state: Mapping[str, Any], *, overwrite: bool, coords: Mapping[str, np.ndarray] | None = None
) -> dict[str, Any]:
    """Create the output array of each statistic, its ``pipeline`` attribute holding ``state``."""
    cfg, plan = prep.config, prep.plan
    targets = {}
    gm = prep.grid_mapping
    scalars = {}
    if gm is not None:
        name_gm, value, gm_attrs = gm
        gm_attrs = dict(gm_attrs)
        if plan.boundary == "valid" and "GeoTransform" in gm_attrs and len(plan.window_axes) == 2:
            shifted = metadata.shifted_geotransform(gm_attrs["GeoTransform"], plan.lo)
            if shifted is None:
                gm_attrs.pop("GeoTransform")
            else:
                gm_attrs["GeoTransform"] = shifted
        scalars[name_gm] = (value, gm_attrs)
    for st, name in names.items():
        fill = plan.fill_values.get(st)
        attrs = metadata.output_attrs(
            prep.attrs,
            statistic=st,
            same_units=metadata.same_units(plan.expr.text, plan.expr.names),
            bare=plan.expr.text.strip() in plan.expr.names,
            fill=fill,
            dtype=plan.out_dtypes[st],
            grid_mapping=gm[0] if gm is not None else None,
        )
        attrs["pipeline"] = {**provenance(prep), "statistic": st, **state}
        targets[st] = io.create_output(
            cfg.output.path,
            name,
            shape=plan.out_shape,
            dtype=plan.out_dtypes[st],
            chunks=plan.storage_chunks,
            dims=plan.dims,
            attrs=attrs,
            coords=_out_coords(prep) if coords is None else coords,
            scalars=scalars,
            fill_value=fill if fill is not None else 0,
            overwrite=overwrite,
            storage_options=cfg.output.storage_options,
        )
    return targets
