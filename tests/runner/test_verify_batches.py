"""``pipeline verify`` walks the chunk grid in batches (it never holds the whole grid's keys) and
lists at most ``SHOWN`` damaged and missing keys each, with the whole counts: damage in several
batches is found, marked and repaired by a rerun to the uninterrupted run's bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr
from reference import brute_window_sum
from run_helpers import W, make_inputs, write_config
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.runner import verify

cli = CliRunner()


def chunk_files(store: Path) -> dict[str, bytes]:
    base = store / "result" / "c"
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def test_damage_across_batches_is_found_capped_and_repaired(tmp_path, monkeypatch):
    a, b = make_inputs(tmp_path)
    out = tmp_path / "out.zarr"
    cfg = write_config(tmp_path, "out.zarr")
    assert cli.invoke(app, ["run", "-q", str(cfg)]).exit_code == 0
    got = zarr.open_array(out / "result", mode="r")[...]
    d = a.astype(np.int64) ** 2 - b.astype(np.int64) ** 2
    assert np.array_equal(got, brute_window_sum(d, W))
    ref = chunk_files(out)

    monkeypatch.setattr(verify, "BATCH", 7)  # 11 x 11 = 121 chunks: 18 batches
    monkeypatch.setattr(verify, "SHOWN", 2)
    gone = ["0/0", "3/5", "6/9", "10/10"]  # batches 1, 6, 11 and 18
    for key in gone:
        (out / "result" / "c" / key).unlink()
    victim = out / "result" / "c" / "7" / "1"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x10
    victim.write_bytes(bytes(data))

    res = cli.invoke(app, ["verify", "--no-mark", str(out)])
    assert res.exit_code == 1, res.output
    assert "116 of 121 chunks stored and readable, 1 damaged, 4 missing" in res.output, res.output
    assert "damaged result/c/7/1" in res.output
    shown = [line.split()[-1] for line in res.output.splitlines() if line.strip().startswith("missing ")]
    assert shown == ["result/c/0/0", "result/c/10/10"]  # sorted as strings, the first two
    assert "... and 2 more missing" in res.output

    res = cli.invoke(app, ["verify", str(out)])
    assert "5 blocks marked for recomputation" in res.output, res.output
    res = cli.invoke(app, ["run", str(cfg)])
    assert res.exit_code == 0 and "resumed: 116" in res.output, res.output
    assert chunk_files(out) == ref
    assert cli.invoke(app, ["verify", str(out)]).exit_code == 0
