"""Scheduled runs: overrides and templates, batches with reports, and the workflow definitions in
workflows/ exercised against the sample data (scheduler commands stubbed only where the scheduler
itself cannot run here)."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr
from prefect_helpers import load_flow
from reference import SEED_A, SEED_B, SEED_EXPECTED, seed_loop
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.config.load import load_config
from pipeline.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / "workflows"
runner = CliRunner()


@pytest.fixture
def home(tmp_path):
    """A deployment folder like /opt/pipeline: configs/, data/ and workflows/ copied from the repo."""
    shutil.copytree(ROOT / "data" / "seed.zarr", tmp_path / "data" / "seed.zarr")
    shutil.copytree(WORKFLOWS, tmp_path / "workflows")
    (tmp_path / "configs").mkdir()
    shutil.copy(ROOT / "configs" / "example.yaml", tmp_path / "configs" / "example.yaml")
    return tmp_path


def result_of(path):
    return zarr.open_group(path, mode="r")["result"][...]


def seed_sum(W):
    return seed_loop(SEED_A, SEED_B, W)


# ------------------------------------------------------------------------- overrides, templates


def test_set_overrides_are_parsed_as_yaml_scalars(home):
    cfg = load_config(
        home / "configs" / "example.yaml",
        overrides=["window.size=[5, 3]", "output.overwrite=false", "compute.workers=1", "output.array=r"],
    )
    assert cfg.window.size == (5, 3)
    assert cfg.output.overwrite is False and cfg.compute.workers == 1 and cfg.output.array == "r"


@pytest.mark.parametrize(
    "override,fragments",
    [
        ("windw.size=3", ["windw", "did you mean 'window'"]),
        ("window.size=banana", ["window.size"]),
        ("op.x=3", ["op is not a mapping"]),
        ("window.size", ["--set", "KEY=VALUE"]),
        ("window.size=[3", ["--set", "window.size"]),
    ],
)
def test_bad_overrides(home, override, fragments):
    with pytest.raises(ConfigError) as exc:
        load_config(home / "configs" / "example.yaml", overrides=[override])
    for f in fragments:
        assert f in str(exc.value)


def test_templates_from_environment_and_vars(home, monkeypatch):
    text = (home / "configs" / "example.yaml").read_text()
    text = text.replace("size: 3", "size: ${W}").replace("../out/seed.zarr", "../out/${SCENE}_w${W}.zarr")
    (home / "configs" / "templated.yaml").write_text(text)
    monkeypatch.setenv("SCENE", "fromenv")
    monkeypatch.setenv("W", "3")
    # --var wins over the environment; the whole-value ${W} becomes an int
    res = runner.invoke(app, ["run", "-q", "--var", "W=5", str(home / "configs" / "templated.yaml")])
    assert res.exit_code == 0, res.output
    out = home / "out" / "fromenv_w5.zarr"
    assert np.array_equal(result_of(out), seed_sum(5))
    # the resolved config is what the provenance records
    prov = zarr.open_group(out, mode="r")["result"].attrs["pipeline"]
    assert prov["config"]["window"]["size"] == 5
    assert prov["config"]["output"]["path"] == str(out)


def test_undefined_variable_is_named(home, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    text = (home / "configs" / "example.yaml").read_text().replace("../out/seed.zarr", "${NOT_SET_ANYWHERE}/x.zarr")
    (home / "configs" / "t.yaml").write_text(text)
    res = runner.invoke(app, ["run", str(home / "configs" / "t.yaml")])
    assert res.exit_code == 2
    assert "undefined variable ${NOT_SET_ANYWHERE}" in res.output and "output.path" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_dollar_escape_and_partial_substitution():
    from pipeline.config.load import expand_variables

    data = {"a": "cost $$5 for ${X}", "b": ["${X}", "${N}"], "c": 3}
    assert expand_variables(data, {"X": "x y", "N": "7"}) == {"a": "cost $5 for x y", "b": ["x y", 7], "c": 3}


# ------------------------------------------------------------------------------ batches, reports


def test_batch_with_a_failing_config_and_report(home):
    cfgs = home / "configs"
    good2 = yaml.safe_load((cfgs / "example.yaml").read_text())
    good2["window"]["size"] = 2
    good2["output"]["path"] = "../out/w2.zarr"
    (cfgs / "b_w2.yaml").write_text(yaml.safe_dump(good2))
    bad = dict(good2, windw={"size": 3})
    (cfgs / "c_bad.yaml").write_text(yaml.safe_dump(bad))
    report = home / "reports" / "r.json"
    res = runner.invoke(app, ["run", "--report", str(report), str(cfgs / "*.yaml")])
    assert res.exit_code == 2, res.output  # one config error; the others ran
    doc = json.loads(report.read_text())
    assert doc["exit_code"] == 2
    runs = {Path(r["config"]).name: r for r in doc["runs"]}
    assert list(runs) == ["b_w2.yaml", "c_bad.yaml", "example.yaml"]  # glob expanded, sorted
    ok = runs["example.yaml"]
    assert ok["status"] == "done" and ok["exit_code"] == 0 and ok["error"] is None
    assert ok["output"] == f"{home / 'out' / 'seed.zarr'}:result"
    assert ok["pixels"] == 36 and ok["chunks_computed"] >= 1 and ok["chunks_skipped"] == 0
    assert ok["seconds"] > 0
    assert runs["b_w2.yaml"]["status"] == "done"
    failed = runs["c_bad.yaml"]
    assert failed["status"] == "failed" and failed["exit_code"] == 2 and failed["output"] is None
    assert "windw" in failed["error"] and "did you mean 'window'" in failed["error"]
    # the outputs of the good configs are right
    assert np.array_equal(result_of(home / "out" / "seed.zarr"), SEED_EXPECTED)
    assert np.array_equal(result_of(home / "out" / "w2.zarr"), seed_sum(2))
    # a summary table at the end
    assert "c_bad.yaml" in res.output and "failed" in res.output


def test_json_log_lines(home):
    res = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--log-format", "json", str(home / "configs" / "example.yaml"),
         str(home / "configs" / "missing.yaml")],
        capture_output=True, text=True, cwd=home,
    )
    assert res.returncode == 2
    events = [json.loads(line) for line in res.stderr.splitlines()]
    kinds = [(e["event"], e["level"]) for e in events]
    assert ("done", "info") in kinds and ("error", "error") in kinds and ("summary", "info") in kinds
    err = next(e for e in events if e["event"] == "error")
    assert "missing.yaml" in err["message"] and err["exit_code"] == 2
    assert all({"time", "level", "event", "message"} <= set(e) for e in events)


# --------------------------------------------------------------------------------- workflows/


def _env(home, **extra):
    env = dict(os.environ)
    env.update({"PIPELINE_HOME": str(home), "PIPELINE": f"{sys.executable} -m pipeline.cli.main", **extra})
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _report(home):
    reports = sorted((home / "reports").glob("pipeline-*.json"))
    assert reports, "no report written"
    return json.loads(reports[-1].read_text())


def test_batch_script_runs_sample_and_refuses_overlap(home):
    script = home / "workflows" / "pipeline-batch.sh"
    res = subprocess.run(["bash", str(script)], env=_env(home), cwd="/", capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert np.array_equal(result_of(home / "out" / "seed.zarr"), SEED_EXPECTED)
    assert _report(home)["runs"][0]["status"] in ("done", "up-to-date")
    # one time stamp format in the one log: the wrapper's lines and pipeline's
    events = [json.loads(line) for line in res.stderr.splitlines() if line.startswith("{")]
    assert {e["event"] for e in events} >= {"wrapper", "done"}, res.stderr
    stamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00")
    assert all(stamp.fullmatch(e["time"]) for e in events), [e["time"] for e in events]
    # a second batch while the first holds the lock leaves at once with 75
    lock = home / "reports" / ".batch.lock"
    holder = subprocess.Popen(["flock", str(lock), "sh", "-c", "echo held && exec sleep 60"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"  # flock holds the lock from here on
        res = subprocess.run(["bash", str(script)], env=_env(home), capture_output=True, text=True, timeout=60)
        assert res.returncode == 75 and "still running" in res.stderr
    finally:
        holder.kill()
        holder.wait()


def test_cron_line(home):
    line = next(l for l in (WORKFLOWS / "cron" / "pipeline.crontab").read_text().splitlines() if l[:1].isdigit())
    fields = line.split(None, 5)
    assert fields[:5] == ["15", "2", "*", "*", "*"]
    (home / "logs").mkdir()
    command = fields[5].replace("/opt/pipeline", str(home))
    # cron runs the line with /bin/sh in $HOME with a minimal environment
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "PIPELINE": f"{sys.executable} -m pipeline.cli.main",
           "PYTHONPATH": str(ROOT)}
    res = subprocess.run(["/bin/sh", "-c", command], env=env, cwd=str(home), capture_output=True, text=True)
    assert res.returncode == 0, (res.stderr, (home / "logs" / "pipeline.log").read_text())
    assert np.array_equal(result_of(home / "out" / "seed.zarr"), SEED_EXPECTED)
    assert "report" in (home / "logs" / "pipeline.log").read_text()


def _unit(path):
    """systemd unit file as {section: {key: [values]}}."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        else:
            key, _, value = line.partition("=")
            current.setdefault(key, []).append(value)
    return sections


def test_systemd_units(home):
    unit_dir = home / "units"
    unit_dir.mkdir()
    for name in ("pipeline.service", "pipeline.timer"):
        (unit_dir / name).write_text((WORKFLOWS / "systemd" / name).read_text().replace("/opt/pipeline", str(home)))
    service = _unit(unit_dir / "pipeline.service")["Service"]
    timer = _unit(unit_dir / "pipeline.timer")["Timer"]
    assert service["Type"] == ["oneshot"]  # a running oneshot is never started twice: no overlap
    assert timer["Persistent"] == ["true"] and timer["Unit"] == ["pipeline.service"]
    if shutil.which("systemd-analyze"):
        check = subprocess.run(["systemd-analyze", "verify", *map(str, unit_dir.iterdir())], capture_output=True, text=True)
        assert check.returncode == 0 and not check.stderr.strip(), check.stderr
        cal = subprocess.run(["systemd-analyze", "calendar", timer["OnCalendar"][0]], capture_output=True, text=True)
        assert cal.returncode == 0, cal.stderr
    # run the service's command the way systemd would: its Environment, its WorkingDirectory
    env = _env(home)
    for assignment in service.get("Environment", []):
        k, _, v = assignment.partition("=")
        env[k] = v
    res = subprocess.run(service["ExecStart"][0].split(), env=env, cwd=service["WorkingDirectory"][0], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert np.array_equal(result_of(home / "out" / "seed.zarr"), SEED_EXPECTED)


def _stub_srun(tmp):
    """`srun` stand-in: drops srun's own options and runs the command on this machine."""
    bin_dir = tmp / "stub-bin"
    bin_dir.mkdir(exist_ok=True)
    srun = bin_dir / "srun"
    srun.write_text('#!/usr/bin/env bash\nwhile [[ "${1:-}" == --* ]]; do shift; done\nexec "$@"\n')
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def test_slurm_single_node(home):
    script = home / "workflows" / "slurm" / "pipeline.sbatch"
    directives = re.findall(r"^#SBATCH (.+)$", script.read_text(), re.M)
    assert "--nodes=1" in directives and any(d.startswith("--signal=B:TERM") for d in directives)
    env = _env(home, SLURM_JOB_ID="4242", SLURM_CPUS_PER_TASK="2", SLURM_SUBMIT_DIR=str(home))
    env["PATH"] = f"{_stub_srun(home)}{os.pathsep}{env['PATH']}"
    res = subprocess.run(["bash", str(script)], env=env, cwd=home, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert np.array_equal(result_of(home / "out" / "seed.zarr"), SEED_EXPECTED)
    prov = zarr.open_group(home / "out" / "seed.zarr", mode="r")["result"].attrs["pipeline"]
    assert prov["config"]["compute"]["workers"] == 2  # SLURM_CPUS_PER_TASK reached the run


# ----------------------------------------------------------------------------------- Prefect


def test_prefect_flow_retries_resume(home, monkeypatch):
    prefect_flow, prefect_test_harness = load_flow(monkeypatch, home)
    from pipeline.runner import runconfig as runner_mod

    real_execute = runner_mod.execute
    calls = {"n": 0}

    def flaky(*args, **kwargs):  # the first attempt dies at run time, as a killed worker would
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("worker lost")
        return real_execute(*args, **kwargs)

    monkeypatch.setattr(runner_mod, "execute", flaky)
    monkeypatch.setattr(prefect_flow, "RETRY_DELAY_S", 0)
    attempts = []
    real_run_one = prefect_flow.run_one
    monkeypatch.setattr(prefect_flow, "run_one", lambda c, **k: attempts.append((Path(c).name, k["batch_vars"])) or real_run_one(c, **k))
    cfgs = home / "configs"
    w2 = yaml.safe_load((cfgs / "example.yaml").read_text())
    w2["window"]["size"] = 2
    w2["output"]["path"] = "../out/w2-${TAG}.zarr"
    (cfgs / "w2.yaml").write_text(yaml.safe_dump(w2))
    bad = yaml.safe_load((cfgs / "example.yaml").read_text())
    bad["window"]["size"] = 0
    (cfgs / "bad.yaml").write_text(yaml.safe_dump(bad))
    with prefect_test_harness(server_startup_timeout=180):
        state = prefect_flow.pipeline_batch([str(cfgs / "example.yaml"), str(cfgs / "w2.yaml")], variables=["TAG=x"], return_state=True)
        assert state.is_completed() and calls["n"] == 3  # example failed once and was retried once
        result = state.result()
        assert result["exit_code"] == 0 and [r["status"] for r in result["runs"]] == ["done", "done"]
        # the other config ran before the failed one's retry: retries hold up nobody
        assert [a[0] for a in attempts] == ["example.yaml", "w2.yaml", "example.yaml"]
        assert np.array_equal(result_of(home / "out" / "seed.zarr"), SEED_EXPECTED)
        assert np.array_equal(result_of(home / "out" / "w2-x.zarr"), seed_sum(2))
        # a bad config is not retried (it would fail the same way every time); the flow ends
        # with the batch's exit code, not an exception
        attempts.clear()
        assert prefect_flow.main([str(cfgs / "bad.yaml")]) == 2
        assert len(attempts) == 1
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            names = sorted(r.name for r in client.read_task_runs())
    # task runs named by config and template values
    assert names.count(f"{cfgs / 'example.yaml'} TAG=x") == 2 and names.count(f"{cfgs / 'w2.yaml'} TAG=x") == 1
    assert f"{cfgs / 'bad.yaml'}" in names


def test_slurm_dask_cluster_on_the_allocation(home):
    """The Dask-on-SLURM script for real: a `dask scheduler` and a `dask worker` process started
    through (stubbed) srun on loopback, the batch run against them."""
    pytest.importorskip("distributed")
    script = home / "workflows" / "slurm" / "pipeline-dask.sbatch"
    directives = re.findall(r"^#SBATCH (.+)$", script.read_text(), re.M)
    assert any(d.startswith("--nodes=") for d in directives)
    (home / "logs").mkdir()
    env = _env(
        home,
        SLURM_JOB_ID="4343",
        SLURM_CPUS_PER_TASK="1",
        SLURM_MEM_PER_NODE="2048",
        SLURM_SUBMIT_DIR=str(home),
        PIPELINE_SCHEDULER_HOST="127.0.0.1",  # scheduler, workers and dashboards on loopback only
        PIPELINE_SCHEDULER_PORT="0",  # any free port: another run of the suite may hold 8786
        PIPELINE_WORKER_HOST="127.0.0.1",
        PIPELINE_DASHBOARD_ADDRESS="127.0.0.1:0",
    )
    env["PATH"] = os.pathsep.join([str(_stub_srun(home)), str(Path(sys.executable).parent), env["PATH"]])
    res = subprocess.run(["bash", str(script)], env=env, cwd=home, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, (res.stderr, (home / "logs" / "dask-scheduler-4343.log").read_text())
    assert np.array_equal(result_of(home / "out" / "seed.zarr"), SEED_EXPECTED)
    prov = zarr.open_group(home / "out" / "seed.zarr", mode="r")["result"].attrs["pipeline"]
    assert prov["config"]["compute"]["scheduler"].startswith("tcp://127.0.0.1:")
    run = _report(home)["runs"][0]
    assert run["status"] == "done"


def test_scheduled_rerun_is_an_up_to_date_no_op(home):
    """A nightly rerun of finished work is a fast no-op, reported as up-to-date with every chunk
    skipped, and leaves the output's bytes untouched."""
    cfg = str(home / "configs" / "example.yaml")
    first, second = home / "reports" / "1.json", home / "reports" / "2.json"
    assert runner.invoke(app, ["run", "-q", "--report", str(first), cfg]).exit_code == 0
    out = home / "out" / "seed.zarr" / "result"
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    res = runner.invoke(app, ["run", "-q", "--report", str(second), cfg])
    assert res.exit_code == 0, res.output
    assert "up to date" in res.output
    done = json.loads(first.read_text())["runs"][0]
    again = json.loads(second.read_text())["runs"][0]
    assert done["status"] == "done" and done["chunks_computed"] >= 1 and done["chunks_skipped"] == 0
    assert again["status"] == "up-to-date" and again["exit_code"] == 0
    assert again["chunks_computed"] == 0 and again["chunks_skipped"] == done["chunks_computed"]
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before
    assert np.array_equal(result_of(home / "out" / "seed.zarr"), SEED_EXPECTED)
