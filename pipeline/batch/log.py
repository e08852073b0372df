"""A batch's log: events through Python's :mod:`logging` (named loggers per sub-system), written
by the command as readable lines or JSON lines (each with the batch id and host), and the progress
and scheduler messages that run items report through, and the time stamps.

Every event is a :class:`logging.LogRecord` on a named logger (:data:`LOGGERS`: ``pipeline.batch``
for results and progress, ``pipeline.execution`` for the scheduler's messages, ``pipeline.cli``
for errors), so notebooks, Prefect and services that configure :mod:`logging` capture them; the
command's own lines are those records formatted by :class:`TextFormatter` or :class:`JsonFormatter`
(a formatter choice, usable on any handler)."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from pipeline.errors import ConfigError

#: the logger of each event (others: ``pipeline.batch``)
LOGGERS = {"scheduler": "pipeline.execution", "warning": "pipeline.execution", "error": "pipeline.cli"}
#: results, on stdout in text mode (everything else goes to stderr)
RESULTS = frozenset({"done", "summary", "verdict"})
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def utc_now() -> str:
    """The current UTC time, to the second (ISO 8601)."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


class TextFormatter(logging.Formatter):
    """A record as the command prints it: the message, every line prefixed by the level unless info."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno == logging.INFO:
            return message
        return "\n".join(f"{record.levelname.lower()}: {m}" for m in message.split("\n"))


class JsonFormatter(logging.Formatter):
    """A record as one JSON object: ``time`` (UTC, milliseconds), ``level``, ``event``, ``message``,
    then the record's ``fields`` (the batch id, host, config, counts, ...)."""

    def format(self, record: logging.LogRecord) -> str:
        now = _dt.datetime.fromtimestamp(record.created, _dt.UTC).isoformat(timespec="milliseconds")
        doc = {"time": now, "level": record.levelname.lower(), "event": getattr(record, "event", record.name),
               "message": record.getMessage(), **getattr(record, "fields", {})}
        return json.dumps(doc, default=str)


class Log:
    """Events as log records, written to this command's streams as readable lines or JSON lines."""

    def __init__(
        self,
        fmt: str = "text",
        *,
        out: TextIO | None = None,
        err: TextIO | None = None,
        quiet: bool = False,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        if fmt not in ("text", "json"):
            raise ConfigError(f"must be 'text' or 'json', got {fmt!r}", where="--log-format")
        self.fmt = fmt
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self.quiet = quiet
        self.context = dict(context or {})  #: fields of every JSON line (batch id, host)
        self.formatter: logging.Formatter = JsonFormatter() if fmt == "json" else TextFormatter()
        self.console: Any = None  #: the rich Console of a progress bar being shown on ``err``

    def event(self, event: str, message: str, *, level: str = "info", **fields: Any) -> None:
        """JSON: every event is one JSON object per line on stderr.  Text: results ("done",
        "summary", "verdict") on stdout, progress and errors on stderr.  The record then goes on
        to the handlers of its logger (not printed twice: it is marked ``printed``)."""
        if self.quiet and event == "progress":
            return
        logger = logging.getLogger(LOGGERS.get(event, "pipeline.batch"))
        extra = {"event": event, "fields": {**self.context, **fields}, "printed": True}
        record = logger.makeRecord(logger.name, _LEVELS.get(level, logging.INFO), "(pipeline)", 0, message, (), None, extra=extra)
        stream = self.out if self.fmt == "text" and event in RESULTS else self.err
        if self.console is not None and stream is self.err:  # above the progress bar
            self.console.print(self.formatter.format(record), markup=False, highlight=False, soft_wrap=True)
        else:
            print(self.formatter.format(record), file=stream, flush=True)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)


def configure(level: str | None, fmt: str = "text") -> None:
    """``-v``/``--log-level``: show the records of the ``pipeline`` loggers at ``level`` and above
    on stderr (DEBUG shows e.g. ``pipeline.storage.zarrchunks``), formatted as text or JSON; the
    events the command prints itself are not repeated."""
    root = logging.getLogger("pipeline")
    for h in [h for h in root.handlers if getattr(h, "_pipeline_cli", False)]:
        root.removeHandler(h)
        root.setLevel(h._pipeline_before)  # type: ignore[attr-defined]
    if level is None:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler._pipeline_cli = True  # type: ignore[attr-defined]
    handler._pipeline_before = root.level  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(lambda r: not getattr(r, "printed", False))
    root.addHandler(handler)
    root.setLevel(_LEVELS[level])


#: in a log (not a terminal): a progress line at every tenth of the blocks, or after this many seconds
LOG_EVERY_S = 30.0


def progress(log: Log, config: str) -> Progress:
    """The progress callback of one run (``with progress(log, config) as report``)."""
    return Progress(log, config)


class Progress:
    """The progress callback of one run (a context manager: on leaving, a terminal's bar is
    closed).  On a terminal (text format, stderr a TTY): a ``rich`` progress bar with the block
    counts, elapsed time and ETA, from 2 s on.  In a log file or JSON lines: a line at every
    further 10% of the blocks or after :data:`LOG_EVERY_S`.  ``-q``: neither."""

    def __init__(self, log: Log, config: str) -> None:
        self.log, self.config = log, config
        self.t0 = time.monotonic()
        isatty = getattr(log.err, "isatty", None)
        self.terminal = log.fmt == "text" and callable(isatty) and bool(isatty())
        self.last, self.tenth = 0.0, 0
        self.base: tuple[int, float] | None = None  #: blocks done and seconds at the first report
        self.bar: Any = None  #: the rich Progress while it is shown

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic() - self.t0
        if self.base is None:  # the rate is measured from the first report on (a resumed
            self.base = (done, now)  # run starts with the blocks already done)
        if self.log.quiet:
            return
        tenth = 10 * done // max(total, 1)
        if self.terminal:
            due = now - self.last >= 0.2 or done == total
        else:
            due = tenth > self.tenth or now - self.last >= LOG_EVERY_S
        if now < 2 or not due:
            return
        self.last, self.tenth = now, tenth
        d0, s0 = self.base or (done, now)
        eta = (now - s0) / (done - d0) * (total - done) if done < total and done > d0 else None
        if self.terminal:
            self._draw(done, total, now, eta)
            return
        left = f", about {_duration(eta)} left" if eta is not None else ""
        fields: dict[str, Any] = {"eta_seconds": round(eta, 1)} if eta is not None else {}
        self.log.event(
            "progress",
            f"  {done}/{total} block{'s' if total != 1 else ''} ({100 * done / max(total, 1):.0f}%) in {now:.1f} s{left}",
            config=self.config,
            done=done,
            total=total,
            **fields,
        )

    def _draw(self, done: int, total: int, now: float, eta: float | None) -> None:
        """The terminal's bar: started on the first draw, closed when every block is done."""
        if self.bar is None:
            from rich import progress as bars
            from rich.console import Console

            console = Console(file=self.log.err)
            self.bar = bars.Progress(
                bars.TextColumn("  blocks"), bars.BarColumn(), bars.MofNCompleteColumn(), bars.TaskProgressColumn(),
                bars.TextColumn("in {task.fields[elapsed]}{task.fields[eta]}"), console=console, auto_refresh=False,
            )
            self.task = self.bar.add_task("blocks", total=total, elapsed="", eta="")
            self.bar.start()
            self.log.console = console
        left = f", about {_duration(eta)} left" if eta is not None else ""
        self.bar.update(self.task, completed=done, total=total, elapsed=_duration(now), eta=left)
        self.bar.refresh()
        if done == total:
            self.close()

    def close(self) -> None:
        """Stop showing the bar (its last state stays on the terminal)."""
        if self.bar is not None:
            self.bar.stop()
            self.bar, self.log.console = None, None


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``2 h 10 min``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def notify(log: Log, config: str) -> Callable[[str], None]:
    """Messages from the scheduler session (address, dashboard link, warnings) as log events."""

    def notify(message: str) -> None:
        if message.startswith("warning: "):
            log.event("warning", message[len("warning: ") :], level="warning", config=config)
        else:
            log.event("scheduler", message, config=config)

    return notify

