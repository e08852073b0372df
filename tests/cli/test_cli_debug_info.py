"""``--debug`` keeps every exit code (it only adds the traceback), and ``pipeline info`` shows a
float fill value as the number, not xarray's base64 of its bytes."""

from __future__ import annotations

import base64
import json
import math
import struct

import numpy as np
import pytest
import yaml
import zarr
from typer.testing import CliRunner

import pipeline.storage.io
from pipeline.cli.main import app

runner = CliRunner()


def _config(tmp_path, **window):
    g = zarr.open_group(tmp_path / "in.zarr", mode="w")
    g.create_array("a", shape=(8, 8), dtype="float32", chunks=(8, 8), dimension_names=("y", "x"))[...] = (
        np.arange(64, dtype=np.float32).reshape(8, 8)
    )
    cfg = {"inputs": {"a": {"path": "in.zarr", "array": "a"}}, "op": "a",
           "window": {"size": 3, "reduce": "mean", **window}, "output": {"path": "out.zarr"}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _bad_config(tmp_path):
    return ["validate", str(_config(tmp_path, size=0))]


def _not_ready(tmp_path):
    path = _config(tmp_path)
    cfg = yaml.safe_load(path.read_text())
    cfg["inputs"]["a"]["ready_marker"] = "in.zarr/_SUCCESS"  # never written: not ready
    path.write_text(yaml.safe_dump(cfg))
    return ["run", str(path)]


def _raises(exc):
    def describe(*args, **kwargs):
        raise exc

    return describe


@pytest.mark.parametrize(
    ("case", "code"),
    [("bad config", 2), ("not ready", 5), ("internal", 1), ("interrupted", 4)],
)
def test_debug_keeps_the_exit_code_and_adds_the_traceback(tmp_path, monkeypatch, case, code):
    if case == "bad config":
        args = _bad_config(tmp_path)
    elif case == "not ready":
        args = _not_ready(tmp_path)
    else:
        monkeypatch.setattr(pipeline.storage.io, "describe_store", _raises(RuntimeError("boom") if case == "internal" else KeyboardInterrupt()))
        args = ["info", str(tmp_path)]
    plain = runner.invoke(app, args)
    assert plain.exit_code == code, plain.output
    assert "Traceback" not in plain.output
    debug = runner.invoke(app, ["--debug", *args])
    assert debug.exit_code == code, debug.output
    assert "Traceback (most recent call last)" in debug.output


def test_info_shows_a_float_fill_value_as_its_number(tmp_path):
    res = runner.invoke(app, ["run", str(_config(tmp_path))])
    assert res.exit_code == 0, res.output
    raw = json.loads((tmp_path / "out.zarr" / "result" / "zarr.json").read_text())["attributes"]["_FillValue"]
    assert isinstance(raw, str) and math.isnan(struct.unpack("<d", base64.b64decode(raw))[0])
    res = runner.invoke(app, ["info", str(tmp_path / "out.zarr")])
    assert res.exit_code == 0, res.output
    line = next(line for line in res.output.splitlines() if "attr _FillValue" in line)
    assert line.strip() == f'attr _FillValue = NaN (stored as base64 "{raw}")'
