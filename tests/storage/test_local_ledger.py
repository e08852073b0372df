"""The compact ledger on local disks (issue 27): one record file per task (a line per block),
not one file per block.  A kill -9 leaves at most one record per task and the resume computes
exactly the blocks not recorded; torn and garbage lines are ignored; ledgers of earlier versions
(one empty file per block) resume; ``verify`` rewrites records; a process pool writes one record
per tile.  Blocks are read back by the independent reader of tests/run_helpers.py."""

from __future__ import annotations

import os
import pickle
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import zarr
from reference import brute_window_sum
from run_helpers import W, done_blocks, done_dir, kill_when_done, make_inputs, record_files, start_held, write_config
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.runner import runconfig
from pipeline.storage import ledger, urlledger

ALL = {(i, j) for i in range(11) for j in range(11)}  # 132 x 132 in 12 x 12 blocks
cli = CliRunner()


def chunk_bytes(store: Path) -> dict[str, bytes]:
    base = store / "result" / "c"
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file() and ".partial" not in p.name}  # (a temp file a kill left)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The inputs and an uninterrupted run's chunk files (its values checked against brute force)."""
    root = tmp_path_factory.mktemp("ref")
    a, b = make_inputs(root)
    assert runconfig.run(write_config(root, "ref.zarr")).computed == 121
    got = zarr.open_group(root / "ref.zarr", mode="r")["result"][...]
    np.testing.assert_array_equal(got, brute_window_sum(a.astype(np.int64) ** 2 - b.astype(np.int64) ** 2, W))
    return root, chunk_bytes(root / "ref.zarr")


@pytest.fixture
def work(tmp_path, reference):
    root, ref = reference
    os.symlink(root / "in.zarr", tmp_path / "in.zarr")
    return tmp_path, tmp_path / "out.zarr", ref


def fingerprint_of(out: Path) -> str:
    return zarr.open_group(out, mode="r", use_consolidated=False)["result"].attrs["pipeline"]["fingerprint"]


def interrupted(cfg: Path, after: int) -> None:
    """Run ``cfg`` in this process, stopped (KeyboardInterrupt) after ``after`` blocks."""

    def stop(done, total):
        if done == after:
            raise KeyboardInterrupt("test")

    with pytest.raises(KeyboardInterrupt):
        runconfig.run(cfg, progress=stop)


def test_kill9_leaves_one_record_per_task_and_the_resume_computes_exactly_the_rest(work):
    tmp, out, ref = work
    cfg = write_config(tmp, "out.zarr")  # threads: the whole run is one task
    kill_when_done(start_held(cfg, 20), out, 10)
    (first,) = record_files(out)
    before = done_blocks(out)
    assert 10 <= len(before) <= 20  # the writes after the first 20 wait: a kill -9 never releases them
    res = runconfig.run(cfg)
    assert (res.status, res.skipped, res.computed) == (runconfig.DONE, len(before), 121 - len(before))
    (second,) = (p for p in record_files(out) if p != first)
    assert done_blocks(out) == ALL and first.read_bytes().count(b"\n") == len(before)
    assert second.read_bytes().count(b"\n") == 121 - len(before)  # the resume recorded exactly the rest
    assert chunk_bytes(out) == ref


def test_kill9_of_a_process_pool_leaves_at_most_one_record_per_task(work):
    """Workers forked from tests/held_run.py hold their writes after their first 10 each, so
    the run cannot finish before the kill (the driver and its workers, one process group)."""
    tmp, out, ref = work
    cfg = write_config(tmp, "out.zarr", compute={"chunks": 12, "workers": 2, "scheduler": "processes"})
    tasks = int(re.search(r"([\d,]+) ledger records \(one per task\)", cli.invoke(app, ["validate", str(cfg)]).output).group(1))
    proc = start_held(cfg, 10, env={"DASK_MULTIPROCESSING__CONTEXT": "fork"}, group=True)
    kill_when_done(proc, out, 10, group=True)
    first = record_files(out)
    before = done_blocks(out)
    assert 1 <= len(first) <= min(tasks, len(before)) and 10 <= len(before) <= 20, (len(first), tasks, len(before))
    res = runconfig.run(cfg)
    assert (res.skipped, res.computed) == (len(before), 121 - len(before))
    lines = [ln for p in record_files(out) if p not in first for ln in p.read_bytes().splitlines()]
    assert len(lines) == 121 - len(before) and done_blocks(out) == ALL  # the resume recorded exactly the rest
    assert chunk_bytes(out) == ref


def test_a_torn_last_line_and_garbage_are_ignored(work):
    tmp, out, ref = work
    cfg = write_config(tmp, "out.zarr", compute={"chunks": 12, "workers": 1})
    interrupted(cfg, 5)
    (record,) = record_files(out)
    recorded = done_blocks(out)
    assert len(recorded) == 5 and len(record.read_bytes().splitlines()) == 5
    missing = sorted(ALL - recorded)
    with open(record, "ab") as f:  # what a crash or a stray write could leave after the records
        f.write(b"garbage\n\x00\x00\n1.2.x\n\n" + f"{missing[0][0]}.{missing[0][1]}".encode())
    led = ledger.find(out, "result", fingerprint_of(out))
    assert led is not None and led[0].done() == recorded
    res = runconfig.run(cfg)
    assert (res.skipped, res.computed) == (5, 116)
    assert chunk_bytes(out) == ref


def test_a_ledger_of_one_empty_file_per_block_resumes(work):
    tmp, out, ref = work
    cfg = write_config(tmp, "out.zarr")
    interrupted(cfg, 7)
    (record,) = record_files(out)
    recorded = done_blocks(out)
    record.unlink()
    for i, j in recorded:  # the layout of earlier versions
        (done_dir(out) / f"{i}.{j}").touch()
    assert done_blocks(out) == recorded and not record_files(out)
    res = runconfig.run(cfg)
    assert (res.skipped, res.computed) == (len(recorded), 121 - len(recorded))
    assert done_blocks(out) == ALL and len(record_files(out)) == 1
    assert chunk_bytes(out) == ref


def test_verify_rewrites_the_record_and_the_rerun_recomputes_exactly_that_block(work):
    tmp, out, ref = work
    cfg = write_config(tmp, "out.zarr")
    assert runconfig.run(cfg).computed == 121
    (old,) = record_files(out)
    (out / "result" / "c" / "3" / "5").unlink()
    res = cli.invoke(app, ["verify", str(out)])
    assert res.exit_code == 1 and "missing result/c/3/5" in res.output and "1 blocks marked" in res.output, res.output
    (new,) = record_files(out)
    assert new != old and done_blocks(out) == ALL - {(3, 5)}
    assert sorted(p.name for p in done_dir(out).iterdir()) == [new.name]  # no temp file left
    res = runconfig.run(cfg)
    assert (res.skipped, res.computed) == (120, 1)
    assert chunk_bytes(out) == ref


def test_verify_rebuilds_a_removed_ledger_as_one_record(work):
    tmp, out, ref = work
    cfg = write_config(tmp, "out.zarr")
    assert runconfig.run(cfg).computed == 121
    shutil.rmtree(ledger.sidecar(out) / "result")
    (out / "result" / "c" / "10" / "0").unlink()
    assert cli.invoke(app, ["verify", str(out)]).exit_code == 1
    assert len(record_files(out)) == 1 and done_blocks(out) == ALL - {(10, 0)}
    assert runconfig.run(cfg).computed == 1
    assert chunk_bytes(out) == ref


def test_a_process_pool_writes_one_record_per_tile(work):
    tmp, out, ref = work
    cfg = write_config(tmp, "out.zarr", compute={"chunks": 12, "workers": 2, "scheduler": "processes"})
    line = cli.invoke(app, ["validate", str(cfg)]).output
    tasks = int(re.search(r"([\d,]+) tasks on 2 threads", line).group(1))
    assert 1 < tasks < 121 and f"{tasks} ledger records (one per task)" in line, line
    assert runconfig.run(cfg).computed == 121
    records = record_files(out)
    assert len(records) == tasks
    lines = [ln for p in records for ln in p.read_bytes().splitlines()]
    assert len(lines) == 121 and done_blocks(out) == ALL  # each block once, in one record
    assert chunk_bytes(out) == ref


def test_threads_of_a_task_append_whole_lines_to_one_file(tmp_path):
    rec = ledger.BlockRecorder(str(tmp_path))
    rec = pickle.loads(pickle.dumps(rec))  # what a worker process receives
    task = rec.task()
    blocks = [(i, j) for i in range(40) for j in range(50)]

    def write(part):
        for b in part:
            task(b)

    threads = [threading.Thread(target=write, args=(blocks[k::8],)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    task.close()
    (only,) = os.listdir(tmp_path)
    lines = (tmp_path / only).read_bytes().decode().split("\n")
    assert lines[-1] == "" and sorted(tuple(int(x) for x in ln.split(".")) for ln in lines[:-1]) == blocks


def test_both_ledgers_give_a_task_recorder_and_plain_callables_still_work(tmp_path):
    obj = pickle.loads(pickle.dumps(urlledger.ObjectRecorder(f"file://{tmp_path}/done")))
    assert isinstance(obj.task(), urlledger.TaskBatch)
    seen: list = []
    plain = ledger.task_recorder(seen.append)
    plain((1, 2))
    plain.close()
    assert seen == [(1, 2)] and ledger.task_recorder(None) is None


def test_drop_rewrites_records_and_removes_per_block_files(tmp_path):
    led = ledger.Ledger(tmp_path / "out.zarr", "result", "0" * 64)
    led.reset({})
    (led.done_dir / "t.0.0.0123456789ab.log").write_bytes(b"0.0\n0.1\n0.2\n")
    (led.done_dir / "t.1.0.0123456789ab.log").write_bytes(b"1.0\n1.1\n")
    (led.done_dir / "2.0").touch()
    (led.done_dir / "2.1").touch()
    led.drop([(0, 1), (2, 0), (5, 5)])
    names = sorted(os.listdir(led.done_dir))
    assert "t.0.0.0123456789ab.log" not in names and "t.1.0.0123456789ab.log" in names and "2.0" not in names, names
    assert len(names) == 3 and not [n for n in names if n.endswith(".tmp")]
    (new,) = [n for n in names if n.startswith("t.0.0.")]
    assert (led.done_dir / new).read_bytes() == b"0.0\n0.2\n"
    assert done_blocks(tmp_path / "out.zarr") == led.done() == {(0, 0), (0, 2), (1, 0), (1, 1), (2, 1)}
