"""Batches of configs for scheduled runs: one record per config, a summary, a JSON report.

One failing config does not stop the others (an interruption does: it stops the batch).  Each
record says what a scheduler or a dashboard needs: status (``done``, ``up-to-date``, ``failed``,
``interrupted``), output, seconds, pixels, chunks computed and skipped, the error message and the
exit code.  Log lines go to stderr as text or as JSON lines (``--log-format json``) for shippers.
"""

from __future__ import annotations

import datetime as _dt
import glob
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from .errors import ConfigError, ExitCode, PipelineError


@dataclass
class Record:
    config: str
    status: str  #: done | up-to-date | failed | interrupted
    exit_code: int
    output: str | None = None
    seconds: float = 0.0
    pixels: int | None = None
    chunks_computed: int | None = None
    chunks_skipped: int | None = None
    error: str | None = None


class Log:
    """Events on a stream, as readable lines or JSON lines."""

    def __init__(self, fmt: str = "text", *, out: TextIO | None = None, err: TextIO | None = None, quiet: bool = False) -> None:
        if fmt not in ("text", "json"):
            raise ConfigError(f"must be 'text' or 'json', got {fmt!r}", where="--log-format")
        self.fmt = fmt
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self.quiet = quiet

    def event(self, event: str, message: str, *, level: str = "info", **fields: Any) -> None:
        """JSON: every event is one JSON object per line on stderr.  Text: results ("done",
        "summary") on stdout, progress and errors on stderr."""
        if self.quiet and event == "progress":
            return
        if self.fmt == "json":
            now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")
            line = json.dumps({"time": now, "level": level, "event": event, "message": message, **fields}, default=str)
            stream = self.err
        else:
            line = message if level == "info" else f"{level}: {message}"
            stream = self.out if event in ("done", "summary") else self.err
        print(line, file=stream, flush=True)


def expand_paths(patterns: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Config arguments, with glob patterns expanded (for callers without a shell, such as cron
    entries that quote them or workflow engines); a pattern matching nothing is kept as given so
    that its run fails with 'config file not found'."""
    out: list[str] = []
    for p in map(str, patterns):
        if any(ch in p for ch in "*?[") and not os.path.exists(p):
            matches = sorted(glob.glob(p))
            out.extend(matches or [p])
        else:
            out.append(p)
    return out


def _progress(log: Log, config: str) -> Callable[[int, int], None]:
    t0 = time.monotonic()
    state = {"last": 0.0}

    def report(done: int, total: int) -> None:
        now = time.monotonic() - t0
        if now < 2 or (now - state["last"] < 1 and done < total):
            return
        state["last"] = now
        log.event(
            "progress",
            f"  {done}/{total} blocks ({100 * done / max(total, 1):.0f}%) in {now:.1f} s",
            config=config,
            done=done,
            total=total,
        )

    return report


def _notify(log: Log, config: str) -> Callable[[str], None]:
    """Messages from the scheduler session (address, dashboard link, warnings) as log events."""

    def notify(message: str) -> None:
        if message.startswith("warning: "):
            log.event("warning", message[len("warning: ") :], level="warning", config=config)
        else:
            log.event("scheduler", message, config=config)

    return notify


def run_one(
    config: str,
    *,
    overrides: Sequence[str] = (),
    variables: Mapping[str, str] | None = None,
    overwrite: bool = False,
    log: Log,
    debug: bool = False,
    force: bool = False,
) -> Record:
    """Run one config and describe the outcome; user errors and failures become records."""
    from . import runner
    from .config import load_config

    t0 = time.perf_counter()
    try:
        cfg = load_config(config, overrides=overrides, variables=variables)
        if overwrite:
            cfg = cfg.model_copy(update={"output": cfg.output.model_copy(update={"overwrite": True})})
        result = runner.run(cfg, progress=_progress(log, config), notify=_notify(log, config), force=force)
    except KeyboardInterrupt as exc:
        part = getattr(exc, "pipeline_result", None)  # set by runner.run once the output was open
        why = f" by {exc.args[0]}" if exc.args else ""
        kept = f"; {part.skipped + part.computed} of {part.blocks} blocks are done and kept" if part is not None else ""
        return Record(
            config,
            "interrupted",
            int(ExitCode.INTERRUPTED),
            seconds=time.perf_counter() - t0,
            error=f"interrupted{why}{kept}; rerun the same config to resume",
            **_counts(part),
        )
    except PipelineError as exc:
        if debug:
            raise
        part = getattr(exc, "pipeline_result", None)
        return Record(config, "failed", int(exc.exit_code), seconds=time.perf_counter() - t0, error=str(exc), **_counts(part))
    except Exception as exc:  # noqa: BLE001 - the batch boundary: one failure must not stop the rest
        if debug:
            raise
        part = getattr(exc, "pipeline_result", None)
        return Record(
            config,
            "failed",
            int(ExitCode.FAILURE),
            seconds=time.perf_counter() - t0,
            error=f"internal error: {exc.__class__.__name__}: {exc} (rerun with --debug for the traceback)",
            **_counts(part),
        )
    status = getattr(result, "status", "done")
    computed = getattr(result, "computed", result.blocks)
    skipped = getattr(result, "skipped", 0)
    rec = Record(
        config,
        status,
        int(ExitCode.OK),
        output=f"{result.output}:{result.array}",
        seconds=time.perf_counter() - t0,
        pixels=math.prod(result.shape),
        chunks_computed=computed,
        chunks_skipped=skipped,
    )
    log.event("done", result.summary(), config=config, **_fields(rec))
    return rec


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


def batch_exit_code(records: Sequence[Record]) -> int:
    """0 when every config succeeded; otherwise the most telling failure: interrupted (4) before
    runtime failure (1) before locked (3) before config error (2)."""
    codes = {r.exit_code for r in records}
    for code in (ExitCode.INTERRUPTED, ExitCode.FAILURE, ExitCode.LOCKED, ExitCode.USER_ERROR):
        if int(code) in codes:
            return int(code)
    return max(codes, default=0)


def summary_table(records: Sequence[Record]) -> str:
    rows = [("config", "status", "seconds", "chunks (computed/skipped)", "output / error")]
    for r in records:
        chunks = "-" if r.chunks_computed is None else f"{r.chunks_computed}/{r.chunks_skipped}"
        rows.append((r.config, r.status, f"{r.seconds:.2f}", chunks, r.error or r.output or ""))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4] for row in rows]
    return "\n".join(lines)


def write_report(path: str | os.PathLike[str], records: Sequence[Record]) -> None:
    """The machine-readable record of a batch, written atomically (temp file + rename)."""
    from . import __version__

    doc = {
        "pipeline_version": __version__,
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "exit_code": batch_exit_code(records),
        "runs": [asdict(r) for r in records],
    }
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, p)
    except OSError as e:
        raise ConfigError(f"cannot write the report: {e.strerror or e}", where=str(p)) from None


def run_batch(
    configs: Sequence[str | os.PathLike[str]],
    *,
    overrides: Sequence[str] = (),
    variables: Mapping[str, str] | None = None,
    overwrite: bool = False,
    log: Log,
    debug: bool = False,
    force: bool = False,
) -> list[Record]:
    """Run each config in turn; an interruption stops the batch, anything else does not."""
    records = []
    for config in expand_paths(configs):
        rec = run_one(config, overrides=overrides, variables=variables, overwrite=overwrite, log=log, debug=debug, force=force)
        if rec.status in ("failed", "interrupted"):
            log.event("error", rec.error or rec.status, level="error", config=config, **_fields(rec))
        records.append(rec)
        if rec.status == "interrupted":
            break
    return records
