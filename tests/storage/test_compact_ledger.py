"""The compact ledger on object storage (issue 27 item 3), on moto's S3 server: one record per
task (not per block), a resume that computes exactly the blocks not recorded, lost chunks
forgotten record by record, and ledgers of earlier versions (one object per block) still read."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from pipeline.config.load import parse_config
from pipeline.runner import runconfig
from pipeline.storage import urlledger

SHAPE = (48, 64)  # 16 x 16 blocks: 3 x 4 = 12


def _ref(a: np.ndarray) -> np.ndarray:
    padded = np.pad(a.astype(np.int64), 1)
    return sum(padded[i : i + SHAPE[0], j : j + SHAPE[1]] for i in range(3) for j in range(3))


@pytest.fixture
def job(tmp_path, s3):
    import s3fs

    a = np.random.default_rng(27).integers(0, 1000, SHAPE, dtype=np.uint16)
    zarr.open_group(tmp_path / "in.zarr", mode="w").create_array("a", shape=SHAPE, chunks=(16, 16), dtype=a.dtype)[...] = a
    out = f"s3://pipeline-test/compact-{tmp_path.name}.zarr"
    so = {"endpoint_url": s3["endpoint_url"]}
    cfg = parse_config({
        "inputs": {"a": {"path": str(tmp_path / "in.zarr"), "array": "a"}},
        "op": "a",
        "window": {"size": 3},
        "compute": {"chunks": 16, "scheduler": "threads", "workers": 1},
        "output": {"path": out, "storage_options": so},
    })
    return cfg, a, out, s3fs.S3FileSystem(**so)


def _interrupt(cfg, after: int) -> None:
    def stop(done, total):
        if done == after:
            raise KeyboardInterrupt("test")

    with pytest.raises(KeyboardInterrupt) as info:
        runconfig.run(cfg, progress=stop)
    assert info.value.pipeline_result.computed == after


def _done_objects(fs, out: str) -> list[str]:
    bucket_path = out.removeprefix("s3://")
    return [p for p in fs.find(f"{bucket_path}.pipeline") if "/done/" in p]


def test_one_record_per_task_and_a_resume_of_exactly_the_rest(job):
    cfg, a, out, fs = job
    _interrupt(cfg, 5)
    objects = _done_objects(fs, out)
    assert len(objects) == 1  # one task (threads: one tile), one record
    recorded = {tuple(b) for b in json.loads(fs.cat_file(objects[0]))}
    assert len(recorded) == 5
    res = runconfig.run(cfg)
    assert (res.skipped, res.computed) == (5, 7)
    assert len(_done_objects(fs, out)) == 2
    got = zarr.open_group(out, mode="r", storage_options=cfg.output.storage_options)["result"][...]
    np.testing.assert_array_equal(got, _ref(a))


def test_a_lost_chunk_is_forgotten_and_only_its_block_recomputed(job):
    cfg, a, out, fs = job
    _interrupt(cfg, 5)
    (record,) = _done_objects(fs, out)
    victim = tuple(json.loads(fs.cat_file(record))[2])
    fs.rm_file(f"{out.removeprefix('s3://')}/result/c/{victim[0]}/{victim[1]}")
    res = runconfig.run(cfg)
    assert (res.skipped, res.computed) == (4, 8)
    got = zarr.open_group(out, mode="r", storage_options=cfg.output.storage_options)["result"][...]
    np.testing.assert_array_equal(got, _ref(a))


def test_a_ledger_of_one_object_per_block_is_still_read(job):
    cfg, a, out, fs = job
    _interrupt(cfg, 5)
    (record,) = _done_objects(fs, out)
    done_dir = record.rsplit("/", 1)[0]
    blocks = [tuple(b) for b in json.loads(fs.cat_file(record))]
    fs.rm_file(record)
    for b in blocks:  # the layout of earlier versions: an empty object per block
        fs.pipe_file(f"{done_dir}/{b[0]}.{b[1]}", b"")
    res = runconfig.run(cfg)
    assert (res.skipped, res.computed) == (5, 7)
    got = zarr.open_group(out, mode="r", storage_options=cfg.output.storage_options)["result"][...]
    np.testing.assert_array_equal(got, _ref(a))


def test_a_long_task_records_every_flush_interval(job, monkeypatch):
    cfg, _, out, fs = job
    monkeypatch.setattr(urlledger, "FLUSH_S", 0.0)  # every block is "a minute" long
    assert runconfig.run(cfg).status == runconfig.DONE
    assert len(_done_objects(fs, out)) == 12
