"""The batch log: every event is a record of a named logger (captured by whatever configures
:mod:`logging`), JSON lines are a formatter, ``-v`` shows the library's own loggers, and progress
comes every 10% or 30 s in a log file but as a bar with an ETA on a terminal."""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pytest
import yaml
import zarr
from typer.testing import CliRunner

from pipeline.batch import log as batchlog
from pipeline.cli.main import app


class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _lines(stream: io.StringIO) -> list[str]:
    return [ln for ln in stream.getvalue().splitlines() if ln.strip()]


@pytest.fixture
def clock(monkeypatch):
    c = _Clock()
    monkeypatch.setattr(batchlog.time, "monotonic", c)
    return c


def test_progress_in_a_log_every_tenth(clock):
    err = io.StringIO()
    report = batchlog.progress(batchlog.Log("text", err=err), "c.yaml")
    for done in range(1, 101):  # 100 blocks, one every 0.1 s after 3 s
        clock.t = 1000.0 + 3 + done * 0.1
        report(done, 100)
    shown = [int(ln.split()[0].split("/")[0]) for ln in _lines(err)]
    assert shown == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]


def test_progress_in_a_log_every_30_s_when_slow(clock):
    err = io.StringIO()
    report = batchlog.progress(batchlog.Log("json", err=err), "c.yaml")
    for done in range(1, 13):  # 1000 blocks, one every 10 s: no tenth is reached
        clock.t = 1000.0 + done * 10
        report(done, 1000)
    events = [json.loads(ln) for ln in _lines(err)]
    assert [e["done"] for e in events] == [3, 6, 9, 12]  # at 30, 60, 90 and 120 s
    assert all(e["event"] == "progress" and e["config"] == "c.yaml" for e in events)


def test_progress_on_a_terminal_is_a_bar_with_counts_and_eta(clock):
    err = _Tty()
    log = batchlog.Log("text", err=err)
    with batchlog.progress(log, "c.yaml") as report:
        for done in range(1, 41):  # one block every 0.25 s: 4 blocks a second
            clock.t = 1000.0 + done * 0.25
            report(done, 40)
            if done == 20:  # at 5 s
                shown = err.getvalue()
                log.event("warning", "a worker was lost", level="warning")  # printed above the bar
    assert "\x1b[" in shown  # drawn with terminal control sequences, not a line per report
    assert "20/40" in shown and "50%" in shown
    # ETA independently: 19 blocks in 4.75 s since the first report, 20 to go -> 5 s
    assert "about 5 s left" in shown
    final = err.getvalue()
    assert "40/40" in final and "100%" in final and "warning: a worker was lost" in final
    assert log.console is None  # the bar is closed at 40/40


def test_quiet_shows_no_bar_and_no_lines(clock):
    for err in (_Tty(), io.StringIO()):
        with batchlog.progress(batchlog.Log("text", err=err, quiet=True), "c.yaml") as report:
            for done in range(1, 41):
                clock.t = 1000.0 + done * 0.25
                report(done, 40)
        assert err.getvalue() == ""


def test_events_are_records_of_named_loggers(tmp_path, caplog):
    zarr.open_group(tmp_path / "in.zarr", mode="w").create_array("a", shape=(6, 6), dtype="uint8", chunks=(6, 6))[...] = np.ones((6, 6), "uint8")
    cfg = {"inputs": {"a": {"path": "in.zarr", "array": "a"}}, "op": "a", "window": {"size": 3},
           "output": {"path": "out.zarr"}, "compute": {"scheduler": "synchronous"}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    with caplog.at_level(logging.INFO, logger="pipeline"):
        res = CliRunner().invoke(app, ["run", "-q", str(tmp_path / "c.yaml"), str(tmp_path / "missing.yaml")])
    assert res.exit_code == 2
    by = {(r.name, getattr(r, "event", None)) for r in caplog.records}
    assert ("pipeline.batch", "done") in by and ("pipeline.batch", "summary") in by
    assert any(name == "pipeline.cli" or (name == "pipeline.batch" and ev == "done") for name, ev in by)
    done = next(r for r in caplog.records if getattr(r, "event", None) == "done")
    assert "wrote" in done.getMessage() and done.fields["config"] == str(tmp_path / "c.yaml")


def test_json_formatter_on_any_handler():
    record = logging.getLogger("pipeline.batch").makeRecord("pipeline.batch", logging.WARNING, "x", 0, "a %s", ("b",), None,
                                                            extra={"event": "warning", "fields": {"config": "c.yaml"}})
    doc = json.loads(batchlog.JsonFormatter().format(record))
    assert doc["level"] == "warning" and doc["message"] == "a b" and doc["config"] == "c.yaml" and doc["event"] == "warning"


def test_verbose_shows_the_debug_loggers(tmp_path):
    zarr.open_group(tmp_path / "in.zarr", mode="w").create_array("a", shape=(6, 6), dtype="uint8", chunks=(6, 6))[...] = np.ones((6, 6), "uint8")
    cfg = {"inputs": {"a": {"path": "in.zarr", "array": "a"}}, "op": "a", "window": {"size": 3},
           "output": {"path": "out.zarr"}, "compute": {"scheduler": "synchronous"}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    quiet = CliRunner().invoke(app, ["run", "-q", str(tmp_path / "c.yaml"), "--force"])
    loud = CliRunner().invoke(app, ["-vv", "run", "-q", str(tmp_path / "c.yaml"), "--force"])
    batchlog.configure(None)
    assert quiet.exit_code == loud.exit_code == 0, loud.output
    assert "DEBUG pipeline.storage.zarrchunks" not in quiet.output
    assert "DEBUG pipeline.storage.zarrchunks" in loud.output
    assert loud.output.count("wrote ") == 1  # the command's own lines are not repeated
