"""The ``pipeline`` command: thin Typer wrappers that call the library and print.

A user error (:class:`PipelineError`) becomes one line on stderr and its exit code (2 for a bad
config or input); any other exception is an internal failure: one line and exit code 1, with the
traceback under ``--debug``.

This module holds the Typer app, its global options and the console script; the commands live in
:mod:`pipeline.cli.run` (``run``, ``validate``), :mod:`pipeline.cli.store` (``verify``, ``info``) and
:mod:`pipeline.cli.bench` (``bench``), :mod:`pipeline.cli.convert` (``convert``), the error boundary they share in :mod:`pipeline.cli.common`.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from pipeline.cli.bench import bench
from pipeline.cli.common import end_quietly, state
from pipeline.cli.convert import convert
from pipeline.cli.run import run, validate
from pipeline.cli.store import info, verify
from pipeline.errors import ExitCode

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Exact moving-window reductions of pointwise expressions over huge Zarr images.",
    pretty_exceptions_enable=False,
)


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


def _version(value: bool) -> None:
    if value:
        from pipeline._version import version

        typer.echo(f"pipeline {version()}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_version, is_eager=True)
    ] = False,
) -> None:
    state["debug"] = debug


# the commands, in the order ``pipeline --help`` lists them
for _command in (run, verify, validate, info, convert, bench):
    app.command()(_command)


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
    import importlib

    try:
        click_exc = importlib.import_module("typer._click.exceptions")  # typer >= 0.20 carries its own click
    except ImportError:  # pragma: no cover - older typer
        click_exc = importlib.import_module("click.exceptions")

    try:
        code = app(args=argv, prog_name="pipeline", standalone_mode=False)
    except click_exc.UsageError as exc:
        from pipeline.batch import runbatch

        batch_info = runbatch.BatchInfo.new()
        log = runbatch.Log("json", context={"batch": batch_info.id, "host": batch_info.host})
        log.event("error", f"usage: {exc.format_message()}", level="error", exit_code=int(ExitCode.USER_ERROR))
        sys.exit(int(ExitCode.USER_ERROR))
    except typer.Exit as exc:  # typer's own (click's Exit in older typer); typer._click has none
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(int(ExitCode.INTERRUPTED))
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    entrypoint()
