"""The replacement of an output (``--overwrite``) killed at every step of its swap.

Shared setup (issue 22): two int16 (96, 80) arrays ``a``, ``b`` (chunks 32², with ``y``/``x``
coordinates) in ``in.zarr``; config A = ``a**2 - b**2``, window 3, ``sum``; config B the same
with ``mean`` (variants: B ``boundary: valid, size: 5``, which changes the grid and the
coordinates; B ``reduce: [mean, max]``, two arrays).  A real ``pipeline run --overwrite B.yaml``
subprocess is killed (SIGKILL or SIGTERM, sent by the process to itself through the
``PIPELINE_TEST_SWAP_KILL`` hook) right after each step of marking complete and swapping; then a
reader (xarray with consolidated metadata, zarr without it) must see exactly A's or exactly B's
output, ``pipeline verify`` must pass, and rerunning A and B (``--overwrite``) must give each
config's brute-force result.  ``pytest -s`` prints the kill matrix.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
import zarr
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.runner import runconfig
from pipeline.storage import ledger, targets
from pipeline.storage.targets import zarrswap

SHAPE = (96, 80)
Y, X = np.arange(SHAPE[0]) * 10.0 + 5, np.arange(SHAPE[1]) * -2.5
#: variant -> (A's window, B's window)
VARIANTS = {
    "sum->mean": ({"size": 3, "reduce": "sum"}, {"size": 3, "reduce": "mean"}),
    "shrink->valid": ({"size": 3, "reduce": "sum"}, {"size": 5, "reduce": "mean", "boundary": "valid"}),
    "[mean,max] 3->5": ({"size": 3, "reduce": ["mean", "max"]}, {"size": 5, "reduce": ["mean", "max"]}),
}
SIGNALS = ("KILL", "TERM")


def brute(field: np.ndarray, window: dict) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Output array name -> (values, y, x), by a loop over every output pixel."""
    size, valid = window["size"], window.get("boundary") == "valid"
    h, w = field.shape
    r = size // 2
    oh, ow = (h - size + 1, w - size + 1) if valid else (h, w)
    stats = window["reduce"] if isinstance(window["reduce"], list) else [window["reduce"]]
    out = {st: np.zeros((oh, ow), dtype=np.float64 if st == "mean" else np.int64) for st in stats}
    for i in range(oh):
        for j in range(ow):
            i0, j0 = (i, j) if valid else (max(0, i - r), max(0, j - r))
            win = field[i0 : (i + size if valid else i - r + size), j0 : (j + size if valid else j - r + size)]
            for st in stats:
                out[st][i, j] = {"sum": lambda v: v.sum(), "max": lambda v: v.max(), "mean": lambda v: int(v.sum()) / v.size}[st](win)
    ys, xs = (Y[r:-r], X[r:-r]) if valid else (Y, X)
    names = {st: "result" if len(stats) == 1 else f"result_{st}" for st in stats}
    return {names[st]: (out[st], ys, xs) for st in stats}


def setup(root: Path, variant: str) -> dict[str, dict]:
    """``in.zarr``, ``A.yaml``, ``B.yaml`` in ``root``; the brute-force output of each config."""
    rng = np.random.default_rng(22)
    a, b = (rng.integers(-300, 300, SHAPE, dtype=np.int16) for _ in range(2))
    g = zarr.open_group(root / "in.zarr", mode="w")
    for name, arr in (("a", a), ("b", b)):
        g.create_array(name, shape=SHAPE, dtype="int16", chunks=(32, 32), dimension_names=("y", "x"))[...] = arr
    for name, vals in (("y", Y), ("x", X)):
        g.create_array(name, shape=vals.shape, dtype="float64", chunks=vals.shape, dimension_names=(name,))[...] = vals
    field = a.astype(np.int64) ** 2 - b.astype(np.int64) ** 2
    refs = {}
    for label, window in zip("AB", VARIANTS[variant], strict=True):
        cfg = {
            "inputs": {"a": {"path": "in.zarr", "array": "a"}, "b": {"path": "in.zarr", "array": "b"}},
            "op": "a**2 - b**2", "window": window, "compute": {"chunks": [32, 32], "scheduler": "synchronous"},
            "output": {"path": "out.zarr"},
        }
        (root / f"{label}.yaml").write_text(yaml.safe_dump(cfg))
        refs[label] = brute(field, window)
    return refs


def seen(out: Path, refs: dict[str, dict]) -> str:
    """Which config's output a reader sees: 'A' or 'B', checked through xarray (consolidated
    metadata, as xarray opens by default) and zarr without consolidated metadata; anything else
    (a mix, wrong values, a variable too many) fails."""
    with xr.open_zarr(out) as ds:
        xa = {n: (ds[n].values, ds[n]["y"].values, ds[n]["x"].values, ds[n].attrs["pipeline"]["complete"]) for n in ds.data_vars}
    group = zarr.open_group(out, mode="r", use_consolidated=False)
    za = {n: (a[...], group["y"][...], group["x"][...], a.attrs["pipeline"]["complete"]) for n, a in group.arrays() if n not in ("y", "x")}
    verdicts = []
    for got in (xa, za):
        match = [k for k, ref in refs.items() if set(got) == set(ref) and all(
            got[n][3] is True and all(np.array_equal(g, r) for g, r in zip(got[n][:3], ref[n], strict=True)) for n in ref
        )]
        assert len(match) == 1, f"a reader sees neither A nor B: {sorted(got)}"
        verdicts.append(match[0])
    assert verdicts[0] == verdicts[1], f"xarray sees {verdicts[0]}, zarr without consolidated metadata {verdicts[1]}"
    return verdicts[0]


def snapshot(root: Path, name: str) -> Path:
    dst = root.parent / f"{root.name}-{name}"
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir()
    for part in ("out.zarr", "out.zarr.pipeline"):
        if (root / part).exists():
            shutil.copytree(root / part, dst / part, symlinks=True)
    return dst


def restore(root: Path, snap: Path) -> None:
    for part in ("out.zarr", "out.zarr.pipeline"):
        shutil.rmtree(root / part, ignore_errors=True)
        if (snap / part).exists():
            shutil.copytree(snap / part, root / part, symlinks=True)


def killed_run(root: Path, n: int, sig: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PIPELINE_TEST_SWAP_KILL": f"{n}:{sig}"}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "-q", "--overwrite", "B.yaml"], cwd=root, env=env, capture_output=True, text=True
    )


class _Stop(Exception):
    pass


def staged_template(root: Path, monkeypatch) -> tuple[Path, list[str]]:
    """A's output complete, B's replacement computed but not yet marked complete (snapshot), and
    the labels of the steps after it (from an uninterrupted run of the rest)."""
    assert runconfig.run(root / "A.yaml").status == runconfig.DONE

    def stop(label: str) -> None:
        raise _Stop(label)

    hook = targets.checkpoint
    monkeypatch.setattr(targets, "checkpoint", stop)
    with pytest.raises(_Stop):
        runconfig.run(root / "B.yaml", overwrite=True)
    monkeypatch.setattr(targets, "checkpoint", hook)
    snap = snapshot(root, "staged")
    monkeypatch.setenv("PIPELINE_TEST_SWAP_LOG", str(root.parent / "steps.txt"))
    runconfig.run(root / "B.yaml", overwrite=True)
    monkeypatch.delenv("PIPELINE_TEST_SWAP_LOG")
    steps = (root.parent / "steps.txt").read_text().splitlines()
    restore(root, snap)
    return snap, steps


def kill_matrix(root: Path, refs: dict, signals: tuple[str, ...], monkeypatch) -> list[tuple[str, str, int, str, str, str]]:
    """(signal, step, exit code, seen after the kill, seen after verify, reruns) per kill point."""
    snap, steps = staged_template(root, monkeypatch)
    rows = []
    for sig in signals:
        for n, step in enumerate(steps, 1):
            restore(root, snap)
            proc = killed_run(root, n, sig)
            assert proc.returncode == {"KILL": -9, "TERM": 4}[sig], (n, steps, proc.stderr)
            after_kill = seen(root / "out.zarr", refs)
            killed = snapshot(root, "killed")
            assert CliRunner().invoke(app, ["verify", str(root / "out.zarr")]).exit_code == 0
            after_verify = seen(root / "out.zarr", refs)
            assert not (ledger.sidecar(root / "out.zarr") / zarrswap.JOURNAL).exists()
            reruns = []
            for cfg in "AB":
                restore(root, killed)
                runconfig.run(root / f"{cfg}.yaml", overwrite=True)
                assert seen(root / "out.zarr", refs) == cfg
                left = {p.name for p in ledger.sidecar(root / "out.zarr").iterdir()}
                assert not left & {zarrswap.JOURNAL, zarrswap.RETIRED_STORE}
                assert cfg == "A" or zarrswap.STAGED_STORE not in left  # B's swap done: nothing staged left
                reruns.append(f"{cfg} ok")
            rows.append((sig, f"{n}. {step}", proc.returncode, after_kill, after_verify, ", ".join(reruns)))
    return rows


def _print(variant: str, rows: list) -> None:
    print(f"\nswap kill matrix, {variant} (A's output replaced by B's; reader: xarray consolidated + zarr unconsolidated)")
    print(f"{'signal':7} {'killed right after step':40} {'exit':>4}  {'reader sees':12} {'after verify':12} reruns")
    for sig, step, code, k, v, r in rows:
        print(f"{sig:7} {step:40} {code:>4}  {k:12} {v:12} {r}")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_replacement_killed_at_every_step_shows_old_or_new_and_reruns_finish(tmp_path, monkeypatch, variant):
    root = tmp_path / "w"
    root.mkdir()
    monkeypatch.chdir(root)
    refs = setup(root, variant)
    full = os.environ.get("PIPELINE_SWAP_MATRIX") == "full"
    signals = SIGNALS if variant == "sum->mean" or full else ("KILL",)  # SIGTERM takes the same steps
    t0 = time.perf_counter()
    rows = kill_matrix(root, refs, signals, monkeypatch)
    _print(variant, rows)
    print(f"({len(rows)} kills in {time.perf_counter() - t0:.1f} s)")
    steps = [r[1] for r in rows]
    assert any("exchanged" in s for s in steps) and any("journal written" in s for s in steps)
    sees = [r[3] for r in rows if r[0] == "KILL"]
    assert sees == sorted(sees) and sees[0] == "A" and sees[-1] == "B"  # old until the exchange, new after


# -- the "up to date" decision rests on what is there ----------------------------------------------


def test_stale_consolidated_metadata_of_a_complete_output_is_rewritten(tmp_path, monkeypatch):
    """Item 1's state: B's complete array under A's consolidated metadata (int64, A's attributes,
    ``complete: true``).  Rerunning B must not trust the consolidated flag: readers then see B."""
    monkeypatch.chdir(tmp_path)
    refs = setup(tmp_path, "sum->mean")
    assert runconfig.run(tmp_path / "A.yaml").status == runconfig.DONE
    a_root = (tmp_path / "out.zarr" / "zarr.json").read_bytes()
    assert runconfig.run(tmp_path / "B.yaml", overwrite=True).status == runconfig.DONE
    (tmp_path / "out.zarr" / "zarr.json").write_bytes(a_root)  # consolidated metadata says A
    with xr.open_zarr(tmp_path / "out.zarr") as ds:
        assert ds["result"].dtype == np.int64  # what the review saw: B's chunks read as A's int64
    assert runconfig.run(tmp_path / "B.yaml").status == runconfig.UP_TO_DATE
    assert seen(tmp_path / "out.zarr", refs) == "B"


# -- reserved staging names ---------------------------------------------------------------------------


def _tree(p: Path) -> dict[str, bytes]:
    return {str(f.relative_to(p)): f.read_bytes() for f in sorted(p.rglob("*")) if f.is_file()}


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_a_staging_place_the_tool_did_not_make_is_refused_before_computing(tmp_path, monkeypatch, kind):
    monkeypatch.chdir(tmp_path)
    setup(tmp_path, "sum->mean")
    assert runconfig.run(tmp_path / "A.yaml").status == runconfig.DONE
    staged = ledger.sidecar(tmp_path / "out.zarr") / zarrswap.STAGED_STORE
    if kind == "folder":
        staged.mkdir()
        (staged / "thesis.tex").write_text("mine")
    else:
        staged.write_text("mine")
    before = _tree(tmp_path)
    res = CliRunner().invoke(app, ["run", "-q", "--overwrite", str(tmp_path / "B.yaml")])
    assert res.exit_code == 2, res.output
    assert res.output.count("\n") == 1 and str(staged) in res.output and "refusing" in res.output
    assert _tree(tmp_path) == before  # nothing touched (no ledger reset, nothing computed)


def test_user_entries_under_reserved_names_in_the_store_are_kept_and_old_leftovers_dropped(tmp_path, monkeypatch):
    """A folder ``result.pipeline-new`` holding a user's file and a plain file ``result.pipeline-old``
    in the store are kept by a replacement; an array an earlier version staged there (carrying
    the tool's ``pipeline`` attribute) is not carried into the new store."""
    monkeypatch.chdir(tmp_path)
    refs = setup(tmp_path, "sum->mean")
    assert runconfig.run(tmp_path / "A.yaml").status == runconfig.DONE
    out = tmp_path / "out.zarr"
    (out / "result.pipeline-new").mkdir()
    (out / "result.pipeline-new" / "notes.txt").write_text("mine")
    (out / "result.pipeline-old").write_text("also mine")
    shutil.copytree(out / "result", out / "x.pipeline-old")  # not an output array's name: a user's copy
    res = CliRunner().invoke(app, ["run", "-q", "--overwrite", str(tmp_path / "B.yaml")])
    assert res.exit_code == 0, res.output
    assert (out / "result.pipeline-new" / "notes.txt").read_text() == "mine"
    assert (out / "result.pipeline-old").read_text() == "also mine" and (out / "x.pipeline-old" / "zarr.json").exists()
    shutil.rmtree(out / "x.pipeline-old")
    shutil.copytree(out / "result", out / "result.pipeline-new" / "leftover")  # unrelated nesting: kept
    (out / "result.pipeline-old").unlink()
    shutil.copytree(out / "result", out / "result.pipeline-old")  # what an earlier version left: B's array
    assert CliRunner().invoke(app, ["run", "-q", "--overwrite", str(tmp_path / "A.yaml")]).exit_code == 0
    assert not (out / "result.pipeline-old").exists() and (out / "result.pipeline-new" / "leftover" / "zarr.json").exists()
    shutil.rmtree(out / "result.pipeline-new")
    assert seen(out, refs) == "A"


def test_verify_checks_a_store_with_a_leftover_old_array(tmp_path, monkeypatch):
    """Item 21: a ``result.pipeline-old`` an earlier version left is verified, not refused."""
    monkeypatch.chdir(tmp_path)
    setup(tmp_path, "sum->mean")
    assert runconfig.run(tmp_path / "A.yaml").status == runconfig.DONE
    out = tmp_path / "out.zarr"
    shutil.copytree(out / "result", out / "result.pipeline-old")
    res = CliRunner().invoke(app, ["verify", str(out)])
    assert res.exit_code == 0, res.output
    assert "out.zarr:result.pipeline-old: 9 of 9 chunks stored and readable, 0 damaged, 0 missing, complete" in res.output


# -- without RENAME_EXCHANGE: two renames ---------------------------------------------------------------


def test_without_the_exchange_a_crash_at_every_step_is_completed_by_the_rerun(tmp_path, monkeypatch):
    """Where the file system cannot exchange two folders the swap takes two renames; a crash
    (an exception at the step, in process) leaves the old store, the new one, or no store between
    the renames; never a mix.  The next run completes the swap."""
    root = tmp_path / "w"
    root.mkdir()
    monkeypatch.chdir(root)
    refs = setup(root, "shrink->valid")
    monkeypatch.setattr(zarrswap, "_exchange", lambda a, b: False)
    snap, steps = staged_template(root, monkeypatch)
    assert "old store renamed" in steps and "new store renamed" in steps and "exchanged" not in steps
    views = []
    for n in range(1, len(steps) + 1):
        restore(root, snap)
        count = iter(range(1, n + 1))

        def crash(label: str, count=count, n=n) -> None:
            if next(count) == n:
                raise _Stop(label)

        monkeypatch.setattr(targets, "checkpoint", crash)
        monkeypatch.setattr(zarrswap, "checkpoint", crash)
        with pytest.raises(_Stop):
            runconfig.run(root / "B.yaml", overwrite=True)
        monkeypatch.setattr(targets, "checkpoint", lambda label: None)
        monkeypatch.setattr(zarrswap, "checkpoint", lambda label: None)
        views.append(seen(root / "out.zarr", refs) if (root / "out.zarr").exists() else "none")
        runconfig.run(root / "B.yaml", overwrite=True)
        assert seen(root / "out.zarr", refs) == "B"
    assert views == ["A"] * steps.index("old store renamed") + ["none"] + ["B"] * (len(steps) - steps.index("new store renamed")), views
