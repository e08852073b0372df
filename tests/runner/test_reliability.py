"""Fault injection on real runs: kill -9, SIGTERM, two writers, stale locks, damaged chunks,
disk full.  The reference for every faulted run is an uninterrupted run of the same config
(itself checked against the brute-force reference), compared byte for byte, chunk file by chunk
file."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr
from reference import brute_window, brute_window_sum
from run_helpers import SHAPE, W, done_blocks, done_dir, make_inputs, n_done, start_held, write_config  # noqa: F401 - SHAPE: part of the scenario
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.errors import ExitCode
from pipeline.runner import runconfig
from pipeline.storage import ledger

cli = CliRunner()

def chunk_bytes(store: Path, array: str = "result") -> dict[str, bytes]:
    base = store / array / "c"
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file() and ".partial" not in p.name}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Inputs, and the uninterrupted run's chunk files (checked against brute force)."""
    root = tmp_path_factory.mktemp("ref")
    a, b = make_inputs(root)
    res = runconfig.run(write_config(root, "ref.zarr"))
    assert res.status == runconfig.DONE and res.computed == res.blocks == 121
    out = zarr.open_group(root / "ref.zarr", mode="r")["result"][...]
    expected = brute_window_sum(a.astype(np.int64) ** 2 - b.astype(np.int64) ** 2, W)
    np.testing.assert_array_equal(out, expected)
    return root, chunk_bytes(root / "ref.zarr")


@pytest.fixture
def work(tmp_path, reference):
    root, ref = reference
    os.symlink(root / "in.zarr", tmp_path / "in.zarr")
    return tmp_path, ref


def start(cfg: Path, *args: str, hold_after: int | None = None) -> subprocess.Popen:
    """``pipeline run -q cfg`` in a subprocess; with ``hold_after``, the blocks after the first
    ``hold_after`` it writes wait until it is stopped (tests/held_run.py): it cannot finish."""
    if hold_after is None:
        return subprocess.Popen([sys.executable, "-m", "pipeline", "run", "-q", *args, str(cfg)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return start_held(cfg, hold_after, *args)


def start_gated(cfg: Path, gate: Path, name: str) -> subprocess.Popen:
    """``pipeline run cfg`` in a process that first does the slow imports, then waits for
    ``gate`` to exist, so that several runs can be released at the same instant."""
    ready = gate.with_name(f"{gate.name}.{name}.ready")
    code = (
        "import os, sys, time\n"
        "from pipeline.cli.main import app\n"
        "import pipeline.batch.runbatch, pipeline.runner.runconfig\n"
        f"open({str(ready)!r}, 'w').close()\n"
        f"while not os.path.exists({str(gate)!r}): time.sleep(0.001)\n"
        f"sys.argv = ['pipeline', 'run', '-q', {str(cfg)!r}]\n"
        "app()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.ready = ready  # type: ignore[attr-defined]
    return proc


def start_together(cfg: Path, n: int = 2) -> list[subprocess.Popen]:
    gate = cfg.with_name(f"gate-{time.time_ns()}")
    procs = [start_gated(cfg, gate, str(i)) for i in range(n)]
    for p in procs:
        assert wait_until(p.ready.exists, p), p.communicate()
    gate.touch()
    return procs


def wait_until(pred, proc: subprocess.Popen, timeout: float = 120) -> bool:
    """Poll until ``pred()``; False when the process ended first."""
    t0 = time.monotonic()
    while not pred():
        if proc.poll() is not None:
            return False
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.005)
    return True


def assert_recorded_blocks_are_right(out: Path, ref: dict[str, bytes]) -> None:
    """The ledger invariant, checked after each fault: every block recorded as done has all its
    chunks stored, equal byte for byte to the uninterrupted run's; the output is not complete."""
    d = done_dir(out)
    if d is None:
        return
    grid = json.loads((d.parent / "grid.json").read_text())
    got = chunk_bytes(out)
    done = done_blocks(out)
    for block in done:
        for coords in ledger.block_chunks(grid, block):
            key = "/".join(map(str, coords))
            assert got.get(key) == ref[key], f"block {block}: chunk {key} differs from the reference"
    state = zarr.open_group(out, mode="r", use_consolidated=False)["result"].attrs["pipeline"]
    assert state["complete"] is False or len(done) == 121  # complete only when all done


def assert_complete_and_identical(out: Path, ref: dict[str, bytes]) -> None:
    assert chunk_bytes(out) == ref
    g = zarr.open_group(out, mode="r")  # consolidated metadata, as xarray reads it
    assert g["result"].attrs["pipeline"]["complete"] is True
    assert not (ledger.sidecar(out) / "lock").exists()


# ------------------------------------------------------------------------------------------------
# kill -9 and SIGTERM


def test_kill9_at_random_moments_then_resume_is_byte_identical(work):
    """Four kill -9 at random points of successive runs (one during start-up, the others after a
    random number of blocks), each followed by a check of the ledger invariant; the final resume
    gives the uninterrupted run's bytes.  Each run holds its blocks after the first 30 until it is
    killed (4 x 30 < 121 blocks), so that no run finishes before its kill, however fast."""
    tmp, ref = work
    out = tmp / "out.zarr"
    cfg = write_config(tmp, "out.zarr")
    rng = random.Random(int(os.environ.get("PIPELINE_FAULT_SEED", time.time_ns())))
    for trial in range(4):
        before = n_done(out)
        proc = start(cfg, hold_after=30)
        if trial == 0:  # imports, planning, creating the output, the first blocks
            time.sleep(rng.uniform(0.05, 0.8))
        else:
            k = before + rng.randint(1, 25)
            assert wait_until(lambda: n_done(out) >= k, proc), proc.communicate()
            time.sleep(rng.uniform(0, 0.03))
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        assert_recorded_blocks_are_right(out, ref)
    final = start(cfg)
    stdout, stderr = final.communicate(timeout=120)
    assert final.returncode == 0, stderr
    assert_complete_and_identical(out, ref)
    again = subprocess.run([sys.executable, "-m", "pipeline", "run", str(cfg)], capture_output=True, text=True)
    assert again.returncode == 0 and "up to date" in again.stdout, again.stderr


def test_sigterm_stops_cleanly_exit_4_and_resumes(work):
    tmp, ref = work
    out = tmp / "out.zarr"
    cfg = write_config(tmp, "out.zarr")
    proc = start(cfg, hold_after=40)  # at most 40 blocks, plus those in flight, before SIGTERM
    assert wait_until(lambda: n_done(out) >= random.randint(5, 40), proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.INTERRUPTED == 4, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "interrupted by SIGTERM" in lines[0] and "resume" in lines[0], stderr
    assert not (ledger.sidecar(out) / "lock").exists()  # released on the way out
    done = n_done(out)
    assert 0 < done < 121
    assert_recorded_blocks_are_right(out, ref)
    res = runconfig.run(cfg)
    assert res.status == runconfig.DONE and res.skipped >= done and res.computed == 121 - res.skipped
    assert_complete_and_identical(out, ref)


# ------------------------------------------------------------------------------------------------
# one writer


def test_two_runs_at_once_exactly_one_proceeds(work):
    tmp, ref = work
    out = tmp / "out.zarr"
    cfg = write_config(tmp, "out.zarr")
    procs = start_together(cfg)
    results = [p.communicate(timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, ExitCode.LOCKED], results
    loser = results[[p.returncode for p in procs].index(ExitCode.LOCKED)][1]
    assert len(loser.strip().splitlines()) == 1 and "another run" in loser and "pid" in loser, loser
    assert_complete_and_identical(out, ref)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.parametrize("kind", ["dead-pid", "old-heartbeat"])
def test_stale_lock_is_taken_over(work, kind):
    tmp, ref = work
    out = tmp / "out.zarr"
    cfg = write_config(tmp, "out.zarr")
    lock = ledger.sidecar(out) / "lock"
    lock.parent.mkdir(parents=True)
    if kind == "dead-pid":
        lock.write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid(), "token": "x", "started": 0}))
    else:  # a holder on another host whose heartbeat stopped long ago
        lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "y", "started": 0}))
        os.utime(lock, (time.time() - 3600, time.time() - 3600))
    res = cli.invoke(app, ["run", "-q", str(cfg)])
    assert res.exit_code == 0, res.output
    assert_complete_and_identical(out, ref)


def test_live_lock_refuses_with_exit_3_and_writes_nothing(work):
    tmp, _ = work
    out = tmp / "out.zarr"
    cfg = write_config(tmp, "out.zarr")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = ledger.sidecar(out) / "lock"
        lock.parent.mkdir(parents=True)
        lock.write_text(json.dumps({"host": socket.gethostname(), "pid": holder.pid, "token": "z", "started": 0}))
        res = cli.invoke(app, ["run", str(cfg)])
        assert res.exit_code == ExitCode.LOCKED == 3, res.output
        assert f"pid {holder.pid}" in res.output and "another run" in res.output
        assert not out.exists()
        # a fresh heartbeat from another host is respected too
        lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "w", "started": 0}))
        assert cli.invoke(app, ["run", str(cfg)]).exit_code == 3
        assert json.loads(lock.read_text())["token"] == "w"  # untouched
    finally:
        holder.kill()
        holder.wait()


# ------------------------------------------------------------------------------------------------
# integrity


def test_flipped_byte_caught_by_verify_and_repaired_by_rerun(work):
    tmp, ref = work
    out = tmp / "out.zarr"
    cfg = write_config(tmp, "out.zarr")
    assert cli.invoke(app, ["run", "-q", str(cfg)]).exit_code == 0
    res = cli.invoke(app, ["verify", str(out)])
    assert res.exit_code == 0 and "0 damaged, 0 missing" in res.output, res.output

    victim = out / "result" / "c" / "4" / "7"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x10
    victim.write_bytes(bytes(data))
    gone = out / "result" / "c" / "9" / "2"
    gone.unlink()

    res = cli.invoke(app, ["verify", "--no-mark", str(out)])
    assert res.exit_code == 1, res.output
    assert "damaged result/c/4/7" in res.output and "missing result/c/9/2" in res.output
    assert "1 damaged, 1 missing" in res.output and "marked" not in res.output
    res = cli.invoke(app, ["run", str(cfg)])  # not marked: still "up to date"
    assert "up to date" in res.output

    res = cli.invoke(app, ["verify", str(out)])
    assert res.exit_code == 1 and "2 blocks marked for recomputation" in res.output, res.output
    assert "INCOMPLETE" in cli.invoke(app, ["info", str(out)]).output
    res = cli.invoke(app, ["run", str(cfg)])
    assert res.exit_code == 0 and "2 blocks" in res.output and "resumed: 119" in res.output, res.output
    assert_complete_and_identical(out, ref)
    assert cli.invoke(app, ["verify", str(out)]).exit_code == 0


def test_all_fill_value_chunks_are_stored_so_missing_is_not_empty(work):
    """``a - a`` is all zeros (the fill value): every chunk is stored anyway, so a deleted one is
    reported missing."""
    tmp, _ = work
    out = tmp / "zero.zarr"
    cfg = write_config(tmp, "zero.zarr", op="a - a")
    assert cli.invoke(app, ["run", "-q", str(cfg)]).exit_code == 0
    assert len(chunk_bytes(out)) == 121
    (out / "result" / "c" / "0" / "0").unlink()
    res = cli.invoke(app, ["verify", str(out)])
    assert res.exit_code == 1 and "missing result/c/0/0" in res.output, res.output
    assert cli.invoke(app, ["run", "-q", str(cfg)]).exit_code == 0
    assert len(chunk_bytes(out)) == 121
    assert not zarr.open_group(out, mode="r")["result"][...].any()


def test_resume_recomputes_blocks_whose_chunks_vanished(work):
    """An interrupted output whose done block lost a chunk file: the resume recomputes it."""
    tmp, ref = work
    out = tmp / "out.zarr"
    cfg = write_config(tmp, "out.zarr")
    assert runconfig.run(cfg).status == runconfig.DONE
    (out / "result" / "c" / "3" / "3").unlink()
    target = zarr.open_array(out, path="result", mode="r+")
    state = dict(target.attrs["pipeline"], complete=False)
    target.update_attributes({"pipeline": state})  # as if the run had been killed
    res = runconfig.run(cfg)
    assert (res.computed, res.skipped) == (1, 120)
    assert_complete_and_identical(out, ref)


def test_damaged_input_chunk_names_array_and_key(work):
    tmp, _ = work
    src = tmp / "src.zarr"
    g = zarr.open_group(src, mode="w")
    a = np.arange(36 * 36, dtype=np.uint16).reshape(36, 36)
    g.create_array("a", shape=a.shape, dtype=a.dtype, chunks=(12, 12))[...] = a
    victim = src / "a" / "c" / "1" / "2"
    victim.write_bytes(victim.read_bytes()[:7])  # truncated
    cfg = tmp / "dmg.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "inputs": {"a": {"path": "src.zarr", "array": "a"}},
                "op": "a",
                "window": {"size": 3},
                "output": {"path": "dmg.zarr"},
                "compute": {"chunks": 12},
            }
        )
    )
    res = cli.invoke(app, ["run", str(cfg)])
    assert res.exit_code == 2, res.output
    line = res.output.strip().splitlines()
    assert len(line) == 1 and "inputs.a" in line[0] and "src.zarr:a" in line[0] and "chunk c/1/2" in line[0], res.output


# ------------------------------------------------------------------------------------------------
# disk full


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.8])
def test_disk_full_clear_error_then_resume_identical(work, monkeypatch, fraction):
    """A store that raises ENOSPC once ``k`` bytes have gone into the output: a one-line error
    naming the output, exit 1, done chunks valid; after "freeing space" the rerun resumes to the
    uninterrupted run's bytes."""
    from zarr.storage import LocalStore

    tmp, ref = work
    out = tmp / "out.zarr"
    cfg = write_config(tmp, "out.zarr")
    budget = {"left": int(fraction * sum(map(len, ref.values())))}
    original, original_sync = LocalStore.set, LocalStore.set_sync

    def spend(self, key, value):
        if Path(str(self.root)).resolve() == out.resolve():
            budget["left"] -= len(value.to_bytes())
            if budget["left"] < 0:
                raise OSError(errno.ENOSPC, "No space left on device", str(out / key))

    async def full_set(self, key, value):
        spend(self, key, value)
        return await original(self, key, value)

    def full_set_sync(self, key, value):  # chunks written by zarrchunks.DirectChunks
        spend(self, key, value)
        return original_sync(self, key, value)

    monkeypatch.setattr(LocalStore, "set", full_set)
    monkeypatch.setattr(LocalStore, "set_sync", full_set_sync)
    res = cli.invoke(app, ["run", "-q", str(cfg)])
    assert res.exit_code == 1, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "no space left on device" in lines[0] and str(out) in lines[0], res.output
    assert "rerun to resume" in lines[0]
    assert not (ledger.sidecar(out) / "lock").exists()
    if (out / "result" / "zarr.json").exists():
        assert_recorded_blocks_are_right(out, ref)
    monkeypatch.setattr(LocalStore, "set", original)  # space freed
    monkeypatch.setattr(LocalStore, "set_sync", original_sync)
    res = cli.invoke(app, ["run", "-q", str(cfg)])
    assert res.exit_code == 0, res.output
    assert_complete_and_identical(out, ref)


# ------------------------------------------------------------------------------------------------
# overwrite safety and the report for schedulers


def test_changed_input_is_a_different_config(work):
    """The fingerprint covers the inputs' content identity: a rewritten input chunk makes the
    old output 'written by a different config' (refused without overwrite), never 'up to date'."""
    tmp, _ = work
    src = tmp / "mine.zarr"
    g = zarr.open_group(src, mode="w")
    a = np.arange(24 * 24, dtype=np.uint8).reshape(24, 24)
    g.create_array("a", shape=a.shape, dtype=a.dtype, chunks=(12, 12))[...] = a
    cfg = tmp / "mine.yaml"
    cfg.write_text(yaml.safe_dump({"inputs": {"a": {"path": "mine.zarr", "array": "a"}}, "op": "a", "window": {"size": 3}, "output": {"path": "mine-out.zarr"}}))
    assert runconfig.run(cfg).status == runconfig.DONE
    assert runconfig.run(cfg).status == runconfig.UP_TO_DATE
    time.sleep(0.01)
    zarr.open_group(src, mode="a")["a"][0, 0] = 99
    res = cli.invoke(app, ["run", str(cfg)])
    assert res.exit_code == 2 and "different config" in res.output, res.output
    res = runconfig.run(cfg, overwrite=True)
    assert res.status == runconfig.DONE and res.computed == res.blocks
    assert zarr.open_group(tmp / "mine-out.zarr", mode="r")["result"][0, 0] == brute_window_sum(
        zarr.open_group(src, mode="r")["a"][...].astype(np.int64), 3
    )[0, 0]


def test_run_result_reports_status_and_counts(work):
    tmp, _ = work
    cfg = write_config(tmp, "out.zarr")
    first = runconfig.run(cfg)
    assert (first.status, first.computed, first.skipped, first.blocks) == ("done", 121, 0, 121)
    again = runconfig.run(cfg)
    assert (again.status, again.computed, again.skipped) == ("up-to-date", 0, 121)
    other = write_config(tmp, "out.zarr", window={"size": 3})
    with pytest.raises(Exception) as info:
        runconfig.run(other)
    assert "different config" in str(info.value)


def test_several_statistics_share_one_ledger_and_are_repaired_together(work):
    """reduce: [mean, max] writes two arrays (checked against brute force); a damaged chunk of one
    is caught by verify and only its block is recomputed; both arrays end equal to an
    uninterrupted run's."""
    tmp, _ = work
    cfgs = [write_config(tmp, f"{n}.zarr", window={"size": W, "reduce": ["mean", "max"]}) for n in ("multi", "multi-ref")]
    for cfg in cfgs:
        assert runconfig.run(cfg).computed == 121
    out, ref_out = tmp / "multi.zarr", tmp / "multi-ref.zarr"
    inputs = zarr.open_group(tmp / "in.zarr", mode="r")
    field = inputs["a"][...].astype(np.int64) ** 2 - inputs["b"][...].astype(np.int64) ** 2
    written = zarr.open_group(ref_out, mode="r")
    np.testing.assert_allclose(written["result_mean"][...], brute_window(field, W, "mean").astype(np.float64), rtol=1e-12)
    np.testing.assert_array_equal(written["result_max"][...], brute_window(field, W, "max").astype(np.int64))
    victim = out / "result_max" / "c" / "3" / "4"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x04
    victim.write_bytes(bytes(data))
    res = cli.invoke(app, ["verify", str(out)])
    assert res.exit_code == 1 and "damaged result_max/c/3/4" in res.output and "1 blocks marked" in res.output, res.output
    again = runconfig.run(cfgs[0])
    assert (again.status, again.computed, again.skipped) == ("done", 1, 120)
    for name in ("result_mean", "result_max"):
        assert chunk_bytes(out, name) == chunk_bytes(ref_out, name)
        assert zarr.open_group(out, mode="r")[name].attrs["pipeline"]["complete"] is True
