"""What a new user sees (issue 12, items 5-7): every config problem, non-Zarr inputs, --version,
help text, progress, the summary's value ranges, verify --array."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import yaml
import zarr
from reference import brute_window
from typer.testing import CliRunner

import pipeline
from pipeline.batch import runbatch
from pipeline.cli.main import app

cli = CliRunner()


def _lines(result):
    return [l for l in result.output.splitlines() if l.strip()]


def _store(tmp_path, a=None):
    a = np.arange(42, dtype=np.uint8).reshape(6, 7) if a is None else a
    g = zarr.open_group(tmp_path / "in.zarr", mode="w")
    g.create_array("a", shape=a.shape, dtype=a.dtype, chunks=(6, 7), dimension_names=("y", "x"))[...] = a
    return a


def _write(tmp_path, cfg, name="c.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg))
    return p


# ------------------------------------------------------------------ 5: every config problem


def test_every_config_problem_one_line_each_with_hints(tmp_path):
    _store(tmp_path)
    cfg = {
        "inputs": {"a": {"path": "in.zarr", "array": "a", "nodta": 3}},
        "op": "a",
        "windw": {"size": 3},
        "output": {"path": "out.zarr", "overwrite": "maybe"},
    }
    p = _write(tmp_path, cfg)
    for cmd in ("validate", "run"):
        res = cli.invoke(app, [cmd, str(p)])
        assert res.exit_code == 2, res.output
        lines = _lines(res)
        assert "Traceback" not in res.output
        assert len(lines) == 4, res.output
        assert all(l.startswith(f"error: {p}: ") for l in lines), res.output
        text = "\n".join(lines)
        assert "windw: unknown key (did you mean 'window'?)" in text
        assert "inputs.a.nodta: unknown key (did you mean 'nodata'?)" in text
        assert "window: required key is missing" in text and "output.overwrite:" in text
    assert not (tmp_path / "out.zarr").exists()
    # the Python API: one exception whose message holds every problem
    with pytest.raises(pipeline.ConfigError) as info:
        pipeline.run(str(p))
    assert "did you mean 'window'?" in str(info.value) and "did you mean 'nodata'?" in str(info.value)
    assert len(info.value.lines) == 4


# ---------------------------------------------------------------------- 6: non-Zarr inputs


def _non_zarr(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    iio = pytest.importorskip("imageio.v3")
    img = np.arange(30, dtype=np.uint8).reshape(5, 6)
    tifffile.imwrite(tmp_path / "red.tif", img)
    iio.imwrite(tmp_path / "camera.png", img)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "red.tif").write_bytes((tmp_path / "red.tif").read_bytes())
    return {"red.tif": "a TIFF/GeoTIFF file", "camera.png": "a PNG image", "notes.txt": "is a file,", "folder": "a folder without zarr.json"}


def test_non_zarr_input_says_what_it_is_and_what_to_do(tmp_path):
    for name, what in _non_zarr(tmp_path).items():
        cfg = {"inputs": {"a": {"path": name, "array": "a"}}, "op": "a", "window": {"size": 3}, "output": {"path": "out.zarr"}}
        p = _write(tmp_path, cfg)
        # a .tif input is a GeoTIFF source, and `info` describes a GeoTIFF (tests/storage/test_geotiff.py,
        # tests/cli/test_info_geo.py): the other files are still refused
        commands = [] if name.endswith(".tif") else [["run", str(p)], ["validate", str(p)], ["info", str(tmp_path / name)]]
        for args in commands:
            res = cli.invoke(app, args)
            assert res.exit_code == 2, (args, res.output)
            lines = _lines(res)
            assert len(lines) == 1, res.output
            assert what in lines[0] and "not a Zarr store" in lines[0] and "Getting your data into Zarr" in lines[0], lines
        assert not (tmp_path / "out.zarr").exists()


# ------------------------------------------------------------------------------ 7: polish


def test_version():
    res = cli.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"pipeline {pipeline.__version__}"


@pytest.mark.parametrize("cmd", ["run", "verify", "validate", "info", "convert", "preview", "bench"])
def test_help_has_no_bool_placeholders_and_whole_first_sentences(cmd):
    res = cli.invoke(app, [cmd, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "<bool>" not in res.output
    import pipeline.cli.main as c

    doc = inspect.getdoc(getattr(c, cmd))
    first = " ".join(doc.split("\n\n")[0].split())
    listing = cli.invoke(app, ["--help"]).output
    assert first in " ".join(listing.split())  # shown whole in the command list (wrapped, not cut)
    # the description is rewrapped to the width, not broken where the docstring's lines end:
    # within a paragraph every line but the last is filled (a ragged "does not stop" / "the rest"
    # would leave a short line)
    body = res.output.split("\n\n", 1)[1].split("\nOptions:")[0].split("\nArguments:")[0]
    for para in body.strip().split("\n\n"):
        lines = para.splitlines()
        assert all(len(ln) + len(nxt.split()[0]) + 1 > 76 for ln, nxt in zip(lines, lines[1:])), para


def test_one_block_summary_range_per_statistic_without_fill(tmp_path):
    a = _store(tmp_path)
    a[:3, :3] = 7  # a whole 3x3 of nodata: its centre window has no valid pixel
    zarr.open_group(tmp_path / "in.zarr")["a"][...] = a
    cfg = {
        "inputs": {"a": {"path": "in.zarr", "array": "a", "nodata": 7}},
        "op": "a",
        "window": {"size": 3, "reduce": ["sum", "max"]},
        "output": {"path": "out.zarr"},
    }
    res = cli.invoke(app, ["run", str(_write(tmp_path, cfg))])
    assert res.exit_code == 0, res.output
    assert "1 block in" in res.output and "1 blocks" not in res.output, res.output
    parts = []
    for st in ("sum", "max"):
        ref = brute_window(a.astype(object), 3, st, missing=a == 7)
        values = [v for v in ref.ravel() if v is not None]
        assert len(values) < ref.size  # some windows are empty: their fill must not show
        parts.append(f"{st} in [{min(values)}, {max(values)}]")
    assert "values: " + ", ".join(parts) in res.output, res.output
    res = pipeline.run(str(_write(tmp_path, {**cfg, "output": {"path": "out2.zarr"}}, "d.yaml")))
    assert res.minimum == int(parts[0].split("[")[1].split(",")[0]) and set(res.ranges) == {"sum", "max"}


def test_progress_shows_time_left(monkeypatch):
    import io

    from pipeline.batch import log

    clock = iter([100.0, 100.0, 103.0, 106.0])
    monkeypatch.setattr(log.time, "monotonic", lambda: next(clock))
    err = io.StringIO()
    report = log.progress(runbatch.Log(out=io.StringIO(), err=err), "c.yaml")  # started at t=100
    report(1, 10)  # t=100: too early to report; the rate is measured from here
    report(4, 10)  # t=103: 3 blocks in 3 s, 6 to go
    report(10, 10)  # t=106: done, nothing left
    lines = err.getvalue().splitlines()
    assert lines == ["  4/10 blocks (40%) in 3.0 s, about 6 s left", "  10/10 blocks (100%) in 6.0 s"], lines


def test_verify_unknown_array_names_the_option(tmp_path):
    _store(tmp_path)
    cfg = {"inputs": {"a": {"path": "in.zarr", "array": "a"}}, "op": "a", "window": {"size": 3}, "output": {"path": "out.zarr"}}
    assert cli.invoke(app, ["run", str(_write(tmp_path, cfg))]).exit_code == 0
    res = cli.invoke(app, ["verify", str(tmp_path / "out.zarr"), "--array", "nope"])
    assert res.exit_code == 2 and len(_lines(res)) == 1, res.output
    assert _lines(res)[0].startswith("error: --array: no array 'nope'") and "result" in res.output, res.output
    assert cli.invoke(app, ["verify", str(tmp_path / "out.zarr"), "--array", "result"]).exit_code == 0
