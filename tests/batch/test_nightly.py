"""Nightly operations: one template over many days, ${VAR} in flow mappings, dry-run verdicts,
input readiness and unstored input chunks, the batch wrapper under signals and cron's empty
environment, JSON logs, reports and metrics.  Results are checked against brute-force window
sums; behaviours against real exit codes, files and log lines."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from prefect_helpers import load_flow
from reference import brute_window_sum
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.config.load import load_config
from pipeline.errors import ConfigError, ExitCode
from pipeline.storage import ledger
from pipeline.storage.lock import OutputLock

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / "workflows"
cli = CliRunner()
DAYS = ("2026-11-20", "2026-11-21", "2026-11-22")

TEMPLATE = """\
# one template for every day: flow mappings with ${DATE} unquoted, as the README writes them
inputs:
  a: {path: ../in/${DATE}/pair.zarr, array: a}
  b: {path: ../in/${DATE}/pair.zarr, array: b}
op: a - b
window: {size: 3}
output: {path: ../out/${DATE}.zarr}
compute: {scheduler: threads, chunks: 4, workers: 1}
"""


def day_inputs(root: Path, day: str, shape=(8, 8)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(int(day.replace("-", "")))
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    b = rng.integers(0, 256, shape, dtype=np.uint8)
    g = zarr.open_group(root / "in" / day / "pair.zarr", mode="w")
    for name, arr in (("a", a), ("b", b)):
        g.create_array(name, shape=shape, dtype=arr.dtype, chunks=(4, 4), dimension_names=("y", "x"))[...] = arr
    return a, b


def expected(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return brute_window_sum(a.astype(np.int64) - b.astype(np.int64), 3)


@pytest.fixture
def site(tmp_path):
    """A deployment: configs/day.yaml (the template) and three days of inputs."""
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "day.yaml").write_text(TEMPLATE)
    refs = {d: expected(*day_inputs(tmp_path, d)) for d in DAYS}
    return tmp_path, refs


def out_of(root: Path, day: str) -> np.ndarray:
    return zarr.open_group(root / "out" / f"{day}.zarr", mode="r")["result"][...]


# --------------------------------------------------------------------------- 1, 2: templates


def test_three_day_batch_from_one_template(site):
    root, refs = site
    report = root / "reports" / "r.json"
    res = cli.invoke(app, ["run", "-q", str(root / "configs" / "day.yaml"), "--var", "DATE=" + ",".join(DAYS), "--report", str(report)])
    assert res.exit_code == 0, res.output
    for d in DAYS:
        np.testing.assert_array_equal(out_of(root, d), refs[d])
    doc = json.loads(report.read_text())
    assert [r["variables"] for r in doc["runs"]] == [{"DATE": d} for d in DAYS]
    assert [r["status"] for r in doc["runs"]] == ["done"] * 3
    assert doc["host"] and doc["batch"] and doc["started"] <= doc["finished"]
    assert doc["counts"] == {"done": 3} and doc["not_started"] == []


def test_repeated_var_is_an_error_not_an_override(site):
    root, _ = site
    res = cli.invoke(app, ["run", str(root / "configs" / "day.yaml"), "--var", f"DATE={DAYS[0]}", "--var", f"DATE={DAYS[1]}"])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "--var" in lines[0] and "DATE is given twice" in lines[0], res.output
    assert not (root / "out").exists()


def test_vars_from_file_and_matrix(site, tmp_path):
    root, refs = site
    (root / "days.csv").write_text("# nights to run\nDATE\n" + "\n".join(DAYS[:2]) + "\n")
    res = cli.invoke(app, ["run", "-q", str(root / "configs" / "day.yaml"), "--vars-from", str(root / "days.csv")])
    assert res.exit_code == 0, res.output
    for d in DAYS[:2]:
        np.testing.assert_array_equal(out_of(root, d), refs[d])
    assert not (root / "out" / f"{DAYS[2]}.zarr").exists()
    from pipeline.batch.runbatch import variable_sets

    assert variable_sets(["A=1,2", "B=x"], root / "days.csv") == [
        {"A": a, "B": "x", "DATE": d} for a in ("1", "2") for d in DAYS[:2]
    ]
    with pytest.raises(ConfigError, match="DATE is also given with --var"):
        variable_sets(["DATE=x"], root / "days.csv")


def test_flow_mapping_templates_parse_like_quoted_ones(tmp_path):
    flow = "inputs:\n  a: {path: ../in/${D}/p.zarr, array: a}\nop: a\nwindow: {size: ${W}}\noutput: {path: ../out/$${D}-${D}.zarr}\n"
    quoted = 'inputs:\n  a: {path: "../in/${D}/p.zarr", array: a}\nop: a\nwindow: {size: "${W}"}\noutput: {path: "../out/$${D}-${D}.zarr"}\n'
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "flow.yaml").write_text(flow)
    (tmp_path / "c" / "quoted.yaml").write_text(quoted)
    v = {"D": "2026-11-20", "W": "5"}
    got, want = load_config(tmp_path / "c" / "flow.yaml", variables=v), load_config(tmp_path / "c" / "quoted.yaml", variables=v)
    assert got == want
    assert got.inputs["a"].path == str(tmp_path / "in" / "2026-11-20" / "p.zarr")
    assert got.window.size == 5 and got.output.path == str(tmp_path / "out" / "${D}-2026-11-20.zarr")


def test_symlinked_config_resolves_against_the_links_folder(site):
    """One template linked into each day's folder reads that day's files (what the operator
    expected), not files beside the template."""
    root, refs = site
    (root / "templates").mkdir()
    (root / "templates" / "pair.yaml").write_text(
        "inputs:\n  a: {path: pair.zarr, array: a}\n  b: {path: pair.zarr, array: b}\nop: a - b\nwindow: {size: 3}\noutput: {path: out.zarr}\n"
    )
    for day in DAYS[:2]:
        os.symlink(root / "templates" / "pair.yaml", root / "in" / day / "job.yaml")
    res = cli.invoke(app, ["run", "-q", *(str(root / "in" / d / "job.yaml") for d in DAYS[:2])])
    assert res.exit_code == 0, res.output
    for day in DAYS[:2]:
        np.testing.assert_array_equal(zarr.open_group(root / "in" / day / "out.zarr", mode="r")["result"][...], refs[day])
    assert not (root / "templates" / "out.zarr").exists()


# --------------------------------------------------------------------------- 3: dry run, validate


def _dry(root: Path, *args: str):
    return cli.invoke(app, ["run", "--dry-run", str(root / "configs" / "day.yaml"), *args])


def test_dry_run_and_validate_verdicts(site):
    root, refs = site
    d0, d1, d2 = DAYS
    assert cli.invoke(app, ["run", "-q", str(root / "configs" / "day.yaml"), "--var", f"DATE={d0},{d1}"]).exit_code == 0
    # d1: a chunk of the output lost; verify marks its block for recomputation -> would resume
    out1 = root / "out" / f"{d1}.zarr"
    (out1 / "result" / "c" / "1" / "1").unlink()
    assert cli.invoke(app, ["verify", str(out1)]).exit_code == 1
    before = sorted(p.relative_to(root) for p in (root / "out").rglob("*"))

    res = _dry(root, "--var", f"DATE={d0},{d1},{d2}", "--report", str(root / "dry.json"))
    assert res.exit_code == 0, res.output
    assert f"DATE={d0}: up-to-date" in res.output
    assert f"DATE={d1}: would-resume" in res.output and "3 of 4 blocks done, 1 to compute" in res.output
    assert f"DATE={d2}: new" in res.output
    doc = json.loads((root / "dry.json").read_text())
    assert doc["dry_run"] is True and [r["status"] for r in doc["runs"]] == ["up-to-date", "would-resume", "new"]

    # a changed window: refused (exit 2), or replaced with --overwrite
    res = _dry(root, "--var", f"DATE={d0}", "--set", "window.size=5")
    assert res.exit_code == 2 and "refused" in res.output and "--overwrite" in res.output, res.output
    res = _dry(root, "--var", f"DATE={d0}", "--set", "window.size=5", "--overwrite")
    assert res.exit_code == 0 and "would-replace" in res.output, res.output
    # validate judges the output too (it used to say OK where run refused)
    res = cli.invoke(app, ["validate", str(root / "configs" / "day.yaml"), "--var", f"DATE={d0}", "--set", "window.size=5"])
    assert res.exit_code == 2 and "config OK" in res.output and "refused" in res.output, res.output
    # another run holds the output's lock
    with OutputLock(ledger.sidecar(root / "out" / f"{d0}.zarr") / "lock", "test"):
        res = _dry(root, "--var", f"DATE={d0}")
    assert res.exit_code == 3 and "locked" in res.output, res.output
    # nothing was written by any of them
    assert sorted(p.relative_to(root) for p in (root / "out").rglob("*")) == before
    np.testing.assert_array_equal(out_of(root, d0), refs[d0])


# --------------------------------------------------------------------------- 4: readiness


def test_half_delivered_input_is_not_ready_exit_5_then_runs(site):
    root, refs = site
    day = DAYS[0]
    chunk = root / "in" / day / "pair.zarr" / "b" / "c" / "0" / "1"
    saved = chunk.read_bytes()
    chunk.unlink()  # the delivery has not copied this chunk yet
    cfg = str(root / "configs" / "day.yaml")
    args = ["--var", f"DATE={day}", "--set", "inputs.b.unstored_chunks=not-ready"]
    res = cli.invoke(app, ["run", cfg, *args])
    assert res.exit_code == ExitCode.NOT_READY == 5, res.output
    assert "inputs.b: not ready: 1 of 4 chunks" in res.output and "c/0/1" in res.output
    assert not (root / "out").exists()
    res = cli.invoke(app, ["validate", cfg, *args])
    assert res.exit_code == 5 and "not ready" in res.output
    chunk.write_bytes(saved)  # delivered
    assert cli.invoke(app, ["run", "-q", cfg, *args]).exit_code == 0
    np.testing.assert_array_equal(out_of(root, day), refs[day])


def test_ready_marker_written_last(site):
    root, refs = site
    day = DAYS[1]
    cfg = str(root / "configs" / "day.yaml")
    args = ["--var", f"DATE={day}", "--set", "inputs.a.ready_marker=../in/${DATE}/_SUCCESS"]
    res = cli.invoke(app, ["run", cfg, *args])
    assert res.exit_code == 5 and "inputs.a: not ready: its ready marker" in res.output and "_SUCCESS" in res.output, res.output
    # the marker is checked before the store is opened: a delivery not even started is not ready
    res = cli.invoke(app, ["run", cfg, "--var", "DATE=2099-01-01", "--set", "inputs.a.ready_marker=../in/${DATE}/_SUCCESS"])
    assert res.exit_code == 5, res.output
    (root / "in" / day / "_SUCCESS").touch()
    assert cli.invoke(app, ["run", "-q", cfg, *args]).exit_code == 0
    np.testing.assert_array_equal(out_of(root, day), refs[day])


def test_deleted_input_chunk_reported_by_validate_run_and_verify(site):
    root, _ = site
    day = DAYS[2]
    store = root / "in" / day / "pair.zarr"
    (store / "a" / "c" / "1" / "0").unlink()
    cfg = str(root / "configs" / "day.yaml")
    message = f"1 of 4 chunks of {store}:a are not stored (read as the fill value): c/1/0"
    res = cli.invoke(app, ["validate", cfg, "--var", f"DATE={day}"])
    assert res.exit_code == 0 and message in res.output, res.output
    report = root / "r.json"
    res = cli.invoke(app, ["run", "-q", cfg, "--var", f"DATE={day}", "--report", str(report)])
    assert res.exit_code == 0 and message in res.output, res.output  # default: warn, and run
    assert json.loads(report.read_text())["runs"][0]["unstored_chunks"] == {"a": 1}
    res = cli.invoke(app, ["verify", str(store)])
    assert "a: 3 of 4 chunks stored" in res.output and "1 not stored" in res.output and "not stored a/c/1/0" in res.output
    res = cli.invoke(app, ["run", cfg, "--var", f"DATE={day}", "--set", "inputs.a.unstored_chunks=error", "--set", "output.path=../out/x.zarr"])
    assert res.exit_code == 2 and "inputs.a: " + message in res.output and "unstored_chunks: error" in res.output, res.output
    assert not (root / "out" / "x.zarr").exists()


# --------------------------------------------------------------------------- 5, 6: workflows, logs


def _shim(home: Path, command: str = "-m pipeline.cli.main") -> None:
    """PIPELINE_HOME/.venv/bin/pipeline, as an install there would have (this checkout's code)."""
    bin_dir = home / ".venv" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    shim = bin_dir / "pipeline"
    shim.write_text(f'#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} {command} "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)


def _wrapper_home(tmp_path: Path) -> Path:
    home = tmp_path / "opt"
    (home / "workflows").mkdir(parents=True)
    for name in ("pipeline-batch.sh",):
        (home / "workflows" / name).write_text((WORKFLOWS / name).read_text())
        (home / "workflows" / name).chmod(0o755)
    (home / "configs").mkdir()
    _shim(home)
    return home


def test_cron_line_as_shipped_under_env_i(site, tmp_path):
    root, refs = site
    home = _wrapper_home(tmp_path)
    (home / "configs" / "day.yaml").write_text(TEMPLATE.replace("../in/", f"{root}/in/").replace("DATE}", "DATE}", 1))
    line = next(l for l in (WORKFLOWS / "cron" / "pipeline.crontab").read_text().splitlines() if l[:1].isdigit())
    fields = line.split(None, 5)
    assert fields[:5] == ["15", "2", "*", "*", "*"]
    command = fields[5].replace("/opt/pipeline", str(home))
    # no logs/ folder, no PATH, no PYTHONPATH: what `env -i` leaves, plus HOME, which cron always
    # sets (here the test's, so that caches stay in tmp_path); DATE from cron's environment
    res = subprocess.run(["env", "-i", f"HOME={home}", "DATE=" + DAYS[0], "/bin/sh", "-c", command], cwd="/", capture_output=True, text=True, timeout=300)
    log = (home / "logs" / "pipeline.log").read_text()
    assert res.returncode == 0 and res.stdout == "", (res.stdout, res.stderr, log)
    np.testing.assert_array_equal(zarr.open_group(home / "out" / f"{DAYS[0]}.zarr", mode="r")["result"][...], refs[DAYS[0]])
    events = [json.loads(l) for l in log.splitlines()]
    last = events[-1]
    assert last["event"] == "wrapper" and last["exit_code"] == 0 and Path(last["report"]).is_file()
    assert json.loads((home / "reports" / "latest.json").read_text())["batch"] == last["batch"]


def _slow_config(root: Path, name: str, out: str) -> None:
    """121 blocks of 12x12 (as the reliability tests): long enough to be stopped midway."""
    from run_helpers import write_config

    write_config(root, out, name=name)


def test_wrapper_forwards_sigterm_run_stops_cleanly_and_resumes(tmp_path):
    from run_helpers import W, make_inputs, n_done

    home = _wrapper_home(tmp_path)
    _shim(home, str(ROOT / "tests" / "held_run.py"))  # with PIPELINE_TEST_HOLD_AFTER: cannot finish before SIGTERM
    a, b = make_inputs(home / "configs")
    _slow_config(home / "configs", "first.yaml", "first.zarr")
    _slow_config(home / "configs", "second.yaml", "second.zarr")
    # HOME as cron sets it (the user's home: here the test's, so that caches stay in tmp_path)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "PIPELINE_HOME": str(home),
           "PIPELINE_CONFIGS": "configs/first.yaml configs/second.yaml", "PIPELINE_ARGS": "-q"}
    out = home / "configs" / "first.zarr"
    script = str(home / "workflows" / "pipeline-batch.sh")
    proc = subprocess.Popen([script], env={**env, "PIPELINE_TEST_HOLD_AFTER": "20"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    t0 = time.monotonic()
    while n_done(out) < 3:
        assert proc.poll() is None and time.monotonic() - t0 < 240, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)  # what systemd's KillMode=mixed does: the main process only
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == ExitCode.INTERRUPTED == 4, stderr
    # pipeline itself stopped (its output lock is released) and reported it
    assert not (ledger.sidecar(out) / "lock").exists()
    events = [json.loads(l) for l in stderr.splitlines()]
    assert any("interrupted by SIGTERM" in e["message"] for e in events), stderr
    report = json.loads((home / "reports" / "latest.json").read_text())
    assert [r["status"] for r in report["runs"]] == ["interrupted", "not-started"]
    assert report["not_started"] == [{"config": "configs/second.yaml", "variables": {}}] and report["exit_code"] == 4
    done = n_done(out)
    assert 0 < done < 121
    # the next batch is not locked out, resumes the first and runs the second
    res = subprocess.run([script], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    report = json.loads((home / "reports" / "latest.json").read_text())
    first = report["runs"][0]
    assert first["status"] == "done" and first["chunks_skipped"] >= done and first["chunks_computed"] == 121 - first["chunks_skipped"]
    ref = brute_window_sum(a.astype(np.int64) ** 2 - b.astype(np.int64) ** 2, W)
    for name in ("first", "second"):
        np.testing.assert_array_equal(zarr.open_group(home / "configs" / f"{name}.zarr", mode="r")["result"][...], ref)
    assert len(list((home / "reports").glob("pipeline-*.json"))) == 2


def test_every_line_of_a_json_log_batch_is_json(site, tmp_path):
    root, _ = site
    home = _wrapper_home(tmp_path)
    (home / "configs" / "day.yaml").write_text(TEMPLATE.replace("../in/", f"{root}/in/"))
    (home / "configs" / "broken.yaml").write_text("inputs: [\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "PIPELINE_HOME": str(home), "PIPELINE_BATCH_ID": "night-1"}
    script = str(home / "workflows" / "pipeline-batch.sh")
    # one good day, one missing day, one broken config; then a usage error; then an unwritable report
    runs = [
        subprocess.run([script, "--var", f"DATE={DAYS[0]},1999-01-01"], env=env, capture_output=True, text=True, timeout=300),
        subprocess.run([script, "--no-such-option"], env=env, capture_output=True, text=True, timeout=300),
        subprocess.run([script], env={**env, "PIPELINE_REPORT_DIR": "/proc/nonexistent"}, capture_output=True, text=True, timeout=300),
    ]
    assert [r.returncode for r in runs[:2]] == [2, 2]
    for r in runs:
        assert r.stdout == ""
        lines = r.stderr.splitlines()
        assert lines, r
        for line in lines:
            event = json.loads(line)  # every line
            assert event["batch"] == "night-1" and event["host"] and event["level"] in ("info", "warning", "error"), line
    first = [json.loads(l) for l in runs[0].stderr.splitlines()]
    assert {"wrapper", "done", "error", "summary"} <= {e["event"] for e in first}
    usage = [json.loads(l) for l in runs[1].stderr.splitlines()]
    assert any("no-such-option" in e["message"] for e in usage)
    assert usage[-1]["message"].endswith("no report written")


def test_pipeline_usage_and_report_errors_in_json(tmp_path, site):
    root, _ = site
    res = subprocess.run([sys.executable, "-m", "pipeline", "run", "--log-format", "json", "--bogus", "x.yaml"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 2 and res.stdout == ""
    (event,) = [json.loads(l) for l in res.stderr.splitlines()]
    assert "--bogus" in event["message"] and event["level"] == "error" and event["exit_code"] == 2
    (tmp_path / "afile").write_text("")
    res = subprocess.run([sys.executable, "-m", "pipeline", "run", "-q", "--log-format", "json", "--report", str(tmp_path / "afile" / "r.json"),
                          str(root / "configs" / "day.yaml"), "--var", f"DATE={DAYS[0]}"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    events = [json.loads(l) for l in res.stderr.splitlines()]
    assert res.returncode == 2 and events[-1]["level"] == "error" and "cannot write the report" in events[-1]["message"], res.stderr


def test_report_retention_latest_and_metrics(site):
    root, refs = site
    reports = root / "reports"
    reports.mkdir()
    (reports / "notes.json").write_text("{}")  # not a report: never deleted
    cfg = str(root / "configs" / "day.yaml")
    for i, day in enumerate(DAYS):
        res = cli.invoke(app, ["run", "-q", cfg, "--var", f"DATE={day}", "--report", str(reports / f"pipeline-{i}.json"),
                               "--keep-reports", "2", "--metrics", str(root / "m.prom")])
        assert res.exit_code == 0, res.output
        time.sleep(0.02)
    assert sorted(p.name for p in reports.iterdir()) == ["latest.json", "notes.json", "pipeline-1.json", "pipeline-2.json"]
    assert json.loads((reports / "latest.json").read_text())["runs"][0]["variables"] == {"DATE": DAYS[2]}
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families((root / "m.prom").read_text())}
    labels = {"config": cfg, "status": "done", "var_DATE": DAYS[2]}
    runs = {n: [(s.labels, s.value) for s in families[n].samples] for n in families if n.startswith("pipeline_run_")}
    assert runs["pipeline_run_pixels"] == [(labels, 64)]  # 8 x 8 pixels, 2 x 2 blocks of 4 x 4
    assert runs["pipeline_run_blocks_computed"] == [(labels, 4)] and runs["pipeline_run_blocks_skipped"] == [(labels, 0)]
    assert runs["pipeline_run_exit_code"] == [(labels, 0)]
    (batch,) = families["pipeline_batch_exit_code"].samples
    assert set(batch.labels) == {"host"} and batch.value == 0
    (finished,) = families["pipeline_batch_finished_timestamp_seconds"].samples
    assert abs(finished.value - time.time()) < 600


def test_prefect_flow_with_variables_date_and_report(site, monkeypatch):
    root, refs = site
    prefect_flow, prefect_test_harness = load_flow(monkeypatch, root)
    import datetime as dt

    yesterday = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    day_inputs(root, yesterday)
    cfg = str(root / "configs" / "day.yaml")
    with prefect_test_harness(server_startup_timeout=180):
        prefect_flow.main([cfg, "--var", f"DATE={DAYS[0]},{DAYS[1]}", "--report", str(root / "r1.json")])
        prefect_flow.main([cfg, "--date-var", "DATE", "--report", str(root / "r2.json")])
    for d in DAYS[:2]:
        np.testing.assert_array_equal(out_of(root, d), refs[d])
    a = zarr.open_group(root / "in" / yesterday / "pair.zarr", mode="r")
    np.testing.assert_array_equal(out_of(root, yesterday), expected(a["a"][...], a["b"][...]))
    r1, r2 = (json.loads((root / f"r{i}.json").read_text()) for i in (1, 2))
    assert [r["variables"] for r in r1["runs"]] == [{"DATE": DAYS[0]}, {"DATE": DAYS[1]}] and r1["exit_code"] == 0
    assert r2["runs"][0]["variables"] == {"DATE": yesterday} and r2["runs"][0]["status"] == "done"


def test_locked_output_is_its_own_status_in_the_report(site):
    root, refs = site
    d0, d1 = DAYS[:2]
    out0 = root / "out" / f"{d0}.zarr"
    report = root / "r.json"
    with OutputLock(ledger.sidecar(out0) / "lock", "another run"):
        res = cli.invoke(app, ["run", "-q", str(root / "configs" / "day.yaml"), "--var", f"DATE={d0},{d1}", "--report", str(report)])
    assert res.exit_code == ExitCode.LOCKED == 3, res.output
    runs = json.loads(report.read_text())["runs"]
    assert [(r["status"], r["exit_code"]) for r in runs] == [("locked", 3), ("done", 0)]
    assert "being written by another run" in runs[0]["error"]
    np.testing.assert_array_equal(out_of(root, d1), refs[d1])
