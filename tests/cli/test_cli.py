"""Every command and every error path of the CLI: exit codes, one-line messages, nothing written."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import yaml
import zarr
from reference import SEED_A, SEED_B, SEED_EXPECTED, seed_loop
from typer.testing import CliRunner

from pipeline.cli.main import app

runner = CliRunner()


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "in.zarr"
    g = zarr.open_group(path, mode="w")
    for name, arr in (("a", SEED_A), ("b", SEED_B)):
        g.create_array(name, shape=arr.shape, dtype=arr.dtype, chunks=(4, 4), dimension_names=("y", "x"))[...] = arr
    g.create_array("c", shape=(5, 6), dtype="uint8", chunks=(5, 6))[...] = 1
    g.create_array("z", shape=(6, 6), dtype="complex64", chunks=(6, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr: "no Zarr V3 specification" for some of these dtypes
        for name, dtype in [("bo", bool), ("s", str), ("st", [("x", "u1"), ("y", "f4")]), ("t", "datetime64[s]")]:
            g.create_array(name, shape=(6, 6), dtype=dtype, chunks=(6, 6))
    g.create_array("e", shape=(0, 6), dtype="uint8", chunks=(1, 6))
    g.create_array("d3", shape=(1, 6, 6), dtype="uint8", chunks=(1, 6, 6))
    return path


def write_config(tmp_path, **overrides):
    cfg = {
        "inputs": {"a": {"path": "in.zarr", "array": "a"}, "b": {"path": "in.zarr", "array": "b"}},
        "op": "a**2 - b**2",
        "window": {"size": 3, "reduce": "sum", "boundary": "shrink"},
        "output": {"path": "out.zarr", "array": "result", "overwrite": False},
        "compute": {"scheduler": "threads", "chunks": "auto"},
    }
    for dotted, value in overrides.items():
        node = cfg
        *parents, last = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        if value is DELETE:
            node.pop(last)
        else:
            node[last] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


DELETE = object()


def assert_user_error(result, *fragments, tmp_path=None):
    assert result.exit_code == 2, result.output
    lines = [l for l in result.output.splitlines() if l.strip()]
    assert len(lines) == 1, result.output  # one line, no traceback
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    if tmp_path is not None:
        assert not (tmp_path / "out.zarr").exists()
        assert not (tmp_path / "out.zarr.pipeline").exists()  # no lock or ledger either


def test_run_validate_info(tmp_path, store):
    cfg = write_config(tmp_path)
    res = runner.invoke(app, ["validate", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "int32" in res.output and "halo" in res.output and "memory/task" in res.output
    assert not (tmp_path / "out.zarr").exists()  # validate writes nothing

    res = runner.invoke(app, ["run", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "out.zarr" in res.output
    assert np.array_equal(zarr.open_group(tmp_path / "out.zarr", mode="r")["result"][...], SEED_EXPECTED)

    res = runner.invoke(app, ["info", str(tmp_path / "out.zarr")])
    assert res.exit_code == 0, res.output
    assert "(6, 6)" in res.output and "int32" in res.output and "Crc32c" in res.output and "pipeline" in res.output


def test_existing_output_is_refused_untouched(tmp_path, store):
    """Same config again: up to date, nothing recomputed; a different config: refused untouched
    unless overwrite is asked for (in the config or with --overwrite)."""
    cfg = write_config(tmp_path)
    assert runner.invoke(app, ["run", str(cfg)]).exit_code == 0
    arr = zarr.open_group(tmp_path / "out.zarr", mode="a")["result"]
    arr[0, 0] = 12345  # a marker that a rerun or a refused run must not touch
    res = runner.invoke(app, ["run", str(cfg)])
    assert res.exit_code == 0 and "up to date" in res.output, res.output
    assert zarr.open_group(tmp_path / "out.zarr", mode="r")["result"][0, 0] == 12345  # nothing computed
    other = write_config(tmp_path, window__size=5)
    res = runner.invoke(app, ["run", str(other)])
    assert_user_error(res, "output.path", "exists", "overwrite")
    assert zarr.open_group(tmp_path / "out.zarr", mode="r")["result"][0, 0] == 12345
    cfg = write_config(tmp_path, output__overwrite=True)  # the same config with overwrite: still up to date
    res = runner.invoke(app, ["run", str(cfg)])
    assert res.exit_code == 0 and "up to date" in res.output, res.output
    other = write_config(tmp_path, window__size=5)  # (write_config reuses one file name)
    res = runner.invoke(app, ["run", "--overwrite", str(other)])
    assert res.exit_code == 0, res.output
    assert np.array_equal(zarr.open_group(tmp_path / "out.zarr", mode="r")["result"][...], seed_loop(SEED_A, SEED_B, 5))


@pytest.mark.parametrize(
    "overrides,fragments",
    [
        ({"windw": {"size": 3}}, ["windw", "did you mean 'window'"]),
        ({"window__sise": 3}, ["window.sise", "did you mean 'size'"]),
        ({"window__size": 0}, ["window.size"]),
        ({"window__size": -3}, ["window.size"]),
        ({"window__size": 10**9}, ["window.size"]),
        ({"window__size": "3"}, ["window.size"]),
        ({"window__size": [3, 3, 3]}, ["window.size"]),
        ({"window__reduce": "median"}, ["window.reduce"]),
        ({"window__boundary": "wrapp"}, ["window.boundary"]),
        ({"window__size": DELETE}, ["window.size", "missing"]),
        ({"op": "a**2 - c2"}, ["op", "c2"]),
        ({"op": "__import__('os')"}, ["op"]),
        ({"op": "a.real"}, ["op"]),
        ({"output__overwrite": "yes"}, ["output.overwrite"]),
        ({"compute__scheduler": "gpu"}, ["compute.scheduler"]),
        ({"compute__chunks": 0}, ["compute.chunks"]),
        ({"inputs__a__path": "missing.zarr"}, ["inputs.a", "missing.zarr", "does not exist"]),
        ({"inputs__a__array": "nope"}, ["inputs.a", "nope"]),
        ({"inputs__b__array": "c"}, ["shape"]),
        ({"inputs__b__array": "z"}, ["complex64"]),
        ({"inputs": {}}, ["inputs"]),
        ({"inputs__1bad": {"path": "in.zarr", "array": "a"}}, ["inputs"]),
        ({"output__path": "in.zarr"}, ["output.path", "overlaps"]),
        ({"output__path": "in.zarr/sub"}, ["output.path", "overlaps"]),
        ({"window__boundary": "valid", "window__size": 9}, ["window.size", "larger than the image"]),
        # wrong types and absurd values
        ({"window__size": 1.5}, ["window.size"]),
        ({"window__size": True}, ["window.size"]),
        ({"window__size": [0, 3]}, ["window.size"]),
        ({"window__size": 2**40}, ["window.size"]),
        ({"window__size": None}, ["window.size"]),
        ({"op": 3}, ["op"]),
        ({"op": ""}, ["op"]),
        ({"inputs__a": "in.zarr"}, ["inputs.a"]),
        ({"inputs__a__pth": "in.zarr"}, ["inputs.a.pth", "did you mean 'path'"]),
        ({"output__overwirte": True}, ["output.overwirte", "did you mean 'overwrite'"]),
        ({"compute__workers": 0}, ["compute.workers"]),
        ({"output": "out.zarr"}, ["output"]),
        # dtypes and shapes the pipeline cannot process exactly
        ({"inputs__b__array": "s"}, ["in.zarr:s", "not supported"]),
        ({"inputs__b__array": "st"}, ["in.zarr:st", "not supported"]),
        ({"inputs__b__array": "t"}, ["in.zarr:t", "datetime64", "not supported"]),
        ({"inputs__b__array": "e"}, ["in.zarr:e", "empty"]),
        ({"inputs__b__path": "in.zarr/a"}, ["inputs.b", "no array 'b'"]),
        # hostile expressions
        ({"op": "a**99999999"}, ["op", "too large"]),
        ({"op": "open('/etc/passwd')"}, ["op"]),
        ({"op": "(lambda: a)()"}, ["op"]),
        ({"op": "a.__class__"}, ["op"]),
        ({"op": "a if b else a"}, ["op"]),
        ({"op": "(" * 300 + "a" + ")" * 300}, ["op"]),
        ({"op": "a +"}, ["op", "syntax"]),
        # path tricks and URL schemes
        ({"output__path": "out.zarr/../in.zarr"}, ["output.path", "overlaps"]),
        ({"output__path": "."}, ["output.path", "overlaps"]),
        ({"output__array": "../escape"}, ["output.array"]),
        ({"inputs__a__array": "../a"}, ["inputs.a.array"]),
        ({"inputs__a__path": "ftp://example.com/in.zarr"}, ["inputs.a.path", "'ftp' is not allowed"]),
        ({"inputs__a__path": "javascript:alert(1)"}, ["inputs.a.path", "'javascript' is not allowed"]),
        ({"output__path": "https://example.com/out.zarr"}, ["output.path", "read-only"]),
        ({"output__path": "s3:bucket/out.zarr"}, ["output.path", "malformed URL"]),
        ({"inputs__a__path": "in\x00.zarr"}, ["inputs.a.path", "control character"]),
    ],
)
def test_bad_config_one_line_exit_2_nothing_written(tmp_path, store, overrides, fragments):
    cfg = write_config(tmp_path, **overrides)
    for cmd in ("validate", "run"):
        assert_user_error(runner.invoke(app, [cmd, str(cfg)]), *fragments, tmp_path=tmp_path)


@pytest.mark.parametrize(
    "text,fragments",
    [
        ("inputs: [\n  a: 1\n", ["config.yaml:", "invalid YAML"]),
        ("op: a\nop: b\n", ["duplicate key 'op'", ":2"]),
        ("op: !!python/object/apply:os.system ['echo hi']\n", ["invalid YAML", "python"]),
        ("- just\n- a list\n", ["mapping"]),
        ('inputs: {}\nop: "a**2\nwindow: {size: 3}\n', ["config.yaml:", "invalid YAML"]),
        ("inputs:\n\ta: 1\n", ["config.yaml:2", "invalid YAML"]),
        ("", ["mapping"]),
        ("op: !!python/name:os.system\n", ["invalid YAML", "python"]),
        ("op: !Ref a\n", ["invalid YAML", "!Ref"]),
        ("window:\n  size: 3\n  size: 5\n", ["duplicate key 'size'", ":3"]),
        (
            "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
            "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
            "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\nop: *h\n",
            ["config.yaml", "expands to more than"],
        ),
        ("op: &a [*a]\n", ["config.yaml", "expands to more than"]),
    ],
)
def test_bad_yaml(tmp_path, store, text, fragments):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text)
    assert_user_error(runner.invoke(app, ["run", str(cfg)]), *fragments, tmp_path=tmp_path)


def test_symlink_tricks_and_foreign_folders_refused(tmp_path, store):
    """An output that reaches an input through a symlink (the store itself, or the array folder
    inside it), or that is someone's non-Zarr folder, is refused before anything is written."""
    (tmp_path / "link.zarr").symlink_to(store)
    cfg = write_config(tmp_path, output__path="link.zarr")
    assert_user_error(runner.invoke(app, ["run", str(cfg)]), "output.path", "overlaps", tmp_path=tmp_path)

    fake = tmp_path / "fake.zarr"
    fake.mkdir()
    (fake / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    (fake / "result").symlink_to(store / "a")  # writing the result would overwrite input a
    cfg = write_config(tmp_path, output__path="fake.zarr")
    assert_user_error(runner.invoke(app, ["run", str(cfg)]), "output.path", "overlaps", tmp_path=tmp_path)
    assert np.array_equal(zarr.open_group(store, mode="r")["a"][...], SEED_A)

    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("precious")
    for target in ("home", "thesis"):
        path = home if target == "home" else home / "thesis.tex"
        cfg = write_config(tmp_path, output__path=str(path), output__overwrite=True)
        assert_user_error(runner.invoke(app, ["run", str(cfg)]), "output.path", str(path), tmp_path=tmp_path)
    assert sorted(p.name for p in home.iterdir()) == ["thesis.tex"]
    assert (home / "thesis.tex").read_text() == "precious"


def test_missing_config_file(tmp_path):
    assert_user_error(runner.invoke(app, ["run", str(tmp_path / "nope.yaml")]), "nope.yaml", "not found")


def test_info_missing_store(tmp_path):
    assert_user_error(runner.invoke(app, ["info", str(tmp_path / "nope.zarr")]), "nope.zarr")


def test_console_script_from_another_directory(tmp_path, store):
    """The installed command, run from an unrelated working directory (as cron does), with a
    real process: exit codes and stderr as a scheduler sees them."""
    cfg = write_config(tmp_path)
    exe = [sys.executable, "-m", "pipeline"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ok = subprocess.run([*exe, "run", "--quiet", str(cfg)], cwd=elsewhere, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert np.array_equal(zarr.open_group(tmp_path / "out.zarr", mode="r")["result"][...], SEED_EXPECTED)
    again = subprocess.run([*exe, "run", str(cfg)], cwd=elsewhere, capture_output=True, text=True)
    assert again.returncode == 0 and "up to date" in again.stdout, again.stderr
    cfg = write_config(tmp_path, window__size=5)  # a different config on the same output: refused
    bad = subprocess.run([*exe, "run", str(cfg)], cwd=elsewhere, capture_output=True, text=True)
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
    dbg = subprocess.run([*exe, "--debug", "run", str(cfg)], cwd=elsewhere, capture_output=True, text=True)
    assert dbg.returncode != 0 and "Traceback" in dbg.stderr


def test_internal_error_is_one_line_exit_1(tmp_path, store, monkeypatch):
    from pipeline.runner import runconfig as runner_mod

    def boom(*args, **kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(runner_mod, "execute", boom)
    cfg = write_config(tmp_path)
    res = runner.invoke(app, ["run", str(cfg)])
    assert res.exit_code == 1
    assert "kaboom" in res.output and "--debug" in res.output and "Traceback" not in res.output


def test_binary_config_file(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_bytes(b"\xff\xfe\x00garbage\x80")
    assert_user_error(runner.invoke(app, ["run", str(cfg)]), "config.yaml", tmp_path=tmp_path)


@pytest.mark.parametrize(("exc", "code"), [("abort", 4), ("exit", 3)])
def test_json_entrypoint_maps_typer_abort_and_exit(monkeypatch, exc, code):
    """With --log-format json the entrypoint catches typer's Abort (interrupted, exit 4) and Exit
    (its own code): typer >= 0.20's bundled click has neither class in its exceptions module."""
    import typer

    import pipeline.cli.main as cli
    from pipeline.errors import ExitCode

    def raising(*args, **kwargs):
        raise typer.Abort() if exc == "abort" else typer.Exit(3)

    monkeypatch.setattr(cli, "app", raising)
    with pytest.raises(SystemExit) as info:
        cli.entrypoint(["--log-format", "json", "info"])
    assert info.value.code == (int(ExitCode.INTERRUPTED) if exc == "abort" else code)
