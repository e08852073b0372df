"""What ships runs in a fresh clone: every config in configs/ on the sample data (the nightly
template configs/day.yaml with a DATE), the batch script over its default ``configs/*.yaml``
(DATE defaulting to yesterday), and the folders the SLURM scripts write their logs into."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import zarr
from reference import SEED_EXPECTED
from typer.testing import CliRunner

from pipeline.cli.main import app

ROOT = Path(__file__).resolve().parents[2]


def _clone(tmp_path: Path) -> Path:
    """The shipped configs/, data/ and workflows/ as a fresh clone has them."""
    for name in ("configs", "data", "workflows"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _seed_result(path: Path) -> np.ndarray:
    return zarr.open_group(path, mode="r")["result"][...]


def test_every_shipped_config_runs_on_the_sample_data(tmp_path):
    home = _clone(tmp_path)
    configs = sorted(str(p) for p in (home / "configs").glob("*.yaml"))
    assert {Path(c).name for c in configs} >= {"example.yaml", "day.yaml"}
    res = CliRunner().invoke(app, ["run", "-q", *configs, "--var", "DATE=2026-12-05,2026-12-06"])
    assert res.exit_code == 0, res.output
    for day in ("2026-12-05", "2026-12-06"):  # the nightly template: the seed's sum, one output a day
        assert np.array_equal(_seed_result(home / "out" / "day" / f"{day}.zarr").astype(object), SEED_EXPECTED)
    assert np.array_equal(_seed_result(home / "out" / "seed.zarr").astype(object), SEED_EXPECTED)


def test_batch_script_runs_the_shipped_configs_with_yesterday_as_date(tmp_path):
    home = _clone(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "DATE"}
    env.update({"PIPELINE_HOME": str(home), "PIPELINE": f"{sys.executable} -m pipeline.cli.main"})
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    before = dt.datetime.now(dt.UTC).date()
    res = subprocess.run(["bash", str(home / "workflows" / "pipeline-batch.sh")], env=env, cwd="/", capture_output=True, text=True)
    after = dt.datetime.now(dt.UTC).date()
    assert res.returncode == 0, res.stderr
    days = {str(d - dt.timedelta(days=1)) for d in (before, after)}  # a run across midnight: either
    written = sorted((home / "out" / "day").glob("*.zarr"))
    assert len(written) == 1 and written[0].stem in days
    assert np.array_equal(_seed_result(written[0]).astype(object), SEED_EXPECTED)


def test_slurm_log_folders_are_shipped():
    for script in (ROOT / "workflows" / "slurm").glob("*.sbatch"):
        for out in re.findall(r"^#SBATCH --(?:output|error)=(\S+)", script.read_text(), flags=re.M):
            folder = ROOT / Path(out).parent
            assert folder.is_dir(), (script.name, out)
            tracked = subprocess.run(["git", "ls-files", "--error-unmatch", str(folder / ".gitkeep")], cwd=ROOT, capture_output=True)
            assert tracked.returncode == 0, f"{folder} is not in the repository"
