"""Batches of configs for scheduled runs: one record per config and set of variable values, a
summary, a JSON report, Prometheus metrics.

A batch runs every config for every set of template variables (``--var DATE=a,b`` or
``--vars-from``).  One failing item does not stop the others (an interruption does: it stops the
batch, and the items it never reached are recorded as ``not-started``).  Each record says what a
scheduler or a dashboard needs: status (``done``, ``up-to-date``, ``failed``, ``locked``,
``not-ready``, ``interrupted``, ``not-started``; with ``--dry-run``: ``new``, ``up-to-date``,
``would-resume``, ``would-replace``, ``refused``, ``locked``, ``not-ready``), the variable values,
output, seconds, pixels, chunks computed and skipped, unstored input chunks, the error message and
the exit code.  Log lines go to stderr as text or as JSON lines (``--log-format json``, each with
the batch id and host) for shippers.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import glob
import itertools
import json
import math
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from . import safety
from .errors import (
    ConfigError,
    ExitCode,
    LockedError,
    NotReadyError,
    PipelineError,
    interrupted_message,
)


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


def _now() -> str:
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


def _notify(log: Log, config: str) -> Callable[[str], None]:
    """Messages from the scheduler session (address, dashboard link, warnings) as log events."""

    def notify(message: str) -> None:
        if message.startswith("warning: "):
            log.event("warning", message[len("warning: ") :], level="warning", config=config)
        else:
            log.event("scheduler", message, config=config)

    return notify


def variable_sets(
    assignments: Sequence[str] = (), vars_from: str | os.PathLike[str] | None = None
) -> list[dict[str, str]]:
    """The sets of template values a batch runs over.

    ``assignments`` are ``--var NAME=VALUE`` options; a comma-separated value is a list
    (``--var DATE=2026-11-20,2026-11-21``).  ``vars_from`` is a CSV file whose header row names
    the variables and whose every other row is one set (for values containing commas; rows whose
    first cell starts with ``#`` are comments).  Lists and rows combine as a matrix (every
    combination, in order).  A name given twice is an error, never a silent override.  No
    variables: one empty set."""
    from .config import parse_assignment

    axes: list[list[dict[str, str]]] = []
    seen: dict[str, str] = {}
    for text in assignments:
        name, value = parse_assignment(text, option="--var")
        if name in seen:
            raise ConfigError(f"{name} is given twice ({seen[name]!r} and {text!r}); give a list as --var {name}=a,b,c", where="--var")
        seen[name] = text
        axes.append([{name: v} for v in value.split(",")])
    if vars_from is not None:
        axes.append(_read_vars_file(vars_from, seen))
    return [{k: v for part in combo for k, v in part.items()} for combo in itertools.product(*axes)]


def _read_vars_file(path: str | os.PathLike[str], seen: Mapping[str, str]) -> list[dict[str, str]]:
    from ._config_templates import is_variable_name

    where = f"--vars-from {path}"
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
    except FileNotFoundError:
        raise ConfigError("file not found", where=where) from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"cannot read it ({e.__class__.__name__}: {e})", where=where) from None
    if len(rows) < 2:
        raise ConfigError("expected a header row of variable names and at least one row of values", where=where)
    names = [c.strip() for c in rows[0]]
    for name in names:
        if not is_variable_name(name):
            raise ConfigError(f"bad variable name {name!r} in the header row", where=where)
        if name in seen:
            raise ConfigError(f"{name} is also given with --var", where=where)
    if len(set(names)) != len(names):
        raise ConfigError(f"a variable is named twice in the header row {names}", where=where)
    sets = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(names):
            raise ConfigError(f"row {line} has {len(row)} values for {len(names)} names", where=where)
        sets.append({n: v.strip() for n, v in zip(names, row)})
    return sets


def run_one(
    config: str,
    *,
    overrides: Sequence[str] = (),
    variables: Mapping[str, str] | None = None,
    overwrite: bool = False,
    log: Log,
    debug: bool = False,
    batch_vars: Mapping[str, str] | None = None,
    force: bool = False,
) -> Record:
    """Run one config and describe the outcome; user errors and failures become records.
    ``batch_vars`` are the batch's own template values (recorded; also applied over ``variables``)."""
    from . import readiness, runner
    from .config import load_config

    started = _now()
    bv = dict(batch_vars or {})
    values = {**(os.environ if variables is None else variables), **bv}
    base: dict[str, Any] = {"variables": bv, "started": started}
    t0 = time.perf_counter()
    unstored = None
    try:
        cfg = load_config(config, overrides=overrides, variables=values)
        if overwrite:
            cfg = cfg.model_copy(update={"output": cfg.output.model_copy(update={"overwrite": True})})
        readiness.check_markers(cfg)  # before the inputs are opened: a delivery not started has no store
        prep = runner.prepare(cfg)  # the config and inputs first, then their chunks; the run reuses it
        found = readiness.check(cfg, prep.arrays)
        if found:
            unstored = {r.name: len(r.unstored) for r in found}
        for r in found:
            log.event("warning", f"inputs.{r.name}: {r.message()}", level="warning", config=config, input=r.name, unstored=len(r.unstored))
        result = runner.run(prep, progress=_progress(log, config), notify=_notify(log, config), force=force)
    except KeyboardInterrupt as exc:
        part = getattr(exc, "pipeline_result", None)  # set by runner.run once the output was open
        return Record(
            config,
            "interrupted",
            int(ExitCode.INTERRUPTED),
            seconds=time.perf_counter() - t0,
            error=interrupted_message(exc),
            unstored_chunks=unstored,
            **base,
            **_counts(part),
        )
    except PipelineError as exc:
        if debug:
            raise
        part = getattr(exc, "pipeline_result", None)
        status = "locked" if isinstance(exc, LockedError) else "not-ready" if isinstance(exc, NotReadyError) else "failed"
        return Record(
            config, status, int(exc.exit_code), seconds=time.perf_counter() - t0, error="\n".join(exc.lines), unstored_chunks=unstored, **base, **_counts(part)
        )
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
            unstored_chunks=unstored,
            **base,
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
        unstored_chunks=unstored,
        **base,
    )
    log.event("done", result.summary(), config=config, **_fields(rec))
    return rec


def preview_one(
    config: str,
    *,
    overrides: Sequence[str] = (),
    variables: Mapping[str, str] | None = None,
    overwrite: bool = False,
    log: Log,
    debug: bool = False,
    batch_vars: Mapping[str, str] | None = None,
    detail: bool = False,
) -> Record:
    """What running ``config`` would do (``run --dry-run``, ``validate``): the plan and a verdict,
    logged, as a record whose status is the verdict.  Nothing is computed or written."""
    from . import preview, sessions
    from .config import load_config

    bv = dict(batch_vars or {})
    values = {**(os.environ if variables is None else variables), **bv}
    base: dict[str, Any] = {"variables": bv, "started": _now()}
    t0 = time.perf_counter()
    label = config + "".join(f" {k}={v}" for k, v in bv.items())
    try:
        cfg = load_config(config, overrides=overrides, variables=values)
        view = preview.preview(cfg, overwrite=True if overwrite else None)
    except PipelineError as exc:
        if debug:
            raise
        status = "not-ready" if isinstance(exc, NotReadyError) else "refused"
        rec = Record(config, status, int(exc.exit_code), seconds=time.perf_counter() - t0, error="\n".join(exc.lines), **base)
        text = "\n".join(f"{label}: {status}: {line}" if bv else line for line in exc.lines)  # one line a problem
        log.event("verdict", text, level="error", config=config, **_fields(rec))
        return rec
    prep = view.prepared
    rec = Record(
        config,
        view.verdict,
        preview.exit_code(view.verdict),
        output=f"{cfg.output.path}:{cfg.output.array}",
        seconds=time.perf_counter() - t0,
        pixels=math.prod(prep.plan.out_shape),
        unstored_chunks={r.name: len(r.unstored) for r in view.unstored} or None,
        error=view.detail if view.verdict in ("refused", "locked") else None,
        **base,
    )
    lines = [f"config OK: {label}"] if detail else []
    for name, spec in prep.specs.items():
        if detail:
            used = "" if name in prep.plan.expr.names else "  (not used by op)"
            nd, source = prep.plan.nodata.get(name), prep.nodata_source.get(name)
            nodata = f" nodata {nd} ({source})" if nd is not None else (f" nodata {source}" if source else "")
            lines.append(f"input {name}: {spec.source} shape {spec.shape} {spec.dtype} chunks {spec.chunks}{nodata}{used}")
    for r in view.unstored:
        log.event("warning", f"inputs.{r.name}: {r.message()}", level="warning", config=config, input=r.name, unstored=len(r.unstored))
    if detail:
        lines.append(prep.plan.describe())
        lines.append(f"output:        {cfg.output.path}:{cfg.output.array}" + (" (overwrite)" if cfg.output.overwrite or overwrite else ""))
        lines.append(f"scheduler:     {sessions.describe_scheduler(cfg)}")
    lines.append(f"{label}: {view.verdict}: {view.detail}")
    level = "error" if view.verdict in ("refused", "locked") else "info"
    log.event("verdict", "\n".join(lines), level=level, config=config, **_fields(rec))
    rec.config_obj = cfg  # type: ignore[attr-defined]  # for validate's job script (not in the report)
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
        finished=_now(),
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


def run_batch(
    configs: Sequence[str | os.PathLike[str]],
    *,
    overrides: Sequence[str] = (),
    variables: Mapping[str, str] | None = None,
    overwrite: bool = False,
    log: Log,
    debug: bool = False,
    var_sets: Sequence[Mapping[str, str]] = ({},),
    dry_run: bool = False,
    detail: bool = False,
    force: bool = False,
) -> list[Record]:
    """Run (or, ``dry_run``, preview) each config for each set of batch variables (sets outside,
    configs inside: day by day); an interruption stops the batch and records the items it never
    reached as ``not-started``; anything else does not stop it."""
    paths = expand_paths(configs)
    items = [(c, dict(vs)) for vs in (var_sets or ({},)) for c in paths]
    records: list[Record] = []
    one = preview_one if dry_run else run_one
    kwargs: dict[str, Any] = {"detail": detail or dry_run} if dry_run else {"force": force}
    for n, (config, vs) in enumerate(items):
        try:
            rec = one(config, overrides=overrides, variables=variables, overwrite=overwrite, log=log, debug=debug, batch_vars=vs, **kwargs)
            if rec.status in ("failed", "interrupted", "locked", "not-ready") and not dry_run:
                log.event("error", rec.error or rec.status, level="error", config=config, **_fields(rec))
        except KeyboardInterrupt as exc:  # between two runs, or while logging
            why = f" by {exc.args[0]}" if exc.args else ""
            rec = Record(config, "interrupted", int(ExitCode.INTERRUPTED), error=f"interrupted{why}", variables=vs)
        records.append(rec)
        if rec.status == "interrupted":
            for later, lvs in items[n + 1 :]:
                records.append(
                    Record(later, "not-started", int(ExitCode.INTERRUPTED), error="not started: the batch was interrupted", variables=lvs)
                )
            break
    return records
