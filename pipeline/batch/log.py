"""A batch's log: events as readable lines or JSON lines (each with the batch id and host), and
the progress and scheduler messages that run items report through, and the time stamps."""

from __future__ import annotations

import datetime as _dt
import json
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from pipeline.errors import ConfigError


def utc_now() -> str:
    """The current UTC time, to the second (ISO 8601)."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


class Log:
    """Events on a stream, as readable lines or JSON lines."""

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

    def event(self, event: str, message: str, *, level: str = "info", **fields: Any) -> None:
        """JSON: every event is one JSON object per line on stderr.  Text: results ("done",
        "summary", "verdict") on stdout, progress and errors on stderr."""
        if self.quiet and event == "progress":
            return
        if self.fmt == "json":
            now = _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")
            line = json.dumps({"time": now, "level": level, "event": event, "message": message, **self.context, **fields}, default=str)
            stream = self.err
        else:
            line = message if level == "info" else "\n".join(f"{level}: {m}" for m in message.split("\n"))
            stream = self.out if event in ("done", "summary", "verdict") else self.err
        print(line, file=stream, flush=True)


def progress(log: Log, config: str) -> Callable[[int, int], None]:
    t0 = time.monotonic()
    state: dict[str, Any] = {"last": 0.0, "base": None}

    def report(done: int, total: int) -> None:
        now = time.monotonic() - t0
        if state["base"] is None:  # the rate is measured from the first report on (a resumed
            state["base"] = (done, now)  # run starts with the blocks already done)
        if now < 2 or (now - state["last"] < 1 and done < total):
            return
        state["last"] = now
        d0, s0 = state["base"]
        eta = None
        if done < total and done > d0:
            eta = (now - s0) / (done - d0) * (total - done)
        left = f", about {_duration(eta)} left" if eta is not None else ""
        log.event(
            "progress",
            f"  {done}/{total} block{'s' if total != 1 else ''} ({100 * done / max(total, 1):.0f}%) in {now:.1f} s{left}",
            config=config,
            done=done,
            total=total,
            **({"eta_seconds": round(eta, 1)} if eta is not None else {}),
        )

    return report


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

