"""What a batch leaves behind: one :class:`Record` per config and set of values, the batch's
exit code, the summary table, the JSON report (with its retention) and Prometheus metrics."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import safety
from ._batch_log import utc_now
from ._batch_vars import expand_paths
from .errors import ConfigError, ExitCode


@dataclass
class Record:
    config: str
    status: str  #: done | up-to-date | failed | locked | not-ready | interrupted | not-started (or a dry-run verdict)
    exit_code: int
    output: str | None = None
    seconds: float = 0.0
    pixels: int | None = None
    chunks_computed: int | None = None
    chunks_skipped: int | None = None
    error: str | None = None
    variables: dict[str, str] = field(default_factory=dict)  #: the batch's template values for this item
    unstored_chunks: dict[str, int] | None = None  #: input name -> unstored chunks (rule ``warn``)
    started: str | None = None  #: UTC time this item started


@dataclass
class BatchInfo:
    """What identifies a batch in its report, metrics and log lines."""

    id: str
    host: str
    started: str

    @classmethod
    def new(cls) -> BatchInfo:
        """Batch id from ``PIPELINE_BATCH_ID`` (set by workflows/pipeline-batch.sh, so that its own
        lines and pipeline's share it), else the start time and process id."""
        now = _dt.datetime.now(_dt.UTC)
        bid = os.environ.get("PIPELINE_BATCH_ID") or f"{now:%Y%m%dT%H%M%SZ}-{os.getpid()}"
        return cls(id=bid, host=socket.gethostname(), started=now.isoformat(timespec="seconds"))


def batch_exit_code(records: Sequence[Record]) -> int:
    """0 when every config succeeded; otherwise the most telling failure: interrupted (4) before
    runtime failure (1) before locked (3) before not ready (5) before config error (2) (the codes
    for which a retry may help come first)."""
    codes = {r.exit_code for r in records}
    for code in (ExitCode.INTERRUPTED, ExitCode.FAILURE, ExitCode.LOCKED, ExitCode.NOT_READY, ExitCode.USER_ERROR):
        if int(code) in codes:
            return int(code)
    return max(codes, default=0)


def summary_table(records: Sequence[Record]) -> str:
    with_vars = any(r.variables for r in records)
    rows = [("config", "status", "seconds", "chunks (computed/skipped)", "output / error")]
    for r in records:
        chunks = "-" if r.chunks_computed is None else f"{r.chunks_computed}/{r.chunks_skipped}"
        name = r.config + ("".join(f" {k}={v}" for k, v in r.variables.items()) if with_vars else "")
        rows.append((name, r.status, f"{r.seconds:.2f}", chunks, r.error or r.output or ""))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4] for row in rows]
    return "\n".join(lines)


def report_doc(records: Sequence[Record], info: BatchInfo | None = None, *, dry_run: bool = False) -> dict[str, Any]:
    """The batch report: when, where, what, and one record per config and set of values."""
    from . import __version__

    counts: dict[str, int] = {}
    for r in records:
        counts[r.status] = counts.get(r.status, 0) + 1
    doc: dict[str, Any] = {"pipeline_version": __version__}
    if info is not None:
        doc.update(batch=info.id, host=info.host, started=info.started)
    doc.update(
        finished=utc_now(),
        dry_run=dry_run,
        exit_code=batch_exit_code(records),
        counts=counts,
        not_started=[{"config": r.config, "variables": r.variables} for r in records if r.status == "not-started"],
        runs=[asdict(r) for r in records],
    )
    return doc


def write_report(
    path: str | os.PathLike[str], records: Sequence[Record], info: BatchInfo | None = None, *, dry_run: bool = False
) -> None:
    """The machine-readable record of a batch, written atomically (temp file + rename)."""
    _write_atomic(path, json.dumps(report_doc(records, info, dry_run=dry_run), indent=2) + "\n", what="the report")


def _write_atomic(path: str | os.PathLike[str], text: str, *, what: str) -> None:
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        safety.atomic_write(p, text.encode("utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot write {what}: {e.strerror or e}", where=str(p)) from None


#: reports that retention (``--keep-reports``) may delete: the names workflows/pipeline-batch.sh gives
REPORT_PATTERN = "pipeline-*.json"


def publish_report(path: str | os.PathLike[str], keep: int | None) -> list[Path]:
    """After ``path`` was written: copy it to ``latest.json`` beside it and, with ``keep``, delete
    the oldest reports named like :data:`REPORT_PATTERN` in that folder beyond the newest ``keep``
    (never any other file).  Returns the deleted files."""
    p = Path(path)
    _write_atomic(p.parent / "latest.json", p.read_text(encoding="utf-8"), what="latest.json")
    if keep is None:
        return []
    reports = sorted((q for q in p.parent.glob(REPORT_PATTERN) if q.is_file() and not q.is_symlink()), key=lambda q: (q.stat().st_mtime, q.name))
    old = [q for q in reports[: max(0, len(reports) - keep)] if q != p]
    for q in old:
        q.unlink(missing_ok=True)
    return old


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def metrics_text(records: Sequence[Record], info: BatchInfo | None = None) -> str:
    """The batch in the Prometheus text format (for node_exporter's textfile collector): per
    config and set of values its duration, pixels, blocks computed and skipped and exit code; the
    batch's exit code and finish time."""
    series = [
        ("pipeline_run_seconds", "Wall-clock seconds of the run", "seconds"),
        ("pipeline_run_pixels", "Output pixels of the run", "pixels"),
        ("pipeline_run_blocks_computed", "Blocks computed by the run", "chunks_computed"),
        ("pipeline_run_blocks_skipped", "Blocks already done (resume or up to date)", "chunks_skipped"),
        ("pipeline_run_exit_code", "Exit code of the run (0 ok, 1 failure, 2 user error, 3 locked, 4 interrupted, 5 not ready)", "exit_code"),
    ]
    out = []
    for metric, help_, attr in series:
        out += [f"# HELP {metric} {help_}", f"# TYPE {metric} gauge"]
        for r in records:
            value = getattr(r, attr)
            if value is None:
                continue
            labels = {"config": r.config, "status": r.status, **{f"var_{k}": v for k, v in r.variables.items()}}
            text = ",".join(f'{k}="{_label(str(v))}"' for k, v in labels.items())
            out.append(f"{metric}{{{text}}} {value:.3f}" if isinstance(value, float) else f"{metric}{{{text}}} {value}")
    host = f'{{host="{_label(info.host)}"}}' if info is not None else ""
    out += [
        "# HELP pipeline_batch_exit_code Exit code of the last batch",
        "# TYPE pipeline_batch_exit_code gauge",
        f"pipeline_batch_exit_code{host} {batch_exit_code(records)}",
        "# HELP pipeline_batch_finished_timestamp_seconds When the last batch finished (Unix time)",
        "# TYPE pipeline_batch_finished_timestamp_seconds gauge",
        f"pipeline_batch_finished_timestamp_seconds{host} {time.time():.0f}",
    ]
    return "\n".join(out) + "\n"


def write_metrics(path: str | os.PathLike[str], records: Sequence[Record], info: BatchInfo | None = None) -> None:
    """:func:`metrics_text`, written atomically (the textfile collector must never read half a file)."""
    _write_atomic(path, metrics_text(records, info), what="the metrics")


def check_report(
    report: str | os.PathLike[str],
    configs: Sequence[str | os.PathLike[str]],
    *,
    overrides: Sequence[str] = (),
    variables: Mapping[str, str] | None = None,
) -> None:
    """Refuse, before any run, a report path that is a config, an input or an output of one
    (read as far as each config loads), or whose folder is not writable."""
    from . import io
    from .config import load_config

    protected: dict[str, str] = {}
    for config in expand_paths(configs):
        protected[f"config {config}"] = str(config)
        with contextlib.suppress(Exception):  # a bad config is reported by its own run
            cfg = load_config(config, overrides=overrides, variables=variables)
            for name, spec in cfg.inputs.items():
                if io.is_local(spec.path):
                    protected[f"inputs.{name} of {config}"] = io.local_path(spec.path)
            if io.is_local(cfg.output.path):
                protected[f"the output of {config}"] = io.local_path(cfg.output.path)
    safety.check_report_path(report, protected)

