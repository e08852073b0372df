"""The one-line summary of a run, for people: float ranges to 6 significant digits (integers
exact), and the throughput in a unit that suits it (a tiny input is not "0.0 Mpix/s")."""

from __future__ import annotations

import re

import numpy as np
import yaml
import zarr
from reference import brute_window
from typer.testing import CliRunner

from pipeline.cli.main import app

IMG = (np.arange(8 * 8, dtype=np.float64).reshape(8, 8) / 3.0) ** 1.5


def _run(tmp_path, reduce: str, dtype: str) -> str:
    zarr.open_group(tmp_path / "in.zarr", mode="w").create_array("a", shape=IMG.shape, dtype=dtype, chunks=(8, 8))[...] = IMG.astype(dtype)
    cfg = {"inputs": {"a": {"path": "in.zarr", "array": "a"}}, "op": "a", "window": {"size": 3, "reduce": reduce},
           "output": {"path": "out.zarr"}, "compute": {"scheduler": "synchronous"}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(app, ["run", "-q", str(tmp_path / "c.yaml")])
    assert res.exit_code == 0, res.output
    return res.output


def test_float_range_is_rounded_and_rate_has_a_fitting_unit(tmp_path):
    out = _run(tmp_path, "mean", "float64")
    ref = brute_window(IMG, 3, "mean").astype(np.float64)
    assert f"values in [{ref.min():.6g}, {ref.max():.6g}]" in out, out
    m = re.search(r"in (\d+\.\d\d) s \((\d+(?:\.\d+)?) (pix|kpix|Mpix|Gpix)/s\)", out)
    assert m, out
    seconds, value, unit = float(m[1]), float(m[2]), m[3]
    assert 1 <= value < 1000  # the unit chosen so that the number is neither 0.0 nor 4 digits
    per = value * {"pix": 1, "kpix": 1e3, "Mpix": 1e6, "Gpix": 1e9}[unit]
    if seconds >= 0.1:  # the printed seconds are rounded: compare where that does not matter
        assert abs(per - IMG.size / seconds) / per < 0.1, out


def test_integer_range_is_exact(tmp_path):
    out = _run(tmp_path, "sum", "int16")
    ref = brute_window(IMG.astype(np.int16).astype(np.int64), 3, "sum")
    assert f"values in [{int(ref.min())}, {int(ref.max())}]" in out, out
