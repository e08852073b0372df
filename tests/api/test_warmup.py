"""``pipeline warmup`` fills the kernel caches so that a fresh process compiles nothing for the
dtypes and reductions it warmed: after it, a run in a new process adds no compiled kernel
(numba's ``.nbc`` files) to the cache, and its result is right."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.kernels import jit

ROOT = Path(__file__).resolve().parents[2]
RUN = """
import sys
import numpy as np
import pipeline
img = (np.arange(40 * 30) % 89).reshape(40, 30).astype("uint16")
np.save(sys.argv[1], np.asarray(pipeline.window_reduce("a", {"a": img}, size=3, reduce=["min", "max"], nodata={"a": 0})["max"]))
"""


def _compiled(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*.nbc")}


@pytest.mark.skipif(not jit.AVAILABLE, reason="needs numba")
def test_a_run_after_warmup_compiles_nothing(tmp_path):
    env = {**os.environ, "PIPELINE_CACHE_DIR": str(tmp_path / "cache"), "NUMBA_CACHE_DIR": str(tmp_path / "numba"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    warm = ("from pipeline.api.warmup import warmup; "
            "print(warmup(dtypes=['uint16'], reductions=[('min', 'max')]))")
    res = subprocess.run([sys.executable, "-c", warm], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 and res.stdout.split() == ["2"], res.stderr  # without and with nodata
    before = _compiled(tmp_path / "numba")
    assert before  # the kernels are on disk
    res = subprocess.run([sys.executable, "-c", RUN, str(tmp_path / "max.npy")], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert _compiled(tmp_path / "numba") == before  # loaded, nothing compiled
    img = (np.arange(40 * 30) % 89).reshape(40, 30).astype("uint16")
    ref = np.array([[max(int(v) for v in img[max(i - 1, 0):i + 2, max(j - 1, 0):j + 2].ravel() if v != 0)
                     for j in range(img.shape[1])] for i in range(img.shape[0])])  # no window is all nodata
    np.testing.assert_array_equal(np.load(tmp_path / "max.npy"), ref)
