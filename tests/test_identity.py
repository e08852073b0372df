"""Input identity and readiness that cannot be fooled (issue 22 items 5, 6, 7, 14, 24, 26): only
real chunk keys count as stored, symlinked chunk folders are followed, swapped or rewritten chunks
change the identity, an input rewritten during a run fails the run, credentials are never
persisted, and only what changes the output values is in the fingerprint."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import yaml
import zarr
from typer.testing import CliRunner

from pipeline.cli import app
from reference import brute_window_sum

cli = CliRunner()

SHAPE = (96, 80)
CHUNKS = (32, 32)


def make_input(root: Path, *, zarr_format: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(22)
    a = rng.integers(-300, 300, SHAPE, dtype=np.int16)
    b = rng.integers(-300, 300, SHAPE, dtype=np.int16)
    g = zarr.open_group(root / "in.zarr", mode="w", zarr_format=zarr_format)
    for name, arr in (("a", a), ("b", b)):
        g.create_array(name, shape=SHAPE, dtype=arr.dtype, chunks=CHUNKS)[...] = arr
    return a, b


def write_config(root: Path, name: str = "A.yaml", **inputs_extra) -> Path:
    cfg = {
        "inputs": {n: {"path": "in.zarr", "array": n, **inputs_extra} for n in ("a", "b")},
        "op": "a**2 - b**2",
        "window": {"size": 3, "reduce": "sum"},
        "compute": {"chunks": [32, 32]},
        "output": {"path": "out.zarr"},
    }
    path = root / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def expected(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return brute_window_sum(a.astype(np.int64) ** 2 - b.astype(np.int64) ** 2, 3)


def result(root: Path) -> np.ndarray:
    return zarr.open_group(root / "out.zarr", mode="r")["result"][...]


# ------------------------------------------------------------------------------------------------
# item 5: readiness counts real chunk keys only


def test_v2_metadata_files_do_not_count_as_chunks(tmp_path):
    """A Zarr v2 input missing 2 chunks: its ``.zarray`` and ``.zattrs`` (2 files) must not make
    up for them."""
    make_input(tmp_path, zarr_format=2)
    zarr.open_group(tmp_path / "in.zarr", mode="a")["a"].attrs["units"] = "m"  # writes .zattrs
    arr_dir = tmp_path / "in.zarr" / "a"
    assert (arr_dir / ".zarray").exists() and (arr_dir / ".zattrs").exists()
    (arr_dir / "2.2").unlink()
    (arr_dir / "1.0").unlink()
    res = cli.invoke(app, ["run", str(write_config(tmp_path, unstored_chunks="not-ready"))])
    assert res.exit_code == 5, res.output
    assert "2 of 9 chunks" in res.output and "1.0" in res.output and "2.2" in res.output, res.output
    assert not (tmp_path / "out.zarr").exists()


def test_temp_files_of_chunks_still_arriving_do_not_count(tmp_path):
    """rsync writes ``c/2/.2.Xa9bQ1`` before renaming it to ``c/2/2``: not a chunk yet."""
    a, b = make_input(tmp_path)
    base = tmp_path / "in.zarr" / "b" / "c"
    for key in ("2/2", "0/1"):
        d, name = key.split("/")
        os.replace(base / d / name, base / d / f".{name}.Xa9bQ1")
    res = cli.invoke(app, ["run", str(write_config(tmp_path, unstored_chunks="not-ready"))])
    assert res.exit_code == 5 and "2 of 9 chunks" in res.output, res.output
    for key in ("2/2", "0/1"):  # the delivery completes: the run goes ahead, exact
        d, name = key.split("/")
        os.replace(base / d / f".{name}.Xa9bQ1", base / d / name)
    res = cli.invoke(app, ["run", str(write_config(tmp_path, unstored_chunks="not-ready"))])
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(result(tmp_path), expected(a, b))


# ------------------------------------------------------------------------------------------------
# item 24: symlinked chunk folders are followed


def test_a_symlinked_chunk_folder_is_stored(tmp_path):
    a, b = make_input(tmp_path)
    base = tmp_path / "in.zarr" / "a" / "c"
    shutil.move(base / "1", tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", base / "1")
    (base / "2" / "loop").symlink_to(base)  # a loop is walked once, not forever (and is no chunk)
    res = cli.invoke(app, ["run", str(write_config(tmp_path, unstored_chunks="not-ready"))])
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(result(tmp_path), expected(a, b))
