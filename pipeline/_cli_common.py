"""What every ``pipeline`` command shares: the process state (``--debug``, the command's log) and
the CLI boundary, where a user error becomes one line per problem and its exit code, and any other
exception one line and exit code 1 (the traceback under ``--debug``)."""

from __future__ import annotations

from typing import Any

import typer

from .errors import ExitCode, PipelineError, interrupted_message

#: ``debug`` (``--debug``); ``log`` (the command's :class:`~pipeline.batch.Log`, once it has one);
#: ``showwarning`` (Python's warning printer while JSON logging replaces it)
state: dict[str, Any] = {"debug": False}


def say(message: str, code: int) -> None:
    """A final error line: a JSON event when the command logs JSON, else text on stderr."""
    log = state.get("log")
    if log is not None and log.fmt == "json":
        log.event("error", message, level="error", exit_code=code)
    else:
        typer.echo(message, err=True)


def _fail(exc: BaseException) -> None:
    if state["debug"]:
        raise exc
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
        if state["debug"]:
            raise
        say(interrupted_message(exc), int(ExitCode.INTERRUPTED))
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    except Exception as exc:  # noqa: BLE001 - the CLI boundary
        _fail(exc)
