"""``pipeline run`` and ``pipeline validate``: a batch of configs (times sets of template
variables) run or previewed through :mod:`pipeline.batch.runbatch`, with its log, summary, report and
metrics."""

from __future__ import annotations

import enum
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.cli.common import end_quietly, guard, state
from pipeline.errors import ExitCode, PipelineError
from pipeline.execution import interrupts

SchedulerOption = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        metavar="SCHEDULER",
        help="Override compute.scheduler (and compute.cluster): threads, processes, synchronous, "
        "local-cluster, or a scheduler address such as tcp://host:8786 or tls://host:8786.",
        show_default=False,
    ),
]


SetOption = Annotated[
    list[str] | None, typer.Option("--set", metavar="KEY=VALUE", help="Override a config key: --set window.size=5 (repeatable).")
]
VarOption = Annotated[
    list[str] | None,
    typer.Option(
        "--var",
        metavar="NAME=VALUE",
        help="Define a ${NAME} template variable: --var NAME=VALUE (repeatable, one per name). A comma-separated "
        "list (--var DATE=2026-11-20,2026-11-21) runs the batch once per value; several lists: every combination.",
    ),
]
VarsFromOption = Annotated[
    Path | None,
    typer.Option(
        "--vars-from",
        metavar="FILE.csv",
        help="CSV file: a header row of variable names, then one row of values per batch item (combined with --var lists).",
    ),
]


class LogFormat(enum.StrEnum):
    """``--log-format``: readable lines, or one JSON object per line on stderr."""

    text = "text"
    json = "json"


LogFormatOption = Annotated[LogFormat, typer.Option("--log-format", help="Readable lines, or JSON lines on stderr.")]


@dataclass
class _Batch:
    """One ``run`` or ``validate``: its log (with the batch id and host on every JSON line), batch
    info, environment variables, the sets of batch variables and the overrides."""

    log: Any
    info: Any
    variables: dict[str, str]
    var_sets: list[dict[str, str]]
    overrides: list[str]

    @classmethod
    def start(
        cls, log_format: str, quiet: bool, var: list[str] | None, vars_from: Path | None, set_: list[str] | None, scheduler: str | None
    ) -> _Batch:
        from pipeline.batch import runbatch
        from pipeline.config.load import scheduler_overrides

        info = runbatch.BatchInfo.new()
        log = runbatch.Log(LogFormat(log_format).value, quiet=quiet, context={"batch": info.id, "host": info.host})
        state["log"] = log  # errors from here on are logged in its format
        if log.fmt == "json":
            _json_warnings(log)
        var_sets = runbatch.variable_sets(var or (), vars_from)
        overrides = list(set_ or ()) + scheduler_overrides(scheduler)
        return cls(log, info, dict(os.environ), var_sets, overrides)

    def run(self, configs: list[Path], *, overwrite: bool, **options: Any) -> list[Any]:
        """:func:`pipeline.batch.runbatch.run_batch` of ``configs`` (``options``: dry_run, detail, force)."""
        from pipeline.batch import runbatch

        return runbatch.run_batch(
            configs,
            overrides=self.overrides,
            variables=self.variables,
            overwrite=overwrite,
            log=self.log,
            debug=state["debug"],
            var_sets=self.var_sets,
            **options,
        )

    def exit_code(self, records: list[Any]) -> int:
        """The batch's exit code; with several records, the summary table logged."""
        from pipeline.batch import runbatch

        code = runbatch.batch_exit_code(records)
        if len(records) > 1:
            self.log.event("summary", runbatch.summary_table(records), exit_code=code)
        return code


def _json_warnings(log: Any) -> None:
    """Python warnings as JSON log events, so that every line on stderr stays JSON."""
    import warnings

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001 - warnings' signature
        log.event("warning", f"{category.__name__}: {message}", level="warning")

    state["showwarning"] = warnings.showwarning
    warnings.showwarning = show


def _exit_with(go: Any, *, sigterm: Any = None) -> None:
    """Run the command's work at the CLI boundary and exit with its code (``sigterm``: SIGTERM's
    handler meanwhile); then forget the command's log and put Python's warning printer back
    (in-process callers, tests)."""
    import warnings

    previous = signal.signal(signal.SIGTERM, sigterm) if sigterm is not None else None
    code = int(ExitCode.FAILURE)
    try:
        code = guard(go)
    except typer.Exit as exc:
        code = exc.exit_code
        raise
    finally:
        if sigterm is not None:
            signal.signal(signal.SIGTERM, previous)
        end_quietly(code)  # the console script: a signal from now on cannot cost the exit code
        state.pop("log", None)
        if "showwarning" in state:
            warnings.showwarning = state.pop("showwarning")
    raise typer.Exit(code)


def run(
    configs: Annotated[list[Path], typer.Argument(metavar="CONFIG", help="YAML run configs (globs are expanded).", show_default=False)],
    set_: SetOption = None,
    var: VarOption = None,
    vars_from: VarsFromOption = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an output written by a different config (same as output.overwrite: true).")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Compute and write nothing: print per config the plan and the verdict (new, up-to-date, "
            "would-resume, would-replace, refused, locked, not-ready).",
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Recompute every block, even of an output that is up to date or partly done.")
    ] = False,
    report: Annotated[Path | None, typer.Option("--report", metavar="FILE", help="Write a JSON record per config to this file.")] = None,
    keep_reports: Annotated[
        int | None,
        typer.Option(
            "--keep-reports",
            metavar="N",
            min=1,
            help="With --report: also write latest.json beside it and keep only the newest N pipeline-*.json reports there "
            "(only reports pipeline wrote are ever replaced or deleted).",
        ),
    ] = None,
    metrics: Annotated[
        Path | None, typer.Option("--metrics", metavar="FILE", help="Write Prometheus textfile metrics (per config: duration, pixels, blocks, exit code) here.")
    ] = None,
    log_format: LogFormatOption = LogFormat.text,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or progress lines.")] = False,
    scheduler: SchedulerOption = None,
) -> None:
    """Run configs: read the inputs, compute the window reduction, write the output Zarr.

    Several configs (and several --var values) run one after another; one failure does not stop
    the rest, and the exit code is non-zero if any failed.  A rerun of the same config resumes an
    interrupted run, or does nothing if the output is complete ("up to date").  SIGTERM/SIGINT
    stop cleanly (exit code 4).  An input that is not ready yet gives exit code 5."""

    def go() -> int:
        from pipeline.batch import runbatch

        job = _Batch.start(log_format, quiet, var, vars_from, set_, scheduler)
        protected: dict[str, str] = {}
        if report is not None or metrics is not None:  # before any run writes
            protected = runbatch.check_files(
                configs, report=report, metrics=metrics, keep_reports=keep_reports,
                overrides=job.overrides, variables=job.variables, var_sets=job.var_sets,
            )
        records = job.run(configs, overwrite=overwrite, dry_run=dry_run, force=force)
        late: list[str] = []  # a signal now must not cost the report: note it, finish, exit 4
        signal.signal(signal.SIGTERM, lambda signum, frame: late.append(signal.Signals(signum).name))
        code = job.exit_code(records)
        files = _Files(report, keep_reports, metrics, protected)
        failed = _write_records(job, records, files, dry_run=dry_run)
        if failed is not None:
            return code or failed
        if late and not code:
            job.log.event("error", f"interrupted by {late[0]} after the last run; the report is complete", level="error")
            return int(ExitCode.INTERRUPTED)
        return code

    _exit_with(go, sigterm=_interrupt)  # SIGTERM stops the run from before the (slow) imports on


@dataclass
class _Files:
    """What a finished batch writes: the report (and its retention), the metrics, and what
    retention must never delete (the batch's configs, inputs and outputs)."""

    report: Path | None
    keep_reports: int | None
    metrics: Path | None
    protected: dict[str, str]


def _write_records(job: _Batch, records: list[Any], files: _Files, *, dry_run: bool) -> int | None:
    """The report (and its retention) and the metrics of a finished batch; a failure to write
    them is logged in the log's format and gives its exit code (None: all written)."""
    from pipeline.batch import runbatch

    try:
        if files.report is not None:
            runbatch.write_report(files.report, records, job.info, dry_run=dry_run)
            if files.keep_reports is not None:
                runbatch.publish_report(files.report, files.keep_reports, protected=files.protected.values())
        if files.metrics is not None and not dry_run:
            runbatch.write_metrics(files.metrics, records, job.info)
    except PipelineError as exc:  # the runs are done; say so on the log stream, in its format
        job.log.event("error", str(exc), level="error", exit_code=int(exc.exit_code))
        return int(exc.exit_code)
    return None


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM (what SLURM and systemd send first) stops the run like Ctrl-C: blocks in flight
    are abandoned, blocks done stay recorded, the lock is released, exit code 4.  While the
    driver waits on its block tasks the stop is raised there, at a safe point (:mod:`pipeline.execution.interrupts`)."""
    name = signal.Signals(signum).name
    if interrupts.defer(name):
        return
    raise KeyboardInterrupt(name)


def validate(
    configs: Annotated[list[Path], typer.Argument(metavar="CONFIG", help="YAML run configs (globs are expanded).", show_default=False)],
    set_: SetOption = None,
    var: VarOption = None,
    vars_from: VarsFromOption = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Judge the output as run --overwrite would.")] = False,
    log_format: LogFormatOption = LogFormat.text,
    scheduler: SchedulerOption = None,
) -> None:
    """Check configs and their inputs without computing or writing anything; print the plan.

    Per config: the plan, unstored input chunks, and what a run would do with the output (new,
    up-to-date, would-resume, would-replace, refused, locked, not-ready); for compute.cluster also
    the job script that would be submitted.  Exit code: what the run would end with before
    computing."""

    def go() -> int:
        job = _Batch.start(log_format, False, var, vars_from, set_, scheduler)
        records = job.run(configs, overwrite=overwrite, dry_run=True, detail=True)
        _log_job_scripts(job.log, records)
        return job.exit_code(records)

    _exit_with(go)


def _log_job_scripts(log: Any, records: list[Any]) -> None:
    """For each config with ``compute.cluster``: the job script that would be submitted."""
    from pipeline.execution import sessions

    for rec in records:
        cfg = getattr(rec, "config_obj", None)
        if cfg is not None and cfg.compute.cluster is not None:
            script = sessions.job_script(cfg)
            log.event(
                "verdict",
                f"job script ({cfg.compute.cluster.kind}, not submitted; the scheduler address is filled in at run time):\n"
                + script.rstrip("\n"),
                config=rec.config,
            )
