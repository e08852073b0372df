"""A rerun that finds its output up to date does no kernel work, so it must not pay for importing
numba (about a second of a warm two-second run); a run that computes does import it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import zarr
from reference import SEED_EXPECTED

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import sys
from pipeline.cli.main import entrypoint
try:
    entrypoint(["run", sys.argv[1]])
except SystemExit as e:
    print("exit", e.code)
print("numba", "numba" in sys.modules)
"""


def _run(home: Path) -> list[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-c", PROBE, str(home / "configs" / "example.yaml")], env=env, cwd=home,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()[-2:]


def test_up_to_date_rerun_does_not_import_numba(tmp_path):
    shutil.copytree(ROOT / "data" / "seed.zarr", tmp_path / "data" / "seed.zarr")
    (tmp_path / "configs").mkdir()
    shutil.copy(ROOT / "configs" / "example.yaml", tmp_path / "configs")
    assert _run(tmp_path) == ["exit 0", "numba True"]  # computes: the kernels are needed
    got = zarr.open_group(tmp_path / "out" / "seed.zarr", mode="r")["result"][...]
    assert np.array_equal(got.astype(object), SEED_EXPECTED)
    assert _run(tmp_path) == ["exit 0", "numba False"]  # up to date: no kernel, no numba
