"""Planning at planet scale (issue 27 item 1): ``validate`` and the dry run count what a run makes
from the plan and one listing of each input, never building anything per block or per chunk, so
a virtual 8 Tpix pair (metadata only, no chunk stored) is validated like a small one."""

from __future__ import annotations

import itertools
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.execution import tiling
from pipeline.runner import readiness

cli = CliRunner()


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_unstored_count_and_first_keys_match_a_listing_of_the_files(tmp_path, zarr_format):
    arr = zarr.create_array(tmp_path / "a.zarr", shape=(70, 50), chunks=(10, 10), dtype="int16", fill_value=0, zarr_format=zarr_format)
    rng = np.random.default_rng(27)
    for i, j in itertools.product(range(7), range(5)):
        if rng.random() < 0.6:
            arr[i * 10 : (i + 1) * 10, j * 10 : (j + 1) * 10] = 1
    root = tmp_path / "a.zarr"
    sep = "c/" if zarr_format == 3 else ""
    dot = "/" if zarr_format == 3 else "."
    (root / f"{sep}9{dot}0").parent.mkdir(parents=True, exist_ok=True)
    (root / f"{sep}9{dot}0").write_bytes(b"x")  # outside the grid: not a chunk
    (root / f"{sep}junk").write_bytes(b"x")
    # the reference: every grid key in order, looked up as a file
    keys = [f"{sep}{i}{dot}{j}" for i, j in itertools.product(range(7), range(5))]
    missing = [k for k in keys if not (root / k).is_file()]
    assert missing, "the random draw left every chunk stored"
    total, count, first = readiness.unstored_chunks(zarr.open_array(root, mode="r"))
    assert (total, count, first) == (35, len(missing), missing[: readiness.SHOWN])


def test_unstored_count_of_a_fully_stored_array_is_zero(tmp_path):
    arr = zarr.create_array(tmp_path / "a.zarr", shape=(20, 20), chunks=(10, 10), dtype="uint8", fill_value=0)
    arr[...] = 1
    assert readiness.unstored_chunks(zarr.open_array(tmp_path / "a.zarr", mode="r")) == (4, 0, [])


@pytest.mark.parametrize("nblocks", [(1, 1), (3, 7), (40, 9), (5, 4, 13), (1, 200)])
@pytest.mark.parametrize("strip", [1, 2, 5, 64])
@pytest.mark.parametrize("threads", [1, 2, 16])
def test_tile_count_is_the_number_of_tiles_listed(nblocks, strip, threads):
    blocks = list(itertools.product(*(range(n) for n in nblocks)))
    assert tiling.tile_count(nblocks, strip, threads) == len(tiling.tiles(nblocks, strip, blocks, threads))


def virtual_pair(root: Path, shape: tuple[int, int], chunks: int) -> Path:
    g = zarr.open_group(root / "in.zarr", mode="w")
    for name in ("a", "b"):
        g.create_array(name, shape=shape, chunks=(chunks, chunks), dtype="uint16", fill_value=0)
    cfg = {
        "inputs": {n: {"path": "in.zarr", "array": n} for n in ("a", "b")},
        "op": "a - b",
        "window": {"size": 5, "reduce": "sum"},
        "compute": {"scheduler": "threads", "workers": 2},
        "output": {"path": "out.zarr", "array": "s"},
    }
    path = root / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_an_8_tpix_virtual_pair_validates_and_counts_what_the_run_makes(tmp_path):
    shape = (4_000_000, 2_000_000)
    cfg = virtual_pair(tmp_path, shape, 2048)
    res = cli.invoke(app, ["validate", str(cfg)])
    assert res.exit_code == 0, res.output
    chunks_in = math.ceil(shape[0] / 2048) * math.ceil(shape[1] / 2048)
    assert f"{chunks_in} of {chunks_in} chunks of" in res.output
    assert "c/0/0, c/0/1, c/0/2, ..." in res.output
    line = next(ln for ln in res.output.splitlines() if ln.startswith(f"{cfg}: new:"))
    found = {what: int(n.replace(",", "")) for n, what in re.findall(r"([\d,]+) (blocks|tasks|output chunk objects|ledger records)", line)}
    out_chunk = 2048  # follows the input's chunks
    blocks = math.ceil(shape[0] / out_chunk) * math.ceil(shape[1] / out_chunk)
    assert found["blocks"] == blocks
    assert found["output chunk objects"] == blocks
    assert "in one task on" in line and "1 ledger record" in line  # the threads scheduler: one tile, one record
    assert sorted(os.listdir(tmp_path)) == ["cfg.yaml", "in.zarr"]  # nothing written


def test_auto_chunks_grow_rather_than_refuse_a_run_of_too_many_blocks(tmp_path):
    shape = (4_000_000, 2_000_000)
    cfg = virtual_pair(tmp_path, shape, 512)  # 30.5 M chunks of 512²: more than MAX_BLOCKS
    res = cli.invoke(app, ["validate", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "output chunks: (1024, 1024)" in res.output  # doubled once: 7.6 M blocks
    assert f"processing blocks {math.ceil(shape[0] / 1024)}x{math.ceil(shape[1] / 1024)}" in res.output
    res = cli.invoke(app, ["validate", str(cfg), "--set", "compute.chunks=512"])  # asked for: refused
    assert res.exit_code == 2 and "compute.chunks" in res.output
