"""The output lock on object storage (issue 27 item 5): a create-if-absent lock object
(``If-None-Match: *``) on moto's S3 server refuses a second writer, is released by its holder and
taken over when stale; backends without the condition take no lock."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from pipeline.config.load import load_config
from pipeline.errors import LockedError
from pipeline.runner import dryrun, runconfig
from pipeline.storage.urllock import ObjectLock

SHAPE = (40, 36)


def _fs(s3):
    import s3fs

    return s3fs.S3FileSystem(endpoint_url=s3["endpoint_url"])


def test_a_second_writer_is_refused_until_the_first_releases(s3):
    opts = {"endpoint_url": s3["endpoint_url"]}
    url = "s3://pipeline-test/lock-a.zarr.pipeline/lock"
    with ObjectLock(url, opts, "out A") as first:
        assert first.held and _fs(s3).exists(url)
        with pytest.raises(LockedError, match="being written by another run"):
            ObjectLock(url, opts, "out A").acquire()
    assert not _fs(s3).exists(url)
    with ObjectLock(url, opts, "out A") as again:
        assert again.held


def test_a_stale_lock_is_taken_over(s3, monkeypatch):
    opts = {"endpoint_url": s3["endpoint_url"]}
    url = "s3://pipeline-test/lock-b.zarr.pipeline/lock"
    _fs(s3).pipe_file(url, b'{"host": "gone", "pid": 1, "token": "dead"}')  # a holder that died
    with pytest.raises(LockedError):
        ObjectLock(url, opts, "out B").acquire()
    monkeypatch.setenv("PIPELINE_LOCK_TIMEOUT", "-5")  # every heartbeat is too old
    with ObjectLock(url, opts, "out B") as lock:
        assert lock.held and lock.token.encode() in _fs(s3).cat_file(url)


def test_no_lock_where_the_backend_does_not_send_the_condition():
    with ObjectLock("memory://lock-c/out.zarr.pipeline/lock", {}, "out C") as lock:
        assert not lock.held
        ObjectLock("memory://lock-c/out.zarr.pipeline/lock", {}, "out C").acquire()  # not refused


def test_a_run_on_s3_is_refused_while_another_holds_the_output(tmp_path, s3):
    opts = {"endpoint_url": s3["endpoint_url"]}
    a = np.random.default_rng(27).integers(0, 100, SHAPE, dtype=np.uint8)
    zarr.open_group(tmp_path / "in.zarr", mode="w").create_array("a", shape=SHAPE, chunks=(16, 16), dtype=a.dtype)[...] = a
    out = "s3://pipeline-test/lock-run.zarr"
    cfg = {
        "inputs": {"a": {"path": str(tmp_path / "in.zarr"), "array": "a"}},
        "op": "a",
        "window": {"size": 3},
        "output": {"path": out, "storage_options": opts},
        "compute": {"scheduler": "synchronous"},
    }
    with ObjectLock(f"{out}.pipeline/lock", opts, "the other run"):
        with pytest.raises(LockedError, match="another run"):
            runconfig.run(cfg)
        assert dryrun.preview(load_config(cfg)).verdict == "locked"
    assert dryrun.preview(load_config(cfg)).verdict == "new"
    assert not _fs(s3).exists("pipeline-test/lock-run.zarr")  # nothing written
    assert runconfig.run(cfg).status == runconfig.DONE
    assert not _fs(s3).exists("pipeline-test/lock-run.zarr.pipeline/lock")  # released
    padded = np.pad(a.astype(np.int64), 1)
    ref = sum(padded[i : i + SHAPE[0], j : j + SHAPE[1]] for i in range(3) for j in range(3))
    got = zarr.open_group(out, mode="r", storage_options=opts)["result"][...]
    np.testing.assert_array_equal(got, ref)
