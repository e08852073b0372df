"""The one user-error hierarchy, and the process exit codes the CLI maps errors to.

A :class:`PipelineError` is something the user can act on (a bad config, a missing array, an
output that would be overwritten).  Its message is a single line that names the offending config
key, file or array.  Anything else escaping the library is an internal failure.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence


class ExitCode(enum.IntEnum):
    """Exit codes of the ``pipeline`` command (documented in the README)."""

    OK = 0
    FAILURE = 1  #: runtime or internal failure (traceback with --debug)
    USER_ERROR = 2  #: bad config, bad input, refused output: nothing was written
    LOCKED = 3  #: another run holds the output's lock
    INTERRUPTED = 4  #: stopped by SIGTERM/SIGINT; what was done is kept, a rerun resumes
    NOT_READY = 5  #: an input is not ready yet (marker file absent, chunks still arriving): retry later
    UNAVAILABLE = 6  #: the dask scheduler cannot be reached, or no worker joined in time: retry later


#: at most this many problems of one config are listed (then a count of the rest)
MAX_PROBLEMS = 12


class PipelineError(ValueError):
    """A user error: bad config, bad input or a refused output.

    A :class:`ValueError`, so that ``except ValueError`` around a library call catches it.

    ``where`` names what is wrong (a dotted config key such as ``window.size``, a file, or an
    array); it is prefixed to the message so that the one-line error is actionable.
    """

    exit_code: ExitCode = ExitCode.USER_ERROR

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.message = message
        self.where = where
        text = f"{where}: {message}" if where else message
        if not text.isprintable():  # one line, whatever a user's key or value contains
            text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
        super().__init__(text)
        #: one line per problem (the CLI prints each); usually just the one
        self.lines: tuple[str, ...] = (text,)

    @classmethod
    def several(cls, problems: Sequence[tuple[str | None, str]]) -> PipelineError:
        """One error for several ``(where, message)`` problems: the first is its ``where`` and
        ``message``, ``lines`` holds every problem on its own line, and ``str()`` joins them
        with ``"; "`` (still one line, for logs and the Python API)."""
        first = cls(problems[0][1], where=problems[0][0])
        if len(problems) > 1:
            shown = [str(cls(m, where=w)) for w, m in problems[:MAX_PROBLEMS]]
            if len(problems) > MAX_PROBLEMS:
                shown.append(f"... and {len(problems) - MAX_PROBLEMS} more problems")
            first.lines = tuple(shown)
            first.args = ("; ".join(first.lines),)
        return first


class ConfigError(PipelineError):
    """The config (YAML, keys, values or the expression) is invalid."""


class ArgumentTypeError(ConfigError, TypeError):
    """A Python API argument has the wrong type (``size=3.5``, ``reduce=np.mean``); also a
    :class:`TypeError`."""


class InputError(PipelineError):
    """An input store or array is missing, unreadable or incompatible."""


class OutputError(PipelineError):
    """The output cannot be written as asked (exists, overlaps an input, ...)."""


class LockedError(PipelineError):
    """Another run holds the lock on the output."""

    exit_code = ExitCode.LOCKED


class WriteError(PipelineError):
    """Writing the output failed (disk full, quota): what was done is kept, a rerun resumes."""

    exit_code = ExitCode.FAILURE


class NotReadyError(PipelineError):
    """An input is not ready yet (its ``ready_marker`` is absent, or it has unstored chunks under
    ``unstored_chunks: not-ready``): nothing was written; a later retry may succeed."""

    exit_code = ExitCode.NOT_READY


class UnavailableError(PipelineError):
    """The cluster is not there (yet): the scheduler cannot be reached, or no worker joined it in
    time.  Nothing was written; a later retry may succeed."""

    exit_code = ExitCode.UNAVAILABLE


def interrupted_message(exc: BaseException) -> str:
    """What an interrupted run says: by which signal, and how many blocks are kept (from the
    ``pipeline_result`` that :func:`pipeline.runner.runconfig.run` attaches once the output is open)."""
    res = getattr(exc, "pipeline_result", None)
    kept = f"; {res.skipped + res.computed} of {res.blocks} blocks are done and kept" if res is not None else ""
    why = f" by {exc.args[0]}" if exc.args else ""
    return f"interrupted{why}{kept}; rerun the same config to resume"
