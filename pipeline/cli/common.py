"""What every ``pipeline`` command shares: the process state (``--debug``, the command's log) and
the CLI boundary, where a user error becomes one line per problem and its exit code, and any other
exception one line and exit code 1; under ``--debug`` the traceback instead of the line, with the
same exit code."""

from __future__ import annotations

import os
import signal
import sys
import traceback
from typing import Any

import typer

from pipeline.errors import ExitCode, PipelineError, interrupted_message

#: ``debug`` (``--debug``); ``log`` (the command's :class:`~pipeline.batch.runbatch.Log`, once it has one);
#: ``showwarning`` (Python's warning printer while JSON logging replaces it); ``process``: this is
#: the console script's own process (see :func:`end_quietly`)
state: dict[str, Any] = {"debug": False}


def say(message: str, code: int) -> None:
    """A final error line: a JSON event when the command logs JSON, else text on stderr."""
    log = state.get("log")
    if log is not None and log.fmt == "json":
        log.event("error", message, level="error", exit_code=code)
    else:
        typer.echo(message, err=True)


def _debug_exit(exc: BaseException, code: int) -> None:
    """Under ``--debug``: the traceback on stderr, then the exit code the error has without it."""
    if state["debug"]:
        typer.echo("".join(traceback.format_exception(exc)).rstrip(), err=True)
        raise typer.Exit(code)


def _fail(exc: BaseException) -> None:
    _debug_exit(exc, int(exc.exit_code) if isinstance(exc, PipelineError) else int(ExitCode.FAILURE))
    if isinstance(exc, PipelineError):
        for line in exc.lines:  # every problem, one line each
            say(f"error: {line}", int(exc.exit_code))
        raise typer.Exit(int(exc.exit_code))
    say(f"internal error: {exc.__class__.__name__}: {exc} (rerun with --debug for the traceback)", int(ExitCode.FAILURE))
    raise typer.Exit(int(ExitCode.FAILURE))


def guard(fn, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` at the CLI boundary: errors become lines and exit codes."""
    try:
        return fn(*args, **kwargs)
    except typer.Exit:
        raise
    except KeyboardInterrupt as exc:
        _debug_exit(exc, int(ExitCode.INTERRUPTED))
        say(interrupted_message(exc), int(ExitCode.INTERRUPTED))
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    except Exception as exc:  # noqa: BLE001 - the CLI boundary
        _fail(exc)


def end_quietly(code: int) -> None:
    """Once a command's work is done and its exit code decided: a SIGTERM/SIGINT during the
    process's teardown (the interpreter joining threads, closing the cluster's leftovers) says so
    in one line and ends the process at once with that exit code, instead of killing it by the
    signal with no word (its output is complete).  Only in the console script's own process."""
    if not state.get("process") or state.get("ending"):
        return
    state["ending"] = True
    log = state.get("log")

    def _late(signum: int, frame: Any) -> None:
        message = f"{signal.Signals(signum).name} received after the command finished; its work is complete (exit code {code})"
        try:
            if log is not None and log.fmt == "json":
                log.event("warning", message, level="warning", exit_code=code)
            else:
                sys.stdout.flush()
                print(f"warning: {message}", file=sys.stderr, flush=True)
        finally:
            os._exit(code)

    signal.signal(signal.SIGTERM, _late)
    signal.signal(signal.SIGINT, _late)
