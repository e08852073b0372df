"""Batch files and template values (issue 22, items 9-12, 15, 16, 25, 27): the batch deletes and
replaces only reports it wrote, checks --metrics like --report against every config as each set
of values resolves it, confines templated path values, reads spreadsheets' CSV, holds absolute
and relative paths to one limit; the kernel cache refuses a folder another user could swap.

Each test reproduces the review's case and checks what must still exist (bytes read before) and
the outputs against brute-force window sums."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr
from reference import brute_window_sum
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.config.load import load_config
from pipeline.errors import ConfigError

cli = CliRunner()

A = (np.arange(12 * 10, dtype=np.int16).reshape(12, 10) * 7) % 11 - 5
B = (np.arange(12 * 10, dtype=np.int16).reshape(12, 10) * 3) % 13


def make_input(path: Path, shift: int = 0) -> Path:
    g = zarr.open_group(path, mode="w")
    for name, arr in (("a", A + shift), ("b", B)):
        g.create_array(name, shape=arr.shape, dtype=arr.dtype, chunks=(4, 4), dimension_names=("y", "x"))[...] = arr
    return path


def expected(shift: int = 0) -> np.ndarray:
    return brute_window_sum((A + shift).astype(np.int64) ** 2 - B.astype(np.int64) ** 2, 3)


def config(path: Path, inp: str, out: str, **extra) -> Path:
    cfg = {
        "inputs": {"a": {"path": inp, "array": "a"}, "b": {"path": inp, "array": "b"}},
        "op": "a**2 - b**2",
        "window": {"size": 3, "reduce": "sum"},
        "output": {"path": out},
        "compute": {"chunks": [4, 4], "scheduler": "synchronous"},
        **extra,
    }
    path.write_text(json.dumps(cfg) if path.suffix == ".json" else yaml.safe_dump(cfg))
    return path


def run(*args: str):
    return cli.invoke(app, ["run", "-q", *map(str, args)])


def one_line(res) -> str:
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    return lines[0]


def result(store: Path) -> np.ndarray:
    return zarr.open_group(store, mode="r")["result"][...]


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_input(tmp_path / "in.zarr")
    return tmp_path


# -- item 9: retention deletes only reports this tool wrote ----------------------------------------


def test_retention_keeps_a_users_json_and_a_json_config_of_the_batch(root):
    reports = root / "reports"
    reports.mkdir()
    notes = reports / "pipeline-notes.json"
    notes.write_text('{"todo": "keep me"}\n')
    cfg = config(reports / "pipeline-day.json", str(root / "in.zarr"), str(root / "out.zarr"))  # a JSON config, run by the batch
    cfg_bytes, notes_bytes = cfg.read_bytes(), notes.read_bytes()
    os.utime(notes, (1_000_000_000, 1_000_000_000))  # the oldest files in the folder
    os.utime(cfg, (1_000_000_000, 1_000_000_000))
    for i in range(3):
        res = run(cfg, "--report", reports / f"pipeline-r{i}.json", "--keep-reports", "1")
        assert res.exit_code == 0, res.output
        os.utime(reports / f"pipeline-r{i}.json", (1_500_000_000 + i, 1_500_000_000 + i))  # older than the next
    assert sorted(p.name for p in reports.iterdir()) == ["latest.json", "pipeline-day.json", "pipeline-notes.json", "pipeline-r2.json"]
    assert cfg.read_bytes() == cfg_bytes and notes.read_bytes() == notes_bytes
    np.testing.assert_array_equal(result(root / "out.zarr"), expected())


def test_a_file_faking_the_name_but_not_the_marker_is_kept(root):
    from pipeline.batch.runbatch import REPORT_FORMAT, is_report

    fake = root / "pipeline-x.json"
    fake.write_text(json.dumps({"format": "something-else", "runs": []}))
    assert not is_report(fake)
    real = root / "pipeline-y.json"
    real.write_text(json.dumps({"format": REPORT_FORMAT}))
    assert is_report(real)
    os.symlink(real, root / "pipeline-z.json")
    assert not is_report(root / "pipeline-z.json")  # a link is never ours to delete


# -- item 10: latest.json replaces only a report of ours -------------------------------------------


def test_latest_json_that_is_not_a_report_is_refused_before_running(root):
    reports = root / "reports"
    reports.mkdir()
    latest = config(reports / "latest.json", str(root / "in.zarr"), str(root / "other.zarr"))
    before = latest.read_bytes()
    cfg = config(root / "c.yaml", "in.zarr", "out.zarr")
    res = run(cfg, "--report", reports / "pipeline-1.json", "--keep-reports", "3")
    assert res.exit_code == 2 and "latest.json" in one_line(res)
    assert latest.read_bytes() == before
    assert not (root / "out.zarr").exists() and not (reports / "pipeline-1.json").exists()


def test_latest_json_of_an_earlier_report_is_replaced(root):
    reports = root / "reports"
    cfg = config(root / "c.yaml", "in.zarr", "out.zarr")
    for i in range(2):
        res = run(cfg, "--report", reports / f"pipeline-{i}.json", "--keep-reports", "3")
        assert res.exit_code == 0, res.output
    latest = json.loads((reports / "latest.json").read_text())
    assert latest == json.loads((reports / "pipeline-1.json").read_text())
    assert latest["runs"][0]["status"] == "up-to-date"


# -- item 11: --metrics is checked like --report ---------------------------------------------------


@pytest.mark.parametrize("target", ["c.yaml", "in.zarr/a/zarr.json", "out.zarr/result/zarr.json", "r.json"])
def test_metrics_never_replaces_a_config_an_input_an_output_or_the_report(root, target):
    cfg = config(root / "c.yaml", "in.zarr", "out.zarr")
    assert run(cfg).exit_code == 0
    (root / "r.json").write_text("{}")
    before = {p: tree(p) if p.is_dir() else p.read_bytes() for p in (root / "in.zarr", root / "out.zarr", cfg)}
    res = run(cfg, "--report", root / "r.json", "--metrics", root / target)
    assert res.exit_code == 2 and "--metrics" in one_line(res), res.output
    assert {p: tree(p) if p.is_dir() else p.read_bytes() for p in before} == before
    assert (root / "r.json").read_text() == "{}"  # refused before the report was written
    np.testing.assert_array_equal(result(root / "out.zarr"), expected())


def test_metrics_in_an_unwritable_folder_is_found_before_running(root):
    (root / "afile").write_text("x")
    res = run(config(root / "c.yaml", "in.zarr", "out.zarr"), "--metrics", root / "afile" / "m.prom")
    assert res.exit_code == 2 and "not writable" in one_line(res)
    assert not (root / "out.zarr").exists()


# -- item 12: the report check sees the inputs as the batch's values resolve them ------------------


TEMPLATE = {"inputs": {"a": {"path": "in/${DATE}.zarr", "array": "a"}, "b": {"path": "in/${DATE}.zarr", "array": "b"}},
            "op": "a**2 - b**2", "window": {"size": 3}, "output": {"path": "out/${DATE}.zarr"},
            "compute": {"chunks": [4, 4], "scheduler": "synchronous"}}


@pytest.fixture
def days(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for i, day in enumerate(("d1", "d2")):
        make_input(tmp_path / "in" / f"{day}.zarr", shift=i)
    (tmp_path / "day.yaml").write_text(yaml.safe_dump(TEMPLATE))
    return tmp_path


@pytest.mark.parametrize("how", ["--var", "--vars-from"])
@pytest.mark.parametrize("option", ["--report", "--metrics"])
def test_batch_files_are_checked_against_each_days_inputs(days, how, option):
    before = tree(days / "in")
    (days / "days.csv").write_text("DATE\nd1\nd2\n")
    values = ["--var", "DATE=d1,d2"] if how == "--var" else ["--vars-from", days / "days.csv"]
    res = run(days / "day.yaml", *values, option, days / "in" / "d2.zarr" / "a" / "zarr.json")
    assert res.exit_code == 2 and "inputs.a of" in one_line(res) and "DATE=d2" in one_line(res), res.output
    assert tree(days / "in") == before and not (days / "out").exists()


# -- item 16: templated paths stay inside their component ------------------------------------------


@pytest.mark.parametrize("output, value", [("out/${DATE}.zarr", "../elsewhere"), ("${DATE}/out.zarr", "{root}/elsewhere"), ("${DATE}", "~")])
def test_a_variable_value_cannot_move_an_output(root, output, value, monkeypatch):
    monkeypatch.setenv("HOME", str(root / "home"))  # where '~' would lead
    value = value.format(root=root)
    cfg = config(root / "c.yaml", "in.zarr", output)
    (root / "rows.csv").write_text(f"DATE\n{value}\n")
    for values in (["--var", f"DATE={value}"], ["--vars-from", root / "rows.csv"]):
        res = run(cfg, *values)
        line = one_line(res)
        assert res.exit_code == 2 and "${DATE}" in line and "templates.allow_paths" in line and "output.path" in line, res.output
    assert sorted(p.name for p in root.iterdir()) == ["c.yaml", "in.zarr", "rows.csv"]


def test_values_that_join_into_dot_dot_are_refused(tmp_path):
    data = {**TEMPLATE, "output": {"path": "out/${A}${B}/x.zarr"}}
    with pytest.raises(ConfigError, match=r"\$\{A\} makes the path component '\.\.'"):
        load_config(data, variables={"A": ".", "B": ".", "DATE": "d1"}, confine={"A", "B", "DATE"})


def test_allow_paths_lets_a_variable_hold_a_path(root):
    cfg = config(root / "c.yaml", "in.zarr", "${DIR}/out.zarr", templates={"allow_paths": ["DIR"]})
    res = run(cfg, "--var", "DIR=../" + root.name + "/sub")
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(result(root / "sub" / "out.zarr"), expected())


def test_allow_paths_is_validated(root):
    cfg = config(root / "c.yaml", "in.zarr", "out/${D}.zarr", templates={"allow_path": ["D"]})
    res = run(cfg, "--var", "D=x")
    assert res.exit_code == 2 and "templates.allow_path" in res.output and "did you mean 'allow_paths'" in res.output, res.output


def test_environment_values_are_the_operators_own(root, monkeypatch):
    monkeypatch.setenv("SITE_ROOT", str(root / "site"))
    res = run(config(root / "c.yaml", "in.zarr", "${SITE_ROOT}/out.zarr"))
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(result(root / "site" / "out.zarr"), expected())


def test_fingerprint_unchanged_by_templates_key(root):
    cfg = config(root / "c.yaml", "in.zarr", "out/${D}.zarr")
    assert run(cfg, "--var", "D=x").exit_code == 0
    cfg2 = config(root / "c2.yaml", "in.zarr", "out/${D}.zarr", templates={"allow_paths": ["D"]})
    res = run(cfg2, "--var", "D=x")
    assert res.exit_code == 0 and "up to date" in res.output, res.output


# -- item 25: --vars-from as spreadsheets write it; empty values -----------------------------------


def test_vars_from_with_a_byte_order_mark(days):
    (days / "days.csv").write_text("DATE\r\nd1\r\nd2\r\n", encoding="utf-8-sig")
    res = run(days / "day.yaml", "--vars-from", days / "days.csv")
    assert res.exit_code == 0, res.output
    for i, day in enumerate(("d1", "d2")):
        np.testing.assert_array_equal(result(days / "out" / f"{day}.zarr"), expected(shift=i))


def test_a_quoted_value_starting_with_hash_is_a_value(root):
    cfg = config(root / "c.yaml", "in.zarr", "out/${TAG}.zarr")
    (root / "tags.csv").write_text('# tags to run\nTAG\n"#1"\n# not this one\nplain\n')
    res = run(cfg, "--vars-from", root / "tags.csv", "--report", root / "r.json")
    assert res.exit_code == 0, res.output
    assert [r["variables"] for r in json.loads((root / "r.json").read_text())["runs"]] == [{"TAG": "#1"}, {"TAG": "plain"}]
    np.testing.assert_array_equal(result(root / "out" / "#1.zarr"), expected())


@pytest.mark.parametrize("values", [["--var", "D=a,"], ["--var", "D="], ["--var", "D=a,,b"], ["--vars-from", "{root}/e.csv"]])
def test_an_empty_value_is_an_error_naming_the_variable(root, values):
    (root / "e.csv").write_text("E,D\nx,a\ny,\n")
    cfg = config(root / "c.yaml", "in.zarr", "out/${D}.zarr")
    res = run(cfg, *[v.format(root=root) for v in values])
    line = one_line(res)
    assert res.exit_code == 2 and " D" in line and "empty value" in line, res.output
    assert not (root / "out").exists()


# -- item 27: one path limit, absolute or relative -------------------------------------------------


def test_a_long_absolute_path_is_accepted_like_the_same_path_written_relatively(root):
    deep = root / ("d" * 120) / ("e" * 120)
    make_input(deep / "in.zarr")
    absolute = str(deep / "in.zarr")
    assert len(absolute) > 250
    relative = os.path.relpath(absolute, root)
    for i, inp in enumerate((absolute, relative)):
        res = run(config(root / f"c{i}.yaml", inp, f"out{i}.zarr"))
        assert res.exit_code == 0, res.output
        np.testing.assert_array_equal(result(root / f"out{i}.zarr"), expected())


def test_a_component_too_long_is_refused_absolute_or_relative(root):
    name = "n" * 256 + ".zarr"
    for path in (str(root / name), name):
        data = {**TEMPLATE, "output": {"path": path}}
        with pytest.raises(ConfigError, match="component longer than 255 bytes"):
            load_config(data, variables={"DATE": "d1"})


def test_a_relative_path_too_long_once_resolved_is_refused(root):
    short = 4096 - len(str(root)) // 2  # characters as written: under the limit, over it once resolved
    path = "/".join(["x" * 200] * (short // 201)) + "/" + "y" * (short - 201 * (short // 201) - 1)
    assert len(path) < 4096 < len(str(root / path))
    data = {**TEMPLATE, "output": {"path": path}}
    with pytest.raises(ConfigError, match="longer than 4096 bytes once resolved"):
        load_config(data, variables={"DATE": "d1"})
    with pytest.raises(ConfigError, match="longer than 4096 bytes"):
        load_config({**data, "output": {"path": str(root / path)}}, variables={"DATE": "d1"})


# -- item 15: the kernel cache under a folder another user could swap ------------------------------


def _kernel(monkeypatch, cache: Path):
    from pipeline.expr import parse_expression
    from pipeline.kernels import compiled

    monkeypatch.setenv("PIPELINE_CACHE_DIR", str(cache))
    monkeypatch.setattr(compiled, "_loaded", {})
    monkeypatch.setattr(compiled, "_warned", set(), raising=False)
    expr = parse_expression("a * 7 - b", {"a": np.dtype("uint8"), "b": np.dtype("int16")})
    a = np.arange(256, dtype=np.uint8)
    b = np.arange(-128, 128, dtype=np.int16)
    ref = np.array([int(x) * 7 - int(y) for x, y in zip(a, b)])  # exact Python ints
    return compiled.pointwise(expr), {"a": a, "b": b}, ref


def _chmod(path: Path, mode: int) -> Path:
    path.mkdir()
    os.chmod(path, mode)
    return path


def test_kernel_cache_under_a_folder_writable_by_others_is_not_used(tmp_path, monkeypatch):
    shared = _chmod(tmp_path / "shared", 0o777)
    fn, arrays, ref = _kernel(monkeypatch, shared / "cache")
    with pytest.warns(UserWarning, match=f"{shared} is writable by others"):
        out = fn(arrays)
    np.testing.assert_array_equal(out, ref)
    assert not list((shared / "cache").rglob("expr_*.py"))  # compiled in memory: nothing read or written there


def test_kernel_cache_through_a_link_into_a_group_writable_folder_is_not_used(tmp_path, monkeypatch):
    group = _chmod(tmp_path / "group", 0o775)
    os.symlink(group, tmp_path / "link")
    fn, arrays, ref = _kernel(monkeypatch, tmp_path / "link" / "cache")
    with pytest.warns(UserWarning, match="writable by its group"):
        out = fn(arrays)
    np.testing.assert_array_equal(out, ref)
    assert not list(group.rglob("expr_*.py"))


def test_kernel_cache_under_a_sticky_shared_folder_is_used(tmp_path, monkeypatch):
    sticky = _chmod(tmp_path / "sticky", 0o1777)  # like /tmp: others cannot rename our folders
    fn, arrays, ref = _kernel(monkeypatch, sticky / "cache")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(fn(arrays), ref)
    assert len(list((sticky / "cache" / "kernels").glob("expr_*.py"))) == 1


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to hand a folder to another user")
def test_kernel_cache_under_a_folder_of_another_user_is_not_used(tmp_path, monkeypatch):
    theirs = _chmod(tmp_path / "theirs", 0o755)
    (theirs / "cache").mkdir()
    os.chown(theirs, 65534, 65534)  # they may rename our cache folder inside their own
    fn, arrays, ref = _kernel(monkeypatch, theirs / "cache")
    with pytest.warns(UserWarning, match="owned by another user"):
        np.testing.assert_array_equal(fn(arrays), ref)
    assert not list(theirs.rglob("expr_*.py"))


def _numba_cache(monkeypatch, tmp_path: Path, cache: Path) -> dict:
    numba = pytest.importorskip("numba")
    from pipeline.kernels import jit

    monkeypatch.setattr(numba.core.config, "CACHE_DIR", str(cache))
    monkeypatch.setattr(jit, "_warned", set(), raising=False)
    src = tmp_path / "kmod.py"
    src.write_text("def f(x):\n    return x * 3 + 1\n")
    ns: dict = {}
    exec(compile(src.read_text(), str(src), "exec"), ns)  # noqa: S102 - a fixed test function
    return ns


@pytest.mark.parametrize("mode, used", [(0o777, False), (0o1777, True)])
def test_numba_cache_of_the_kernels_under_a_swappable_folder_is_not_used(tmp_path, monkeypatch, mode, used):
    from pipeline.kernels import jit

    shared = _chmod(tmp_path / "shared", mode)
    ns = _numba_cache(monkeypatch, tmp_path, shared / "numba")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        jit.compile_into(ns, ["f"])
        assert ns["f"](5) == 5 * 3 + 1
    warned = [w for w in seen if f"{shared} is writable by others" in str(w.message)]
    assert len(warned) == (0 if used else 1)
    assert bool(list(shared.rglob("*.nbi"))) is used
