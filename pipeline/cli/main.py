"""The ``pipeline`` command: thin Typer wrappers that call the library and print.

A user error (:class:`PipelineError`) becomes one line on stderr and its exit code (2 for a bad
config or input); any other exception is an internal failure: one line and exit code 1, with the
traceback under ``--debug``.

This module holds the Typer app, its global options and the console script; the commands live in
:mod:`pipeline.cli.run` (``run``, ``validate``), :mod:`pipeline.cli.store` (``verify``, ``info``) and
:mod:`pipeline.cli.bench` (``bench``), :mod:`pipeline.cli.convert` (``convert``), the error boundary they share in :mod:`pipeline.cli.common`.
"""

from __future__ import annotations

import enum
import sys
from typing import Annotated

import typer

from pipeline.cli.bench import bench
from pipeline.cli.common import end_quietly, state
from pipeline.cli.convert import convert
from pipeline.cli.preview import preview
from pipeline.cli.run import run, validate
from pipeline.cli.store import info, verify
from pipeline.cli.warmup import warmup
from pipeline.errors import ExitCode

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,  # click's help: paragraphs rewrapped to the terminal, no <bool> beside flags
    help="Exact moving-window reductions of pointwise expressions over huge Zarr images.",
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from pipeline._version import version

        typer.echo(f"pipeline {version()}")
        raise typer.Exit()


class LogLevel(enum.StrEnum):
    """``--log-level``: the least severe records of the ``pipeline`` loggers shown on stderr."""

    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_version, is_eager=True)
    ] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="Show the pipeline.* loggers' records: -v info, -vv debug.")] = 0,
    log_level: Annotated[LogLevel | None, typer.Option("--log-level", help="Show the pipeline.* loggers' records at this level and above.")] = None,
) -> None:
    from pipeline.batch.log import configure

    state["debug"] = debug
    chosen = log_level.value if log_level is not None else {0: None, 1: "info"}.get(verbose, "debug")
    configure(chosen, "json" if _json_requested(sys.argv[1:]) else "text")


# the commands, in the order ``pipeline --help`` lists them
for _command in (run, verify, validate, info, convert, preview, bench, warmup):  # the first paragraph whole in the list
    app.command(short_help=" ".join((_command.__doc__ or "").split("\n\n")[0].split()))(_command)


def _json_requested(argv: list[str]) -> bool:
    for i, arg in enumerate(argv):
        if arg == "--log-format=json" or (arg == "--log-format" and argv[i + 1 : i + 2] == ["json"]):
            return True
    return False


def entrypoint(argv: list[str] | None = None) -> int:
    """The console script.  With ``--log-format json``, a usage error (unknown option, missing
    argument) is one JSON line too, so that every line on the log stream parses.  Once the
    command is done, a SIGTERM/SIGINT no longer kills the process mid-teardown
    (:func:`~pipeline.cli.common.end_quietly`; only for the process's own command line, not for
    an in-process call with ``argv``)."""
    state["process"] = argv is None
    try:
        return _entry(argv)
    except SystemExit as exc:
        end_quietly(exc.code if isinstance(exc.code, int) else int(ExitCode.FAILURE) if exc.code else 0)
        raise


def _entry(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not _json_requested(argv):
        app(args=argv, prog_name="pipeline")
        return 0
    try:
        code = app(args=argv, prog_name="pipeline", standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(int(ExitCode.INTERRUPTED))
    except Exception as exc:
        if not _usage_error(exc):
            raise
        from pipeline.batch import runbatch

        batch_info = runbatch.BatchInfo.new()
        log = runbatch.Log("json", context={"batch": batch_info.id, "host": batch_info.host})
        log.event("error", f"usage: {exc.format_message()}", level="error", exit_code=int(ExitCode.USER_ERROR))  # type: ignore[attr-defined]
        sys.exit(int(ExitCode.USER_ERROR))
    sys.exit(code if isinstance(code, int) else 0)


def _usage_error(exc: Exception) -> bool:
    """Whether ``exc`` is a usage error of the command line (an unknown option, a missing
    argument, a bad value): click's usage errors, which Typer does not re-export, are the
    exceptions with ``format_message()`` and exit code 2."""
    return callable(getattr(exc, "format_message", None)) and getattr(exc, "exit_code", None) == 2


if __name__ == "__main__":  # pragma: no cover
    entrypoint()
