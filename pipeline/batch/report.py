"""What a batch leaves behind: one :class:`Record` per config and set of values, the batch's
exit code, the summary table, the JSON report (with its retention) and Prometheus metrics."""

from __future__ import annotations

import contextlib
import datetime as _dt
import fnmatch
import json
import os
import socket
import stat
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.batch.log import utc_now
from pipeline.batch.variables import expand_paths
from pipeline.errors import ConfigError, ExitCode, OutputError
from pipeline.storage import safety


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
    runtime failure (1) before cluster unavailable (6) before locked (3) before not ready (5)
    before config error (2) (the codes for which a retry may help come first)."""
    codes = {r.exit_code for r in records}
    order = (ExitCode.INTERRUPTED, ExitCode.FAILURE, ExitCode.UNAVAILABLE, ExitCode.LOCKED, ExitCode.NOT_READY, ExitCode.USER_ERROR)
    for code in order:
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
    from pipeline._version import version

    counts: dict[str, int] = {}
    for r in records:
        counts[r.status] = counts.get(r.status, 0) + 1
    doc: dict[str, Any] = {"format": REPORT_FORMAT, "pipeline_version": version()}
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
#: the marker inside every report this tool writes (its ``format`` key): retention deletes, and
#: ``latest.json`` replaces, only files that carry it (a config cannot: its keys are fixed)
REPORT_FORMAT = "pipeline-batch-report/1"
#: the keys of a report written before the marker (exactly these, ``batch``/``host``/``started`` optional)
_LEGACY_KEYS = frozenset({"pipeline_version", "finished", "dry_run", "exit_code", "counts", "not_started", "runs"})
_REPORT_MAX_BYTES = 64 << 20  # a bigger file is no report of ours (and is not read whole)


def is_report(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a report this tool wrote: a plain file (no symlink) holding a JSON
    object with the marker :data:`REPORT_FORMAT` (or a report of an earlier version: exactly
    its keys)."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _REPORT_MAX_BYTES:
            return False
        with open(path, "rb") as f:
            doc = json.loads(f.read(_REPORT_MAX_BYTES + 1))
    except (OSError, ValueError, RecursionError):
        return False
    if not isinstance(doc, dict):
        return False
    if doc.get("format") == REPORT_FORMAT:
        return True
    return _LEGACY_KEYS <= doc.keys() <= _LEGACY_KEYS | {"batch", "host", "started"} and isinstance(doc["runs"], list)


def latest_path(report: str | os.PathLike[str]) -> Path:
    """Where ``--keep-reports`` publishes the newest report: ``latest.json`` beside it."""
    return Path(report).parent / "latest.json"


def check_latest(report: str | os.PathLike[str]) -> None:
    """Refuse to replace a ``latest.json`` beside ``report`` that this tool did not write."""
    latest = latest_path(report)
    if os.path.lexists(latest) and not is_report(latest):
        raise OutputError(f"{latest} exists and is not a report written by pipeline; refusing to replace it (move it away)", where="--keep-reports")


def publish_report(path: str | os.PathLike[str], keep: int | None, protected: Collection[str] = ()) -> list[Path]:
    """After ``path`` was written: copy it to ``latest.json`` beside it (refused where that is not
    a report of ours) and, with ``keep``, delete the oldest reports in that folder beyond the
    newest ``keep``: files named like :data:`REPORT_PATTERN` that carry the marker (see
    :func:`is_report`), never ``path`` nor anything at or inside ``protected`` (the batch's
    configs, inputs and outputs).  Returns the deleted files."""
    p = Path(path)
    check_latest(p)
    _write_atomic(latest_path(p), p.read_text(encoding="utf-8"), what="latest.json")
    if keep is None:
        return []
    spared = [Path(q).resolve() for q in [*protected, str(p)]]
    reports = sorted(
        (q for q in p.parent.iterdir() if fnmatch.fnmatchcase(q.name, REPORT_PATTERN) and is_report(q)),
        key=lambda q: (q.stat().st_mtime, q.name),
    )
    old = [q for q in reports[: max(0, len(reports) - keep)] if not any(safety.overlaps(q.resolve(), s) for s in spared)]
    for q in old:
        q.unlink(missing_ok=True)
    return old


def metrics_text(records: Sequence[Record], info: BatchInfo | None = None) -> str:
    """The batch in the Prometheus text format (for node_exporter's textfile collector), written
    by ``prometheus_client``: per config and set of values its duration, pixels, blocks computed
    and skipped and exit code (labels ``config``, ``status``, ``var_<NAME>``); the batch's exit
    code and finish time (label ``host``)."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    series = [
        ("pipeline_run_seconds", "Wall-clock seconds of the run", "seconds"),
        ("pipeline_run_pixels", "Output pixels of the run", "pixels"),
        ("pipeline_run_blocks_computed", "Blocks computed by the run", "chunks_computed"),
        ("pipeline_run_blocks_skipped", "Blocks already done (resume or up to date)", "chunks_skipped"),
        ("pipeline_run_exit_code", "Exit code of the run (0 ok, 1 failure, 2 user error, 3 locked, 4 interrupted, 5 not ready, 6 cluster unavailable)", "exit_code"),
    ]
    registry = CollectorRegistry()
    names = sorted({k for r in records for k in r.variables})
    labels = ["config", "status", *(f"var_{k}" for k in names)]
    for metric, help_, attr in series:
        gauge = Gauge(metric, help_, labels, registry=registry)
        for r in records:
            value = getattr(r, attr)
            if value is not None:
                gauge.labels(r.config, r.status, *(r.variables.get(k, "") for k in names)).set(value)
    host = ["host"] if info is not None else []
    batch = [
        ("pipeline_batch_exit_code", "Exit code of the last batch", batch_exit_code(records)),
        ("pipeline_batch_finished_timestamp_seconds", "When the last batch finished (Unix time)", round(time.time())),
    ]
    for metric, help_, value in batch:
        gauge = Gauge(metric, help_, host, registry=registry)
        (gauge.labels(info.host) if info is not None else gauge).set(value)
    return generate_latest(registry).decode("utf-8")


def write_metrics(path: str | os.PathLike[str], records: Sequence[Record], info: BatchInfo | None = None) -> None:
    """:func:`metrics_text`, written atomically (the textfile collector must never read half a file)."""
    _write_atomic(path, metrics_text(records, info), what="the metrics")


def check_files(
    configs: Sequence[str | os.PathLike[str]],
    *,
    report: str | os.PathLike[str] | None = None,
    metrics: str | os.PathLike[str] | None = None,
    keep_reports: int | None = None,
    overrides: Sequence[str] = (),
    variables: Mapping[str, str] | None = None,
    var_sets: Sequence[Mapping[str, str]] = ({},),
) -> dict[str, str]:
    """Refuse, before any run, a report or metrics path that is a config, an input or an output of
    one (each config read as every set of batch values resolves it, as far as it loads), or
    whose folder is not writable; a metrics path that is the report or its ``latest.json``; and
    a ``latest.json`` of someone else (with ``keep_reports``).  Returns the protected paths
    (label -> path)."""
    protected = protected_paths(configs, overrides=overrides, variables=variables, var_sets=var_sets)
    if report is not None:
        safety.check_batch_file(report, protected, "--report")
        if keep_reports is not None:
            check_latest(report)
    if metrics is not None:
        others = dict(protected)
        if report is not None:
            others[f"the report {report}"] = str(report)
            if keep_reports is not None:
                others["latest.json"] = str(latest_path(report))
        safety.check_batch_file(metrics, others, "--metrics")
    return protected


def protected_paths(
    configs: Sequence[str | os.PathLike[str]],
    *,
    overrides: Sequence[str] = (),
    variables: Mapping[str, str] | None = None,
    var_sets: Sequence[Mapping[str, str]] = ({},),
) -> dict[str, str]:
    """Label -> local path of every config, and of the inputs and output of each config as each
    set of batch values resolves it (the values as a run takes them: over ``variables``)."""
    from pipeline.config.load import load_config
    from pipeline.storage import io

    base = os.environ if variables is None else variables
    protected: dict[str, str] = {}
    for config in expand_paths(configs):
        protected[f"config {config}"] = str(config)
        for vs in var_sets or ({},):
            at = f"{config}" + "".join(f" {k}={v}" for k, v in vs.items())
            with contextlib.suppress(Exception):  # a bad config is reported by its own run
                cfg = load_config(config, overrides=overrides, variables={**base, **vs}, confine=vs.keys())
                for name, spec in cfg.inputs.items():
                    if io.is_local(spec.path):
                        protected[f"inputs.{name} of {at}"] = io.local_path(spec.path)
                if io.is_local(cfg.output.path):
                    protected[f"the output of {at}"] = io.local_path(cfg.output.path)
    return protected
