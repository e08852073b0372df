"""A cluster that is not there (yet) is a transient failure with its own exit code (6), which
schedulers retry: a scheduler address nobody listens on, and a scheduler no worker joins."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import yaml
import zarr
from cluster_helpers import Cluster, worker_env
from typer.testing import CliRunner

from pipeline.batch.report import Record, batch_exit_code
from pipeline.cli.main import app

pytest.importorskip("distributed")


def _config(tmp_path, scheduler: str) -> str:
    g = zarr.open_group(tmp_path / "in.zarr", mode="w")
    g.create_array("a", shape=(8, 8), dtype="uint8", chunks=(8, 8))[...] = np.arange(64, dtype=np.uint8).reshape(8, 8)
    cfg = {
        "inputs": {"a": {"path": "in.zarr", "array": "a"}},
        "op": "a",
        "window": {"size": 3},
        "output": {"path": "out.zarr"},
        "compute": {"scheduler": scheduler, "worker_timeout": 1},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_scheduler_exits_6_and_writes_nothing(tmp_path):
    res = CliRunner().invoke(app, ["run", _config(tmp_path, f"tcp://127.0.0.1:{_closed_port()}")])
    assert res.exit_code == 6, res.output
    assert "cannot reach the scheduler" in res.output
    assert not (tmp_path / "out.zarr").exists()


def test_scheduler_without_workers_exits_6(tmp_path):
    (tmp_path / "sched").mkdir()
    cluster = Cluster(tmp_path / "sched", worker_env())  # a real ``dask scheduler``, no worker
    try:
        res = CliRunner().invoke(app, ["run", _config(tmp_path, cluster.address)])
    finally:
        cluster.close()
    assert res.exit_code == 6, res.output
    assert "no worker joined the scheduler" in res.output


@pytest.mark.parametrize(
    ("codes", "expected"),
    [((6, 5, 2), 6), ((3, 6), 6), ((1, 6), 1), ((4, 6), 4), ((0, 6), 6)],
)
def test_batch_code_puts_unavailable_after_runtime_failures_before_lock_and_not_ready(codes, expected):
    # the documented order (docs/operations.md): 4, 1, 6, 3, 5, 2
    records = [Record(f"c{i}.yaml", "failed" if c else "done", c) for i, c in enumerate(codes)]
    assert batch_exit_code(records) == expected
