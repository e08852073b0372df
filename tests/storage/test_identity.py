"""Input identity and readiness that cannot be fooled (issue 22 items 5, 6, 7, 14, 24, 26): only
real chunk keys count as stored, symlinked chunk folders are followed, swapped or rewritten chunks
change the identity, an input rewritten during a run fails the run, credentials are never
persisted, and only what changes the output values is in the fingerprint."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr
from reference import brute_window_sum
from run_helpers import done_blocks
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.errors import InputError
from pipeline.runner import runconfig

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


# ------------------------------------------------------------------------------------------------
# item 6: the local identity sees swapped chunk files and files behind symlinked folders


def make_raw_input(root: Path) -> None:
    """The shared setup, uncompressed: every chunk file has the same size."""
    rng = np.random.default_rng(6)
    g = zarr.open_group(root / "in.zarr", mode="w")
    for name in ("a", "b"):
        arr = rng.integers(-300, 300, SHAPE, dtype=np.int16)
        g.create_array(name, shape=SHAPE, dtype=arr.dtype, chunks=CHUNKS, compressors=None)[...] = arr


def read_inputs(root: Path) -> tuple[np.ndarray, np.ndarray]:
    g = zarr.open_group(root / "in.zarr", mode="r")
    return g["a"][...], g["b"][...]


def test_two_chunk_files_swapped_with_mv_are_a_change(tmp_path):
    make_raw_input(tmp_path)
    cfg = write_config(tmp_path)
    assert cli.invoke(app, ["run", str(cfg)]).exit_code == 0
    base = tmp_path / "in.zarr" / "a" / "c" / "0"
    first, second = os.stat(base / "0"), os.stat(base / "1")
    assert first.st_size == second.st_size
    os.rename(base / "0", base / "tmp")  # what `mv` does: sizes and mtimes travel with the files
    os.rename(base / "1", base / "0")
    os.rename(base / "tmp", base / "1")
    os.utime(base / "0", ns=(first.st_atime_ns, first.st_mtime_ns))  # even the mtimes put back per name
    os.utime(base / "1", ns=(second.st_atime_ns, second.st_mtime_ns))
    res = cli.invoke(app, ["run", str(cfg)])
    assert res.exit_code == 2 and "the data or metadata of input a changed" in res.output, res.output
    assert cli.invoke(app, ["run", "--overwrite", str(cfg)]).exit_code == 0
    np.testing.assert_array_equal(result(tmp_path), expected(*read_inputs(tmp_path)))


def test_a_chunk_rewritten_in_place_behind_a_symlinked_folder_is_a_change(tmp_path):
    make_raw_input(tmp_path)
    base = tmp_path / "in.zarr" / "b" / "c"
    shutil.move(base / "2", tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", base / "2")
    cfg = write_config(tmp_path)
    assert cli.invoke(app, ["run", str(cfg)]).exit_code == 0
    chunk = tmp_path / "elsewhere" / "1"
    raw = bytearray(chunk.read_bytes())
    raw[:2] = np.int16(-1234).tobytes()  # the first pixel of chunk (2, 1) of b, same size
    with open(chunk, "r+b") as f:  # in place: the folder holding the link does not change
        f.write(raw)
    res = cli.invoke(app, ["run", str(cfg)])
    assert res.exit_code == 2 and "the data or metadata of input b changed" in res.output, res.output
    assert cli.invoke(app, ["run", "--overwrite", str(cfg)]).exit_code == 0
    a, b = read_inputs(tmp_path)
    assert b[64, 32] == -1234
    np.testing.assert_array_equal(result(tmp_path), expected(a, b))


# ------------------------------------------------------------------------------------------------
# item 7: an input rewritten during a run fails the run; the output is not marked complete


def test_an_input_rewritten_during_the_run_is_not_marked_complete(tmp_path):
    make_input(tmp_path)
    cfg = write_config(tmp_path)
    calls = []

    def rewrite_once(done, total):
        if not calls:
            zarr.open_group(tmp_path / "in.zarr", mode="a")["a"][70, 70] = 299  # a block not yet computed
        calls.append(done)

    with pytest.raises(InputError, match=r"in\.zarr:a changed while this run read it") as info:
        runconfig.run(write_config(tmp_path), progress=rewrite_once)
    assert "\n" not in str(info.value) and "inputs.a" in str(info.value)
    state = zarr.open_group(tmp_path / "out.zarr", mode="r")["result"].attrs["pipeline"]
    assert state["complete"] is False
    res = cli.invoke(app, ["run", str(cfg)])  # never "up to date"
    assert res.exit_code == 2 and "different config" in res.output, res.output
    assert cli.invoke(app, ["run", "--overwrite", str(cfg)]).exit_code == 0
    np.testing.assert_array_equal(result(tmp_path), expected(*read_inputs(tmp_path)))


# ------------------------------------------------------------------------------------------------
# item 14: credentials are never persisted; rotating them keeps the output up to date

SECRETS = ("AKIAIDSECRET1", "wJalrXUtnFEMIsecret1", "tok-SECRET-1", "hunter2pw", "SIGsecret1")


def secret_options(n: int) -> dict:
    return {
        "key": f"AKIAIDSECRET{n}",
        "secret": f"wJalrXUtnFEMIsecret{n}",
        "anon": False,
        "endpoint_url": f"http://user:hunter{n + 1}pw@127.0.0.1:9000/base?X-Amz-Signature=SIGsecret{n}",
        "client_kwargs": {"region_name": "eu-west-1", "aws_session_token": f"tok-SECRET-{n}"},
        "config_kwargs": {"retries": {"max_attempts": 3}},
    }


def write_secret_config(root: Path, n: int) -> Path:
    cfg = yaml.safe_load(write_config(root).read_text())
    for spec in cfg["inputs"].values():
        spec["storage_options"] = secret_options(n)  # a local path ignores them: only their record is tested
    cfg["output"]["storage_options"] = secret_options(n)
    path = root / "S.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def every_byte(*folders: Path) -> bytes:
    return b"".join(p.read_bytes() for folder in folders for p in sorted(folder.rglob("*")) if p.is_file())


def test_storage_options_credentials_are_never_written(tmp_path):
    a, b = make_input(tmp_path)
    res = cli.invoke(app, ["run", str(write_secret_config(tmp_path, 1))])
    assert res.exit_code == 0, res.output
    written = every_byte(tmp_path / "out.zarr", tmp_path / "out.zarr.pipeline")
    for secret in SECRETS:
        assert secret.encode() not in written, secret
    recorded = zarr.open_group(tmp_path / "out.zarr", mode="r")["result"].attrs["pipeline"]["config"]
    opts = recorded["output"]["storage_options"]
    assert opts == recorded["inputs"]["a"]["storage_options"]
    assert opts == {  # the harmless options kept, for the record; the others named, not shown
        "key": "<redacted>",
        "secret": "<redacted>",
        "anon": False,
        "endpoint_url": "http://127.0.0.1:9000/base?<redacted>",
        "client_kwargs": {"region_name": "eu-west-1", "aws_session_token": "<redacted>"},
        "config_kwargs": {"retries": {"max_attempts": 3}},
    }
    consolidated = json.loads((tmp_path / "out.zarr" / "zarr.json").read_text())
    assert "SECRET" not in json.dumps(consolidated)
    # rotated credentials: the same output, up to date
    res = cli.invoke(app, ["run", str(write_secret_config(tmp_path, 7))])
    assert res.exit_code == 0 and "up to date" in res.output, res.output
    np.testing.assert_array_equal(result(tmp_path), expected(a, b))


# ------------------------------------------------------------------------------------------------
# item 26: only what changes the output values is in the fingerprint


def test_adding_a_ready_marker_or_an_unstored_rule_keeps_the_output_up_to_date(tmp_path):
    a, b = make_input(tmp_path)
    assert cli.invoke(app, ["run", str(write_config(tmp_path))]).exit_code == 0
    (tmp_path / "_SUCCESS").write_text("")
    cfg = write_config(tmp_path, "R.yaml", ready_marker="_SUCCESS", unstored_chunks="error")
    res = cli.invoke(app, ["run", str(cfg)])
    assert res.exit_code == 0 and "up to date" in res.output, res.output
    res = cli.invoke(app, ["run", str(write_config(tmp_path, "M.yaml", ready_marker="_MISSING"))])
    assert res.exit_code == 5, res.output  # the marker is still checked
    cfg = yaml.safe_load(write_config(tmp_path).read_text())
    cfg["window"]["reduce"] = "mean"  # what does change the values still counts
    (tmp_path / "B.yaml").write_text(yaml.safe_dump(cfg))
    res = cli.invoke(app, ["run", str(tmp_path / "B.yaml")])
    assert res.exit_code == 2 and "the config changed" in res.output, res.output
    np.testing.assert_array_equal(result(tmp_path), expected(a, b))


# ------------------------------------------------------------------------------------------------
# item 28: after a damaged input chunk is repaired, the blocks already done stand


def damage_and_fail(tmp_path: Path) -> tuple[Path, set[tuple[int, int]]]:
    """Run A.yaml (one worker) on an input whose chunk c/2/2 of ``a`` is truncated: the run
    stops on it; returns the config and the blocks it recorded as done."""
    make_input(tmp_path)
    cfg = yaml.safe_load(write_config(tmp_path).read_text())
    cfg["compute"]["workers"] = 1
    path = tmp_path / "A.yaml"
    path.write_text(yaml.safe_dump(cfg))
    victim = tmp_path / "in.zarr" / "a" / "c" / "2" / "2"
    victim.write_bytes(victim.read_bytes()[:7])
    res = cli.invoke(app, ["run", str(path)])
    assert res.exit_code == 2 and "chunk c/2/2 cannot be read" in res.output, res.output
    done = done_blocks(tmp_path / "out.zarr")
    assert done, "the run must have finished some blocks before the damaged chunk"
    return path, done


def near_the_chunk(block: tuple[int, int]) -> bool:
    """Whether output block ``block`` (32x32, window 3: one pixel of halo) reads a pixel of
    chunk (2, 2) = rows 64..95, columns 64..79."""
    rows = range(max(0, 32 * block[0] - 1), min(96, 32 * block[0] + 33))
    cols = range(max(0, 32 * block[1] - 1), min(80, 32 * block[1] + 33))
    return any(r >= 64 for r in rows) and any(c >= 64 for c in cols)


def test_a_repaired_input_chunk_keeps_the_blocks_already_done(tmp_path):
    cfg, done = damage_and_fail(tmp_path)
    g = zarr.open_group(tmp_path / "in.zarr", mode="a")
    g["a"][64:96, 64:80] = np.full((32, 16), 123, dtype=np.int16)  # repaired (with new values)
    res = runconfig.run(cfg)
    kept = {b for b in done if not near_the_chunk(b)}
    assert res.status == runconfig.DONE and res.skipped == len(kept) and res.computed == 9 - len(kept), res
    np.testing.assert_array_equal(result(tmp_path), expected(*read_inputs(tmp_path)))
    assert runconfig.run(cfg).status == runconfig.UP_TO_DATE


def test_another_change_besides_the_repair_is_still_a_different_input(tmp_path):
    cfg, _ = damage_and_fail(tmp_path)
    g = zarr.open_group(tmp_path / "in.zarr", mode="a")
    g["a"][64:96, 64:80] = np.full((32, 16), 123, dtype=np.int16)
    g["a"][0, 0] = 7  # a chunk a done block read
    res = cli.invoke(app, ["run", str(cfg)])
    assert res.exit_code == 2 and "the data or metadata of input a changed" in res.output, res.output
    assert cli.invoke(app, ["run", "--overwrite", str(cfg)]).exit_code == 0
    np.testing.assert_array_equal(result(tmp_path), expected(*read_inputs(tmp_path)))


@pytest.mark.parametrize("boundary", ["shrink", "reflect", "wrap"])
def test_the_blocks_dropped_are_those_whose_window_reads_the_chunk(tmp_path, boundary):
    """Every block whose windows read a pixel of chunk (2, 2), by brute force over the pixels
    (``wrap``: the halo of the first row and column of blocks comes from the opposite edge)."""
    from pipeline.runner import prepare, repaired

    make_input(tmp_path)
    cfg = yaml.safe_load(write_config(tmp_path).read_text())
    cfg["window"] = {"size": 5, "reduce": "sum", "boundary": boundary}
    cfg["compute"]["chunks"] = [16, 16]
    path = tmp_path / "W.yaml"
    path.write_text(yaml.safe_dump(cfg))
    prep = prepare.prepare(path)
    blocks = {(i, j) for i in range(len(prep.plan.out_chunks[0])) for j in range(len(prep.plan.out_chunks[1]))}
    got = repaired.stale_blocks(prep, blocks, {"a": {"regions": [[[64, 96], [64, 80]]]}})
    offsets = [np.cumsum((0,) + c) for c in prep.plan.in_chunks]
    want = set()
    for i, j in blocks:  # the input pixels the block's windows reach: its input block +- 2
        rows = {r % 96 if boundary == "wrap" else r for r in range(offsets[0][i] - 2, offsets[0][i + 1] + 2)}
        cols = {c % 80 if boundary == "wrap" else c for c in range(offsets[1][j] - 2, offsets[1][j + 1] + 2)}
        if any(64 <= r < 96 for r in rows) and any(64 <= c < 80 for c in cols):
            want.add((i, j))
    assert got == want and want != blocks


def test_a_run_finished_after_a_transient_read_error_is_not_up_to_date_after_a_change(tmp_path, monkeypatch):
    """A read error that goes away by itself (the run is rerun unchanged and finishes) leaves a
    record; a later change of that chunk must recompute the blocks that read it, never call
    the output up to date."""
    from pipeline.errors import InputError as Err
    from pipeline.storage import zarrchunks

    make_input(tmp_path)
    cfg = write_config(tmp_path)
    real = zarrchunks.DirectChunks.read

    def flaky(self, coords):
        if tuple(coords) == (2, 2) and self.where.startswith("inputs.a"):
            raise zarrchunks.damaged(Err("chunk c/2/2 cannot be read (EIO)", where=self.where), self.where, "c/2/2", coords, self.chunks, self.shape)
        return real(self, coords)

    monkeypatch.setattr(zarrchunks.DirectChunks, "read", flaky)
    with pytest.raises(Err, match="c/2/2"):
        runconfig.run(cfg)
    monkeypatch.setattr(zarrchunks.DirectChunks, "read", real)
    assert runconfig.run(cfg).status == runconfig.DONE  # the same input: resumed, complete
    zarr.open_group(tmp_path / "in.zarr", mode="a")["a"][64:96, 64:80] = np.full((32, 16), -77, dtype=np.int16)
    res = runconfig.run(cfg)
    assert res.status == runconfig.DONE and 0 < res.computed < 9, res
    np.testing.assert_array_equal(result(tmp_path), expected(*read_inputs(tmp_path)))


def test_credentials_on_s3_are_never_written_and_rotating_them_keeps_the_output(tmp_path, s3):  # noqa: F811 - the fixture
    """Inputs and output on a loopback S3 server (moto), the credentials in the config."""
    import s3fs

    a, b = (np.random.default_rng(14).integers(-300, 300, SHAPE, dtype=np.int16) for _ in range(2))

    def opts(n: int) -> dict:
        return {"endpoint_url": s3["endpoint_url"], "key": f"AKIAROTATE{n}", "secret": f"rotated-secret-{n}"}

    src = zarr.open_group(store="s3://pipeline-test/cred-in.zarr", storage_options=opts(0), mode="w")
    for name, arr in (("a", a), ("b", b)):
        src.create_array(name, shape=SHAPE, dtype=arr.dtype, chunks=CHUNKS)[...] = arr

    def cfg(n: int) -> dict:
        return {
            "inputs": {k: {"path": "s3://pipeline-test/cred-in.zarr", "array": k, "storage_options": opts(n)} for k in ("a", "b")},
            "op": "a**2 - b**2",
            "window": {"size": 3},
            "output": {"path": "s3://pipeline-test/cred-out.zarr", "storage_options": opts(n)},
            "compute": {"chunks": [32, 32], "scheduler": "threads"},
        }

    assert runconfig.run(cfg(1)).status == runconfig.DONE
    fs = s3fs.S3FileSystem(**opts(0))
    names = fs.find("pipeline-test/cred-out.zarr") + fs.find("pipeline-test/cred-out.zarr.pipeline")
    written = b"".join(fs.cat_file(p) for p in names)
    assert b"rotated-secret-1" not in written and b"AKIAROTATE1" not in written
    assert runconfig.run(cfg(2)).status == runconfig.UP_TO_DATE
    got = zarr.open_group(store="s3://pipeline-test/cred-out.zarr", storage_options=opts(0), mode="r")["result"][...]
    np.testing.assert_array_equal(got, expected(a, b))
