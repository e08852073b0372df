"""The files a batch writes for other programs (its report, ``latest.json``, ``--metrics``) get the
mode a plain ``open`` gives under the process's umask (node_exporter, running as another user,
must read them), and the metrics file is Prometheus text that ``prometheus_client``'s parser reads."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import yaml
import zarr
from prometheus_client.parser import text_string_to_metric_families
from reference import brute_window_sum
from typer.testing import CliRunner

from pipeline.cli.main import app

A = (np.arange(6 * 5, dtype=np.int16).reshape(6, 5) * 7) % 11 - 5


@pytest.fixture
def umask():
    """Set a umask for the test and restore the previous one."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield os.umask
    os.umask(saved)


def _config(tmp_path):
    zarr.open_group(tmp_path / "in.zarr", mode="w").create_array("a", shape=A.shape, dtype=A.dtype, chunks=(3, 3))[...] = A
    cfg = {"inputs": {"a": {"path": "in.zarr", "array": "a"}}, "op": "a", "window": {"size": 3}, "output": {"path": "out.zarr"},
           "compute": {"scheduler": "synchronous"}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "c.yaml"


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_report_latest_and_metrics_follow_the_umask(tmp_path, umask, mask):
    cfg = _config(tmp_path)
    umask(mask)
    reports = tmp_path / "reports"
    res = CliRunner().invoke(app, ["run", "-q", str(cfg), "--report", str(reports / "pipeline-1.json"), "--keep-reports", "3",
                                   "--metrics", str(tmp_path / "m.prom")])
    assert res.exit_code == 0, res.output
    # what open(path, "w") gives under this umask: the reference the files are held to
    (tmp_path / "plain").write_text("")
    expected = stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    assert expected == 0o666 & ~mask
    for p in (reports / "pipeline-1.json", reports / "latest.json", tmp_path / "m.prom"):
        assert stat.S_IMODE(p.stat().st_mode) == expected, p


def test_metrics_are_prometheus_text_with_the_run(tmp_path):
    cfg = _config(tmp_path)
    res = CliRunner().invoke(app, ["run", "-q", str(cfg), "--metrics", str(tmp_path / "m.prom")])
    assert res.exit_code == 0, res.output
    got = zarr.open_group(tmp_path / "out.zarr", mode="r")["result"][...]
    assert np.array_equal(got, brute_window_sum(A, 3))
    families = {f.name: f for f in text_string_to_metric_families((tmp_path / "m.prom").read_text())}
    (pixels,) = families["pipeline_run_pixels"].samples
    assert pixels.value == A.size and pixels.labels == {"config": str(cfg), "status": "done"}
    assert [s.value for s in families["pipeline_run_exit_code"].samples] == [0]
    assert [s.value for s in families["pipeline_batch_exit_code"].samples] == [0]
    assert set(families) == {
        "pipeline_batch_exit_code", "pipeline_batch_finished_timestamp_seconds", "pipeline_run_blocks_computed",
        "pipeline_run_blocks_skipped", "pipeline_run_exit_code", "pipeline_run_pixels", "pipeline_run_seconds",
    }
