"""The ``pipeline`` command: thin Typer wrappers that call the library and print.

A user error (:class:`PipelineError`) becomes one line on stderr and its exit code (2 for a bad
config or input); any other exception is an internal failure: one line and exit code 1, with the
traceback under ``--debug``.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from .errors import ExitCode, PipelineError, interrupted_message

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Exact moving-window reductions of pointwise expressions over huge Zarr images.",
    pretty_exceptions_enable=False,
)

_state: dict[str, Any] = {"debug": False}


def _plain_flags() -> None:
    """Help without ``<bool>`` beside flags (typer 0.29 shows a type for every option), and an
    option's ``metavar`` (``KEY=VALUE``) instead of its type (``<list[str]>``)."""
    from typer.core import TyperArgument, TyperOption

    for cls in (TyperOption, TyperArgument):
        shown = getattr(cls, "display_type_rich", None)
        if shown is None or getattr(shown, "_pipeline", False):
            continue

        def display_type_rich(self: Any, ctx: Any, _shown: Any = shown) -> str | None:
            if getattr(self, "is_flag", False):
                return None
            if self.metavar is not None:
                return None if isinstance(self, TyperArgument) else self.metavar
            return _shown(self, ctx)

        display_type_rich._pipeline = True  # type: ignore[attr-defined]
        setattr(cls, "display_type_rich", display_type_rich)  # a patched method (mypy: no method-assign)


_plain_flags()


def _fail(exc: BaseException) -> None:
    if _state["debug"]:
        raise exc
    if isinstance(exc, PipelineError):
        for line in exc.lines:  # every problem, one line each
            _say(f"error: {line}", int(exc.exit_code))
        raise typer.Exit(int(exc.exit_code))
    _say(f"internal error: {exc.__class__.__name__}: {exc} (rerun with --debug for the traceback)", int(ExitCode.FAILURE))
    raise typer.Exit(int(ExitCode.FAILURE))


def _say(message: str, code: int) -> None:
    """A final error line: a JSON event when the command logs JSON, else text on stderr."""
    log = _state.get("log")
    if log is not None and log.fmt == "json":
        log.event("error", message, level="error", exit_code=code)
    else:
        typer.echo(message, err=True)


def _guard(fn, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except typer.Exit:
        raise
    except KeyboardInterrupt as exc:
        if _state["debug"]:
            raise
        _say(interrupted_message(exc), int(ExitCode.INTERRUPTED))
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    except Exception as exc:  # noqa: BLE001 - the CLI boundary
        _fail(exc)


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"pipeline {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_version, is_eager=True)
    ] = False,
) -> None:
    _state["debug"] = debug


SchedulerOption = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
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
LogFormatOption = Annotated[str, typer.Option("--log-format", help="text (default) or json lines on stderr.")]


def _batch_setup(
    log_format: str, quiet: bool, var: list[str] | None, vars_from: Path | None, set_: list[str] | None, scheduler: str | None
) -> tuple[Any, Any, dict[str, str], list[dict[str, str]], list[str]]:
    """Log (with the batch id and host on every JSON line), batch info, environment variables,
    the sets of batch variables and the overrides of a ``run`` or ``validate``."""
    from . import batch
    from .config import scheduler_overrides

    info = batch.BatchInfo.new()
    log = batch.Log(log_format, quiet=quiet, context={"batch": info.id, "host": info.host})
    _state["log"] = log  # errors from here on are logged in its format
    if log.fmt == "json":
        _json_warnings(log)
    var_sets = batch.variable_sets(var or (), vars_from)
    overrides = list(set_ or ()) + scheduler_overrides(scheduler)
    return log, info, dict(os.environ), var_sets, overrides


def _json_warnings(log: Any) -> None:
    """Python warnings as JSON log events, so that every line on stderr stays JSON."""
    import warnings

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001 - warnings' signature
        log.event("warning", f"{category.__name__}: {message}", level="warning")

    _state["showwarning"] = warnings.showwarning
    warnings.showwarning = show


def _teardown() -> None:
    """Forget the command's log; put Python's warning printer back (in-process callers, tests)."""
    import warnings

    _state.pop("log", None)
    if "showwarning" in _state:
        warnings.showwarning = _state.pop("showwarning")


@app.command()
def run(
    configs: Annotated[list[Path], typer.Argument(help="YAML run configs (globs are expanded).", show_default=False)],
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
    report: Annotated[Path | None, typer.Option("--report", help="Write a JSON record per config to this file.")] = None,
    keep_reports: Annotated[
        int | None,
        typer.Option(
            "--keep-reports",
            min=1,
            help="With --report: also write latest.json beside it and keep only the newest N pipeline-*.json reports there.",
        ),
    ] = None,
    metrics: Annotated[
        Path | None, typer.Option("--metrics", help="Write Prometheus textfile metrics (per config: duration, pixels, blocks, exit code) here.")
    ] = None,
    log_format: LogFormatOption = "text",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
    scheduler: SchedulerOption = None,
) -> None:
    """Run configs: read the inputs, compute the window reduction, write the output Zarr.

    Several configs (and several --var values) run one after another; one failure does not stop
    the rest, and the exit code is non-zero if any failed.  A rerun of the same config resumes an
    interrupted run, or does nothing if the output is complete ("up to date").  SIGTERM/SIGINT
    stop cleanly (exit code 4).  An input that is not ready yet gives exit code 5."""

    def go() -> int:
        from . import batch

        log, info, variables, var_sets, overrides = _batch_setup(log_format, quiet, var, vars_from, set_, scheduler)
        if report is not None:
            batch.check_report(report, configs, overrides=overrides, variables=variables)  # before any run writes
        records = batch.run_batch(
            configs,
            overrides=overrides,
            variables=variables,
            overwrite=overwrite,
            log=log,
            debug=_state["debug"],
            var_sets=var_sets,
            dry_run=dry_run,
            force=force,
        )
        late: list[str] = []  # a signal now must not cost the report: note it, finish, exit 4
        signal.signal(signal.SIGTERM, lambda signum, frame: late.append(signal.Signals(signum).name))
        code = batch.batch_exit_code(records)
        if len(records) > 1:
            log.event("summary", batch.summary_table(records), exit_code=code)
        try:
            if report is not None:
                batch.write_report(report, records, info, dry_run=dry_run)
                if keep_reports is not None:
                    batch.publish_report(report, keep_reports)
            if metrics is not None and not dry_run:
                batch.write_metrics(metrics, records, info)
        except PipelineError as exc:  # the runs are done; say so on the log stream, in its format
            log.event("error", str(exc), level="error", exit_code=int(exc.exit_code))
            return code or int(exc.exit_code)
        if late and not code:
            log.event("error", f"interrupted by {late[0]} after the last run; the report is complete", level="error")
            return int(ExitCode.INTERRUPTED)
        return code

    previous = signal.signal(signal.SIGTERM, _interrupt)  # before the (slow) imports
    try:
        code = _guard(go)
    finally:
        signal.signal(signal.SIGTERM, previous)
        _teardown()
    raise typer.Exit(code)


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM (what SLURM and systemd send first) stops the run like Ctrl-C: blocks in flight
    are abandoned, blocks done stay recorded, the lock is released, exit code 4."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


@app.command()
def verify(
    path: Annotated[str, typer.Argument(help="An output Zarr store.", show_default=False)],
    array: Annotated[str | None, typer.Option("--array", help="Only this array (default: all).")] = None,
    no_mark: Annotated[
        bool, typer.Option("--no-mark", help="Only report; do not mark bad blocks for recomputation.")
    ] = False,
) -> None:
    """Read every chunk; report damaged (checksum/decoding) and missing chunks by key.

    Bad blocks are marked so that rerunning the output's config recomputes them.  Exit code 0:
    all good; 1: damage or missing chunks found.
    """
    from . import verify as verify_mod
    from .config import check_url

    _guard(check_url, str(path), "path")
    reports = _guard(verify_mod.verify, path, array=array, mark=not no_mark)
    for rep in reports:
        for line in rep.lines():
            typer.echo(line)
    if not all(rep.ok for rep in reports):
        raise typer.Exit(int(ExitCode.FAILURE))


@app.command()
def validate(
    configs: Annotated[list[Path], typer.Argument(help="YAML run configs (globs are expanded).", show_default=False)],
    set_: SetOption = None,
    var: VarOption = None,
    vars_from: VarsFromOption = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Judge the output as run --overwrite would.")] = False,
    log_format: LogFormatOption = "text",
    scheduler: SchedulerOption = None,
) -> None:
    """Check configs and their inputs without computing or writing anything; print the plan.

    Per config: the plan, unstored input chunks, and what a run would do with the output (new,
    up-to-date, would-resume, would-replace, refused, locked, not-ready); for compute.cluster also
    the job script that would be submitted.  Exit code: what the run would end with before
    computing."""
    from . import batch, sessions

    def go() -> int:
        log, _, variables, var_sets, overrides = _batch_setup(log_format, False, var, vars_from, set_, scheduler)
        records = batch.run_batch(
            configs,
            overrides=overrides,
            variables=variables,
            overwrite=overwrite,
            log=log,
            debug=_state["debug"],
            var_sets=var_sets,
            dry_run=True,
            detail=True,
        )
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
        code = batch.batch_exit_code(records)
        if len(records) > 1:
            log.event("summary", batch.summary_table(records), exit_code=code)
        return code

    try:
        code = _guard(go)
    finally:
        _teardown()
    raise typer.Exit(code)


@app.command()
def info(path: Annotated[str, typer.Argument(help="A Zarr store (group or array).", show_default=False)]) -> None:
    """Shape, dtype, chunks, codecs and attributes of the arrays in a Zarr store."""
    from . import io
    from .config import check_url

    _guard(check_url, path, "path")
    typer.echo(_guard(io.describe_store, path))


@app.command()
def bench(
    size: Annotated[int, typer.Option(help="Side of the generated square uint8 pair.")] = 16384,
    chunk: Annotated[int, typer.Option(help="Storage chunk side of the generated pair.")] = 2048,
    windows: Annotated[str, typer.Option(help="Window sizes, comma-separated.")] = "3,63",
    threads: Annotated[int, typer.Option(help="Threads for every contender.")] = 2,
    workdir: Annotated[Path, typer.Option(help="Where the pair and outputs go (deleted afterwards unless --keep).")] = Path("bench-data"),
    store: Annotated[str | None, typer.Option(help="Use this Zarr group (arrays a and b) instead of generating a pair.")] = None,
    peers: Annotated[str, typer.Option(help="Peers to run, comma-separated (dask-image, xarray, map_overlap), or 'none'.")] = "dask-image,xarray,map_overlap",
    peer_size: Annotated[list[str], typer.Option(help="NAME[@W]=SIDE: run that peer on a top-left crop (slow peers).")] = [],  # noqa: B006
    kernel_size: Annotated[int, typer.Option(help="Side of the in-memory kernel benchmark (0: skip).")] = 4096,
    repeats: Annotated[int, typer.Option(help="Runs per contender (the median run is reported).")] = 1,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the results as JSON here.")] = None,
    fast: Annotated[bool, typer.Option(help="A tiny smoke run (512², chunks 128, W 3 and 15).")] = False,
    keep: Annotated[bool, typer.Option(help="Keep generated data and outputs.")] = False,
    schedulers: Annotated[
        str, typer.Option(help="Also run this project on these schedulers, comma-separated: local-cluster, processes, tcp (or 'none').")
    ] = "none",
    kernels: Annotated[bool, typer.Option("--kernels", help="Only the in-memory kernel grid (reducer × boundary × dtype × nodata × W, one thread, against scipy).")] = False,
    reducers: Annotated[str, typer.Option(help="--kernels: reducers, comma-separated.")] = "sum,mean,var,std,count,min,max",
    boundaries: Annotated[str, typer.Option(help="--kernels: boundaries, comma-separated.")] = "shrink,valid,constant,reflect,mirror,nearest,wrap",
    dtypes: Annotated[str, typer.Option(help="--kernels: input dtypes, comma-separated.")] = "uint8,uint16,int32,float32,float64",
    nodata: Annotated[str, typer.Option(help="--kernels: 'both', 'no' or 'yes' (1% missing pixels).")] = "both",
) -> None:
    """Benchmark against dask-image, xarray rolling and map_overlap + scipy; print a table.

    Every contender runs on the same Zarr pair and every output is checked against the exact
    result."""
    import json

    from . import bench as b

    if kernels:
        from . import benchgrid

        side, ws, reps = (256, "3,15", 3) if fast else (kernel_size or 4096, windows if windows != "3,63" else "3,15,63", max(repeats, 3))
        grid = _guard(
            benchgrid.kernel_grid,
            side,
            _guard(_int_list, ws, "--windows"),
            reducers=[r for r in reducers.split(",") if r],
            boundaries=[x for x in boundaries.split(",") if x],
            dtypes=[d for d in dtypes.split(",") if d],
            nodata=nodata,
            repeats=reps,
            echo=lambda line: typer.echo(line, err=True),
        )
        typer.echo(benchgrid.grid_table(grid))
        if json_out is not None:
            json_out.write_text(json.dumps(grid, indent=2))
            typer.echo(f"wrote {json_out}")
        return

    if fast:
        size, chunk, windows, kernel_size = 512, 128, "3,15", 256
    crops = {}
    for item in peer_size:
        key, _, value = item.partition("=")
        crops[key] = _guard(_int_list, value, "--peer-size")[0]
    results = _guard(
        b.run_bench,
        size=size,
        chunk=chunk,
        windows=_guard(_int_list, windows, "--windows"),
        threads=threads,
        workdir=str(workdir),
        store=store,
        peers=[] if peers == "none" else [p.strip() for p in peers.split(",") if p.strip()],
        peer_size=crops,
        kernel_size=kernel_size,
        repeats=repeats,
        keep=keep,
        schedulers=_guard(_bench_schedulers, schedulers),
        echo=lambda line: typer.echo(line, err=True),
    )
    typer.echo(b.table(results))
    if json_out is not None:
        json_out.write_text(json.dumps(results, indent=2))
        typer.echo(f"wrote {json_out}")


def _int_list(text: str, option: str) -> list[int]:
    """``3,63`` as [3, 63]; anything else a one-line user error naming the option."""
    from .errors import ConfigError

    try:
        values = [int(w) for w in text.split(",")]
    except ValueError:
        raise ConfigError(f"expected positive integers separated by commas, got {text[:60]!r}", where=option) from None
    if not values or any(v < 1 for v in values):
        raise ConfigError(f"expected positive integers separated by commas, got {text[:60]!r}", where=option)
    return values


def _json_requested(argv: list[str]) -> bool:
    for i, arg in enumerate(argv):
        if arg == "--log-format=json" or (arg == "--log-format" and argv[i + 1 : i + 2] == ["json"]):
            return True
    return False


def _bench_schedulers(text: str) -> list[str]:
    from .bench import SCHEDULERS
    from .errors import ConfigError

    names = [] if text == "none" else [p.strip() for p in text.split(",") if p.strip()]
    bad = [n for n in names if n not in SCHEDULERS]
    if bad:
        raise ConfigError(f"unknown scheduler {bad[0]!r}: must be {', '.join(SCHEDULERS)} or none", where="--schedulers")
    return names


def entrypoint(argv: list[str] | None = None) -> int:
    """The console script.  With ``--log-format json``, a usage error (unknown option, missing
    argument) is one JSON line too, so that every line on the log stream parses."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not _json_requested(argv):
        app(args=argv, prog_name="pipeline")
        return 0
    import importlib

    try:
        click_exc = importlib.import_module("typer._click.exceptions")  # typer >= 0.20 carries its own click
    except ImportError:  # pragma: no cover - older typer
        click_exc = importlib.import_module("click.exceptions")

    try:
        code = app(args=argv, prog_name="pipeline", standalone_mode=False)
    except click_exc.UsageError as exc:
        from . import batch

        info = batch.BatchInfo.new()
        log = batch.Log("json", context={"batch": info.id, "host": info.host})
        log.event("error", f"usage: {exc.format_message()}", level="error", exit_code=int(ExitCode.USER_ERROR))
        sys.exit(int(ExitCode.USER_ERROR))
    except typer.Exit as exc:  # typer's own (click's Exit in older typer); typer._click has none
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(int(ExitCode.INTERRUPTED))
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    entrypoint()
