"""Data safety (issue 11): the tool deletes or replaces only what it created itself inside the
output it was asked to write; metadata is never a path to trust; symlinks are not followed.

Every test reproduces an attack or accident from the security review and checks what must still
exist afterwards (a victim folder, an input array's values) against the values written first."""

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
from typer.testing import CliRunner

from pipeline.cli.main import app

cli = CliRunner()

A = np.arange(16 * 16, dtype=np.uint8).reshape(16, 16) % 7
B = (np.arange(16 * 16, dtype=np.uint8).reshape(16, 16) * 3) % 5


def make_input(path: Path, coords: bool = False) -> Path:
    g = zarr.open_group(path, mode="w")
    for name, arr in (("a", A), ("b", B)):
        g.create_array(name, shape=arr.shape, dtype=arr.dtype, chunks=(8, 8), dimension_names=("y", "x"))[...] = arr
    if coords:
        for dim in ("y", "x"):
            g.create_array(dim, shape=(16,), dtype="float64", chunks=(16,), dimension_names=(dim,))[...] = np.arange(16) * 0.5
    return path


def write_config(root: Path, name: str = "c.yaml", *, inp: str = "in.zarr", out: str = "out.zarr", array: str = "result", op: str = "a + b", **extra) -> Path:
    cfg = {
        "inputs": {"a": {"path": inp, "array": "a"}, "b": {"path": inp, "array": "b"}},
        "op": op,
        "window": {"size": 3, "boundary": "shrink"},
        "output": {"path": out, "array": array},
        "compute": {"chunks": 8, "scheduler": "threads"},
    }
    cfg.update(extra)
    p = root / name
    p.write_text(yaml.safe_dump(cfg))
    return p


def expected(op: str = "a + b") -> np.ndarray:
    img = {"a + b": A.astype(np.int64) + B, "a - b": A.astype(np.int64) - B}[op]
    return brute_window_sum(img, 3, boundary="shrink")


def run(*args: str):
    return cli.invoke(app, list(args))


def one_line(res) -> str:
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    return lines[0]


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_input(tmp_path / "in.zarr")
    return tmp_path


# -- item 1: verify must not take a path from metadata -------------------------------------------


@pytest.mark.parametrize("planted", ["ABS", "../../victim", "result/../../../victim"])
def test_verify_ignores_ledger_path_planted_in_metadata(root, planted):
    victim = root / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    cfg = write_config(root)
    assert run("run", "-q", str(cfg)).exit_code == 0
    shutil.rmtree(root / "out.zarr.pipeline")
    meta_path = root / "out.zarr" / "result" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["pipeline"]["ledger"] = str(victim) if planted == "ABS" else planted
    meta_path.write_text(json.dumps(meta))
    os.unlink(root / "out.zarr" / "result" / "c" / "0" / "0")

    res = run("verify", str(root / "out.zarr"))
    assert res.exit_code == 2
    assert "ledger" in one_line(res)
    assert (victim / "precious.txt").read_text() == "keep me"
    assert sorted(os.listdir(victim)) == ["precious.txt"]


def test_verify_refuses_fingerprint_planted_as_path(root):
    victim = root / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    cfg = write_config(root)
    assert run("run", "-q", str(cfg)).exit_code == 0
    meta_path = root / "out.zarr" / "result" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["pipeline"]["fingerprint"] = "../../../victim"
    meta_path.write_text(json.dumps(meta))
    os.unlink(root / "out.zarr" / "result" / "c" / "0" / "0")
    res = run("verify", str(root / "out.zarr"))
    assert res.exit_code == 2, res.output
    assert "fingerprint" in one_line(res)
    assert sorted(os.listdir(victim)) == ["precious.txt"]


def test_verify_still_marks_and_rerun_repairs(root):
    """The legitimate path still works: a lost chunk is found, marked, and a rerun repairs it."""
    cfg = write_config(root)
    assert run("run", "-q", str(cfg)).exit_code == 0
    shutil.rmtree(root / "out.zarr.pipeline")
    os.unlink(root / "out.zarr" / "result" / "c" / "0" / "0")
    res = run("verify", str(root / "out.zarr"))
    assert res.exit_code != 0 and "1 missing" in res.output
    assert run("run", "-q", str(cfg)).exit_code == 0
    np.testing.assert_array_equal(zarr.open_array(root / "out.zarr", path="result")[...], expected())


# -- item 2: the sidecar folder --------------------------------------------------------------------


def test_sidecar_symlink_to_input_is_refused(root):
    """(a) ``o.zarr.pipeline -> in.zarr`` with output array ``a``: the input's ``a`` survived."""
    os.symlink("in.zarr", root / "o.zarr.pipeline")
    cfg = write_config(root, out="o.zarr", array="a")
    res = run("run", str(cfg))
    assert res.exit_code == 2
    assert "o.zarr.pipeline" in one_line(res)
    np.testing.assert_array_equal(zarr.open_array(root / "in.zarr", path="a")[...], A)


def test_input_store_named_like_the_sidecar_is_refused(root):
    """(b) an input store that *is* ``o.zarr.pipeline`` (no symlink)."""
    make_input(root / "o.zarr.pipeline")
    cfg = write_config(root, inp="o.zarr.pipeline", out="o.zarr", array="a")
    res = run("run", str(cfg))
    assert res.exit_code == 2
    assert "overlaps input store" in one_line(res)
    np.testing.assert_array_equal(zarr.open_array(root / "o.zarr.pipeline", path="a")[...], A)


def test_sidecar_symlink_elsewhere_is_refused(root):
    """(c) ``out/s.zarr.pipeline -> ../victim``: nothing deleted or written into ``victim``."""
    victim = root / "victim"
    (victim / "result").mkdir(parents=True)
    (victim / "result" / "precious.txt").write_text("keep me")
    (root / "out").mkdir()
    os.symlink("../victim", root / "out" / "s.zarr.pipeline")
    cfg = write_config(root, out="out/s.zarr")
    res = run("run", str(cfg))
    assert res.exit_code == 2
    assert "symlink" in one_line(res)
    assert tree(victim) == {"result/precious.txt": b"keep me"}


def test_ledger_folder_symlink_is_refused(root):
    victim = root / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    (root / "out.zarr.pipeline").mkdir()
    os.symlink(victim, root / "out.zarr.pipeline" / "result")
    res = run("run", str(write_config(root)))
    assert res.exit_code == 2 and "symlink" in one_line(res)
    assert tree(victim) == {"precious.txt": b"keep me"}


# -- item 3: symlinks inside the output store ------------------------------------------------------


@pytest.mark.parametrize("link", ["chunk", "row"])
def test_symlinked_chunk_inside_output_is_refused(root, link):
    cfg = write_config(root)
    assert run("run", "-q", str(cfg)).exit_code == 0
    before = tree(root / "in.zarr")
    # a different config over the same output (overwrite), whose chunk points into the input
    chunk_dir = root / "out.zarr" / "result" / "c"
    if link == "chunk":
        os.unlink(chunk_dir / "0" / "0")
        os.symlink(os.path.relpath(root / "in.zarr" / "a" / "c" / "0" / "0", chunk_dir / "0"), chunk_dir / "0" / "0")
    else:
        shutil.rmtree(chunk_dir / "1")
        os.symlink(os.path.relpath(root / "in.zarr" / "a" / "c" / "1", chunk_dir), chunk_dir / "1")
    cfg2 = write_config(root, "c2.yaml", op="a - b", output={"path": "out.zarr", "array": "result", "overwrite": True})
    res = run("run", str(cfg2))
    assert res.exit_code == 2
    assert "symlink" in one_line(res)
    assert tree(root / "in.zarr") == before


# -- item 4: coordinate arrays ---------------------------------------------------------------------


def test_user_coordinate_array_is_not_replaced(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_input(tmp_path / "in.zarr", coords=True)
    g = zarr.open_group(tmp_path / "out.zarr", mode="w")
    mine = g.create_array("y", shape=(3,), dtype="int32", chunks=(3,), attributes={"owner": "me"})
    mine[...] = [7, 8, 9]
    res = run("run", str(write_config(tmp_path)))
    assert res.exit_code == 2
    assert "out.zarr:y" in one_line(res)
    y = zarr.open_array(tmp_path / "out.zarr", path="y")
    assert y[...].tolist() == [7, 8, 9] and y.attrs["owner"] == "me"
    assert "result" not in zarr.open_group(tmp_path / "out.zarr", mode="r")
    # even --overwrite does not replace an array the tool did not write
    res = run("run", "--overwrite", str(write_config(tmp_path)))
    assert res.exit_code == 2 and zarr.open_array(tmp_path / "out.zarr", path="y")[...].tolist() == [7, 8, 9]


def test_equal_coordinate_array_is_kept_and_run_succeeds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_input(tmp_path / "in.zarr", coords=True)
    g = zarr.open_group(tmp_path / "out.zarr", mode="w")
    g.create_array("y", shape=(16,), dtype="float64", chunks=(16,), attributes={"units": "m"})[...] = np.arange(16) * 0.5
    assert run("run", "-q", str(write_config(tmp_path))).exit_code == 0
    y = zarr.open_array(tmp_path / "out.zarr", path="y")
    assert y.attrs["units"] == "m"  # not rewritten
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "out.zarr", path="result")[...], expected())
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "out.zarr", path="x")[...], np.arange(16) * 0.5)


# -- item 6: --overwrite keeps the old output until the new one is complete ------------------------


def _corrupt_chunk(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:5])  # truncated: fails to decode


def test_overwrite_keeps_old_output_when_new_run_fails(root):
    cfg = write_config(root)
    assert run("run", "-q", str(cfg)).exit_code == 0
    good = zarr.open_array(root / "out.zarr", path="result")[...]
    np.testing.assert_array_equal(good, expected())
    _corrupt_chunk(root / "in.zarr" / "b" / "c" / "1" / "1")  # the night's input got damaged

    res = run("run", str(cfg))
    assert res.exit_code == 2
    line = one_line(res)
    assert "(the data or metadata of input b changed)" in line

    res = run("run", "--overwrite", str(cfg))
    assert res.exit_code != 0 and "c/1/1" in res.output
    # the good output is intact and still says complete
    arr = zarr.open_array(root / "out.zarr", path="result")
    np.testing.assert_array_equal(arr[...], good)
    assert arr.attrs["pipeline"]["complete"] is True
    with zarr.config.set({"default_zarr_format": 3}):
        import xarray as xr

        np.testing.assert_array_equal(xr.open_zarr(root / "out.zarr")["result"].values, good)


def test_overwrite_replaces_when_new_run_completes(root):
    cfg = write_config(root)
    assert run("run", "-q", str(cfg)).exit_code == 0
    cfg2 = write_config(root, "c2.yaml", op="a - b")
    res = run("run", str(cfg2))
    assert res.exit_code == 2 and "(the config changed)" in one_line(res)
    assert run("run", "-q", "--overwrite", str(cfg2)).exit_code == 0
    np.testing.assert_array_equal(zarr.open_array(root / "out.zarr", path="result")[...], expected("a - b"))
    names = sorted(zarr.open_group(root / "out.zarr", mode="r").array_keys())
    assert names == ["result"]
    assert run("run", str(cfg2)).exit_code == 0  # up to date
    assert run("verify", str(root / "out.zarr")).exit_code == 0


# -- item 5: temp files and the batch report -------------------------------------------------------


def test_report_path_that_is_the_config_is_refused_before_running(root):
    cfg = write_config(root, "k2.yaml")
    text = cfg.read_text()
    res = run("run", "-q", "--report", str(cfg), str(cfg))
    assert res.exit_code == 2 and "k2.yaml" in one_line(res)
    assert cfg.read_text() == text
    assert not (root / "out.zarr").exists()  # refused before any run wrote anything


def test_report_path_inside_an_input_is_refused(root):
    cfg = write_config(root)
    before = tree(root / "in.zarr")
    res = run("run", "-q", "--report", str(root / "in.zarr" / "zarr.json"), str(cfg))
    assert res.exit_code == 2 and "inputs.a" in one_line(res)
    assert tree(root / "in.zarr") == before and not (root / "out.zarr").exists()


def test_unwritable_report_folder_is_found_before_running(root):
    (root / "afile").write_text("x")
    res = run("run", "-q", "--report", str(root / "afile" / "r.json"), str(write_config(root)))
    assert res.exit_code == 2 and "not writable" in one_line(res)
    assert not (root / "out.zarr").exists()


def test_report_temp_file_does_not_follow_a_planted_symlink(root):
    victim = root / "victim.txt"
    victim.write_text("keep me")
    os.symlink(victim, root / f".r.json.{os.getpid()}.tmp")
    res = run("run", "-q", "--report", str(root / "r.json"), str(write_config(root)))
    assert res.exit_code == 0, res.output
    assert victim.read_text() == "keep me"
    assert json.loads((root / "r.json").read_text())["runs"][0]["status"] == "done"


def _cache(monkeypatch, folder: Path):
    from pipeline.kernels import compiled

    monkeypatch.setenv("PIPELINE_CACHE_DIR", str(folder))
    monkeypatch.setattr(compiled, "_loaded", {})
    # the suite points NUMBA_CACHE_DIR at its temporary folder; these tests check the package's
    # own cache folder, where numba caches when NUMBA_CACHE_DIR is not set
    from numba.core import config as numba_config

    monkeypatch.setattr(numba_config, "CACHE_DIR", "")
    return compiled


def _kernel_case():
    import hashlib

    from pipeline.expr import parse_expression

    expr = parse_expression("a * 7 - b", {"a": np.dtype("uint8"), "b": np.dtype("int16")})
    arrays = {"a": np.arange(256, dtype=np.uint8), "b": np.arange(-128, 128, dtype=np.int16)}
    ref = arrays["a"].astype(np.int64) * 7 - arrays["b"]
    return expr, arrays, ref, hashlib.sha256


def test_kernel_cache_temp_file_does_not_follow_a_planted_symlink(tmp_path, monkeypatch):
    compiled = _cache(monkeypatch, tmp_path)
    expr, arrays, ref, sha = _kernel_case()
    (tmp_path / "kernels").mkdir(mode=0o700)
    digest = sha(compiled.source(expr).encode()).hexdigest()[:20]
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    os.symlink(victim, tmp_path / "kernels" / f"expr_{digest}.{os.getpid()}.tmp")
    np.testing.assert_array_equal(compiled.pointwise(expr)(arrays), ref)
    assert victim.read_text() == "keep me"


# -- item 8: the kernel cache is private; planted or corrupt entries never run ---------------------


def test_kernel_cache_writable_by_others_is_not_used(tmp_path, monkeypatch):
    compiled = _cache(monkeypatch, tmp_path)
    expr, arrays, ref, _ = _kernel_case()
    (tmp_path / "kernels").mkdir()
    os.chmod(tmp_path / "kernels", 0o777)
    np.testing.assert_array_equal(compiled.pointwise(expr)(arrays), ref)
    assert os.listdir(tmp_path / "kernels") == []  # compiled in memory, nothing read or written there


def test_kernel_cache_is_created_private(tmp_path, monkeypatch):
    compiled = _cache(monkeypatch, tmp_path / "c")
    expr, arrays, ref, _ = _kernel_case()
    np.testing.assert_array_equal(compiled.pointwise(expr)(arrays), ref)
    assert (os.stat(tmp_path / "c" / "kernels").st_mode & 0o777) == 0o700
    assert list((tmp_path / "c" / "kernels").glob("expr_*.py"))


def test_planted_pyc_is_not_run(tmp_path, monkeypatch):
    import importlib.util
    import py_compile

    compiled = _cache(monkeypatch, tmp_path)
    expr, arrays, ref, sha = _kernel_case()
    text = compiled.source(expr)
    folder = tmp_path / "kernels"
    folder.mkdir(mode=0o700)
    path = folder / f"expr_{sha(text.encode()).hexdigest()[:20]}.py"
    marker = tmp_path / "pwned"
    evil = f"open({str(marker)!r}, 'w').write('x')\n"
    evil += "#" * (len(text.encode()) - len(evil.encode()) - 1) + "\n"
    path.write_text(evil)
    os.utime(path, (1_000_000_000, 1_000_000_000))
    py_compile.compile(str(path), cfile=importlib.util.cache_from_source(str(path)), doraise=True)
    path.write_text(text)  # same size and mtime: the planted .pyc matches the real source
    os.utime(path, (1_000_000_000, 1_000_000_000))
    np.testing.assert_array_equal(compiled.pointwise(expr)(arrays), ref)
    assert not marker.exists()


def test_corrupt_numba_cache_entry_is_recompiled(tmp_path, monkeypatch):
    compiled = _cache(monkeypatch, tmp_path)
    expr, arrays, ref, _ = _kernel_case()
    np.testing.assert_array_equal(compiled.pointwise(expr)(arrays), ref)
    entries = list((tmp_path / "kernels" / "__pycache__").glob("*.nbi"))
    assert entries
    for p in entries:
        p.write_bytes(b"\x80\x04garbage")
    monkeypatch.setattr(compiled, "_loaded", {})
    np.testing.assert_array_equal(compiled.pointwise(expr)(arrays), ref)


def test_overwrite_swaps_every_statistic(root):
    cfg = write_config(root, window={"size": 3, "boundary": "shrink", "reduce": ["sum", "max"]})
    assert run("run", "-q", str(cfg)).exit_code == 0
    cfg2 = write_config(root, "c2.yaml", op="a - b", window={"size": 3, "boundary": "shrink", "reduce": ["sum", "max"]})
    assert run("run", "-q", "--overwrite", str(cfg2)).exit_code == 0
    g = zarr.open_group(root / "out.zarr", mode="r")
    assert sorted(g.array_keys()) == ["result_max", "result_sum", "x", "y"] or sorted(g.array_keys()) == ["result_max", "result_sum"]
    np.testing.assert_array_equal(g["result_sum"][...], expected("a - b"))
    img = A.astype(np.int64) - B
    ref_max = np.array([[img[max(0, i - 1) : i + 2, max(0, j - 1) : j + 2].max() for j in range(16)] for i in range(16)])
    np.testing.assert_array_equal(g["result_max"][...], ref_max)
    assert run("run", str(cfg2)).exit_code == 0 and run("verify", str(root / "out.zarr")).exit_code == 0
