"""Batches of configs for scheduled runs: one record per config and set of variable values, a
summary, a JSON report, Prometheus metrics.

A batch runs every config for every set of template variables (``--var DATE=a,b`` or
``--vars-from``).  One failing item does not stop the others (an interruption does: it stops the
batch, and the items it never reached are recorded as ``not-started``).  Each record says what a
scheduler or a dashboard needs: status (``done``, ``up-to-date``, ``failed``, ``locked``,
``not-ready``, ``interrupted``, ``not-started``; with ``--dry-run``: ``new``, ``up-to-date``,
``would-resume``, ``would-replace``, ``refused``, ``locked``, ``not-ready``), the variable values,
output, seconds, pixels, chunks computed and skipped, unstored input chunks, the error message and
the exit code.  Log lines go to stderr as text or as JSON lines (``--log-format json``, each with
the batch id and host) for shippers.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pipeline.batch.log import Log, notify, progress, utc_now
from pipeline.batch.report import (
    REPORT_FORMAT,
    REPORT_PATTERN,
    BatchInfo,
    Record,
    batch_exit_code,
    check_files,
    is_report,
    metrics_text,
    publish_report,
    report_doc,
    summary_table,
    write_metrics,
    write_report,
)
from pipeline.batch.variables import expand_paths, variable_sets
from pipeline.errors import ExitCode, LockedError, NotReadyError, PipelineError, interrupted_message

__all__ = [
    "REPORT_FORMAT",
    "REPORT_PATTERN",
    "BatchInfo",
    "Log",
    "Record",
    "batch_exit_code",
    "check_files",
    "expand_paths",
    "is_report",
    "metrics_text",
    "preview_one",
    "publish_report",
    "report_doc",
    "run_batch",
    "run_one",
    "summary_table",
    "variable_sets",
    "write_metrics",
    "write_report",
]


@dataclass
class _Item:
    """One config and one set of batch variables, as it is run or previewed: what each of its
    records holds besides the outcome (the batch's values, the start time, the seconds taken)."""

    config: str
    variables: dict[str, str]  #: the batch's own template values (recorded)
    values: dict[str, str]  #: every template value: the environment (or ``variables``), then the batch's
    started: str
    t0: float

    @classmethod
    def start(cls, config: str, variables: Mapping[str, str] | None, batch_vars: Mapping[str, str] | None) -> _Item:
        bv = dict(batch_vars or {})
        values = {**(os.environ if variables is None else variables), **bv}
        return cls(config, bv, values, utc_now(), time.perf_counter())

    @property
    def label(self) -> str:
        """The config with its batch values, as verdict lines name it."""
        return self.config + "".join(f" {k}={v}" for k, v in self.variables.items())

    def load(self, overrides: Sequence[str]) -> Any:
        from pipeline.config.load import load_config

        return load_config(self.config, overrides=overrides, variables=self.values, confine=self.variables.keys())

    def record(self, status: str, exit_code: int, **fields: Any) -> Record:
        return Record(
            self.config, status, exit_code, seconds=time.perf_counter() - self.t0, variables=self.variables, started=self.started, **fields
        )


def run_one(
    config: str,
    *,
    overrides: Sequence[str] = (),
    variables: Mapping[str, str] | None = None,
    overwrite: bool = False,
    log: Log,
    debug: bool = False,
    batch_vars: Mapping[str, str] | None = None,
    force: bool = False,
    dry_run: bool = False,
    detail: bool = False,
) -> Record:
    """Run one config and describe the outcome; user errors and failures become records.
    ``batch_vars`` are the batch's own template values (recorded; also applied over ``variables``).

    ``dry_run``: only say what running it would do (``run --dry-run``, ``validate``): the plan
    (with ``detail``, its inputs, output and scheduler) and a verdict, logged, as a record whose
    status is the verdict; nothing is computed or written."""
    item = _Item.start(config, variables, batch_vars)
    if dry_run:
        return _preview(item, overrides, overwrite=overwrite, log=log, debug=debug, detail=detail)
    return _run(item, overrides, overwrite=overwrite, log=log, debug=debug, force=force)


def preview_one(config: str, **options: Any) -> Record:
    """:func:`run_one` with ``dry_run=True``: what running ``config`` would do."""
    return run_one(config, dry_run=True, **options)


def _run(item: _Item, overrides: Sequence[str], *, overwrite: bool, log: Log, debug: bool, force: bool) -> Record:
    """:func:`run_one` of a run: readiness, prepare, run; the outcome logged and recorded."""
    from pipeline.runner import readiness, runconfig

    config = item.config
    unstored = None
    try:
        cfg = item.load(overrides)
        if overwrite:
            cfg = cfg.model_copy(update={"output": cfg.output.model_copy(update={"overwrite": True})})
        readiness.check_markers(cfg)  # before the inputs are opened: a delivery not started has no store
        prep = runconfig.prepare(cfg)  # the config and inputs first, then their chunks; the run reuses it
        found = readiness.check(cfg, prep.arrays)
        if found:
            unstored = {r.name: r.unstored for r in found}
        _warn_unstored(log, config, found)
        with progress(log, config) as report:
            result = runconfig.run(prep, progress=report, notify=notify(log, config), force=force)
    except KeyboardInterrupt as exc:
        return _ended(item, exc, unstored)
    except Exception as exc:  # noqa: BLE001 - the batch boundary: one failure must not stop the rest
        if debug:
            raise
        return _ended(item, exc, unstored)
    rec = item.record(
        getattr(result, "status", "done"),
        int(ExitCode.OK),
        output=f"{result.output}:{result.array}",
        pixels=math.prod(result.shape),
        chunks_computed=getattr(result, "computed", result.blocks),
        chunks_skipped=getattr(result, "skipped", 0),
        unstored_chunks=unstored,
    )
    log.event("done", result.summary(), config=config, **_fields(rec))
    return rec


def _ended(item: _Item, exc: BaseException, unstored: dict[str, int] | None) -> Record:
    """The record of a run that ended with ``exc``: interrupted, a user error (failed, locked,
    not ready) or an internal failure; with what the run had done (``exc.pipeline_result``)."""
    if isinstance(exc, KeyboardInterrupt):
        status, code, error = "interrupted", int(ExitCode.INTERRUPTED), interrupted_message(exc)
    elif isinstance(exc, PipelineError):
        status = "locked" if isinstance(exc, LockedError) else "not-ready" if isinstance(exc, NotReadyError) else "failed"
        code, error = int(exc.exit_code), "\n".join(exc.lines)
    else:
        status, code = "failed", int(ExitCode.FAILURE)
        error = f"internal error: {exc.__class__.__name__}: {exc} (rerun with --debug for the traceback)"
    return item.record(status, code, error=error, unstored_chunks=unstored, **_counts(getattr(exc, "pipeline_result", None)))


def _warn_unstored(log: Log, config: str, found: Sequence[Any]) -> None:
    """One warning per input with unstored chunks (rule ``warn``)."""
    for r in found:
        log.event("warning", f"inputs.{r.name}: {r.message()}", level="warning", config=config, input=r.name, unstored=r.unstored)


def _preview(item: _Item, overrides: Sequence[str], *, overwrite: bool, log: Log, debug: bool, detail: bool) -> Record:
    """:func:`run_one` of a dry run: the preview's verdict logged and recorded."""
    from pipeline.runner import dryrun

    config = item.config
    try:
        cfg = item.load(overrides)
        view = dryrun.preview(cfg, overwrite=True if overwrite else None)
    except PipelineError as exc:
        if debug:
            raise
        status = "not-ready" if isinstance(exc, NotReadyError) else "refused"
        rec = item.record(status, int(exc.exit_code), error="\n".join(exc.lines))
        text = "\n".join(f"{item.label}: {status}: {line}" if item.variables else line for line in exc.lines)  # one line a problem
        log.event("verdict", text, level="error", config=config, **_fields(rec))
        return rec
    rec = item.record(
        view.verdict,
        dryrun.exit_code(view.verdict),
        output=f"{cfg.output.path}:{cfg.output.array}",
        pixels=math.prod(view.prepared.plan.out_shape),
        unstored_chunks={r.name: r.unstored for r in view.unstored} or None,
        error=view.detail if view.verdict in ("refused", "locked") else None,
    )
    _warn_unstored(log, config, view.unstored)
    lines = _details(item.label, cfg, view.prepared, overwrite) if detail else []
    lines.append(f"{item.label}: {view.verdict}: {view.detail}")
    level = "error" if view.verdict in ("refused", "locked") else "info"
    log.event("verdict", "\n".join(lines), level=level, config=config, **_fields(rec))
    rec.config_obj = cfg  # type: ignore[attr-defined]  # for validate's job script (not in the report)
    return rec


def _details(label: str, cfg: Any, prep: Any, overwrite: bool) -> list[str]:
    """``validate``'s account of a config: its inputs (source, shape, dtype, chunks, nodata), the
    plan, the output and the scheduler."""
    from pipeline.execution import sessions

    lines = [f"config OK: {label}"]
    for name, spec in prep.specs.items():
        used = "" if name in prep.plan.expr.names else "  (not used by op)"
        nd, source = prep.plan.nodata.get(name), prep.nodata_source.get(name)
        nodata = f" nodata {nd} ({source})" if nd is not None else (f" nodata {source}" if source else "")
        lines.append(f"input {name}: {spec.source} shape {spec.shape} {spec.dtype} chunks {spec.chunks}{nodata}{used}")
    lines.append(prep.plan.describe())
    lines.append(f"output:        {cfg.output.path}:{cfg.output.array}" + (" (overwrite)" if cfg.output.overwrite or overwrite else ""))
    lines.append(f"scheduler:     {sessions.describe_scheduler(cfg)}")
    return lines


def _counts(part: Any) -> dict[str, Any]:
    """Output, pixels and chunk counts of a run that ended early (``exc.pipeline_result``)."""
    if part is None:
        return {}
    return {
        "output": f"{part.output}:{part.array}",
        "pixels": math.prod(part.shape),
        "chunks_computed": part.computed,
        "chunks_skipped": part.skipped,
    }


def _fields(rec: Record) -> dict[str, Any]:
    return {k: v for k, v in asdict(rec).items() if k != "config"}


def run_batch(
    configs: Sequence[str | os.PathLike[str]],
    *,
    overrides: Sequence[str] = (),
    variables: Mapping[str, str] | None = None,
    overwrite: bool = False,
    log: Log,
    debug: bool = False,
    var_sets: Sequence[Mapping[str, str]] = ({},),
    dry_run: bool = False,
    detail: bool = False,
    force: bool = False,
) -> list[Record]:
    """Run (or, ``dry_run``, preview) each config for each set of batch variables (sets outside,
    configs inside: day by day); an interruption stops the batch and records the items it never
    reached as ``not-started``; anything else does not stop it."""
    paths = expand_paths(configs)
    items = [(c, dict(vs)) for vs in (var_sets or ({},)) for c in paths]
    records: list[Record] = []
    for n, (config, vs) in enumerate(items):
        try:
            rec = run_one(
                config, overrides=overrides, variables=variables, overwrite=overwrite, log=log, debug=debug, batch_vars=vs,
                force=force, dry_run=dry_run, detail=detail or dry_run,
            )
            if rec.status in ("failed", "interrupted", "locked", "not-ready") and not dry_run:
                log.event("error", rec.error or rec.status, level="error", config=config, **_fields(rec))
        except KeyboardInterrupt as exc:  # between two runs, or while logging
            why = f" by {exc.args[0]}" if exc.args else ""
            rec = Record(config, "interrupted", int(ExitCode.INTERRUPTED), error=f"interrupted{why}", variables=vs)
        records.append(rec)
        if rec.status == "interrupted":
            for later, lvs in items[n + 1 :]:
                records.append(
                    Record(later, "not-started", int(ExitCode.INTERRUPTED), error="not started: the batch was interrupted", variables=lvs)
                )
            break
    return records
