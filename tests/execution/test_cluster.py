"""Cluster runs with real parts: ``dask scheduler``/``dask worker`` processes on loopback, a
LocalCluster from the config, a worker SIGKILLed mid-run, TLS with a throw-away CA, an S3 API on
loopback (moto's server) holding inputs and output, and the SLURM job script of dask-jobqueue.

Every run is checked against the seed's brute-force loop and, byte for byte, against the
threaded run.  One scheduler (with one worker) is shared by the whole module.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr
from cluster_helpers import Cluster, SlowRecord, make_ca, recorded, worker_env
from reference import seed_loop
from typer.testing import CliRunner

from pipeline.batch import log as batchlog
from pipeline.cli.main import app
from pipeline.config.load import load_config, parse_config
from pipeline.errors import PipelineError
from pipeline.execution import sessions
from pipeline.runner import runconfig
from pipeline.storage import io

pytest.importorskip("distributed")

W = 5
SHAPE = (41, 53)



# --------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """uint16 inputs over their full range, stored in chunks that do not divide the shape (and
    match the processing blocks: fewer tasks, so that the cluster tests stay quick)."""
    folder = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(6)
    a = rng.integers(0, 2**16, size=SHAPE, dtype=np.uint16)
    b = rng.integers(0, 2**16, size=SHAPE, dtype=np.uint16)
    a[0, :] = 65535  # the extremes
    b[-1, :] = 65535
    g = zarr.open_group(folder / "in.zarr", mode="w")
    for name, arr in (("a", a), ("b", b)):
        g.create_array(name, shape=arr.shape, dtype=arr.dtype, chunks=(16, 16), dimension_names=("y", "x"))[...] = arr
    return {"folder": folder, "a": a, "b": b, "ref": seed_loop(a, b, W), "store": str(folder / "in.zarr")}


def config(data, out, **compute) -> dict:
    return {
        "inputs": {"a": {"path": data["store"], "array": "a"}, "b": {"path": data["store"], "array": "b"}},
        "op": "a**2 - b**2",
        "window": {"size": W},
        "output": {"path": str(out)},
        "compute": {"chunks": [16, 16], **compute},  # 3x4 = 12 blocks
    }


def result(path, **kw) -> np.ndarray:
    return zarr.open_group(**({"store": str(path)} | kw), mode="r")["result"][...]


def chunk_bytes(path) -> dict[str, bytes]:
    root = Path(path) / "result"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != "zarr.json"}


@pytest.fixture(scope="module")
def threads_out(data):
    out = data["folder"] / "threads.zarr"
    runconfig.run(config(data, out, scheduler="threads"))
    got = result(out)
    assert got.dtype == np.int64
    assert np.array_equal(got.astype(object), data["ref"])
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, aws_env):
    """``dask scheduler`` + one ``dask worker`` (1 thread, 2 GiB) on 127.0.0.1."""
    from distributed import Client

    c = Cluster(tmp_path_factory.mktemp("cluster"), worker_env(aws_env))
    try:
        c.add_worker()
        with Client(c.address, timeout=30) as client:
            client.wait_for_workers(1, timeout=60)
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.close()


def _create_output(prep):
    cfg, plan = prep.config, prep.plan
    return io.create_output(
        cfg.output.path, cfg.output.array, shape=plan.out_shape, dtype=plan.out_dtype, chunks=plan.storage_chunks,
        dims=plan.dims, attrs={}, coords={}, storage_options=cfg.output.storage_options,
    )


# --------------------------------------------------------------------------------------------
# an existing scheduler


def test_existing_scheduler_gives_the_threaded_result_byte_for_byte(data, threads_out, cluster, tmp_path):
    messages = []
    out = tmp_path / "tcp.zarr"
    res = runconfig.run(config(data, out, scheduler=cluster.address), notify=messages.append)
    assert res.blocks == 12
    assert np.array_equal(result(out).astype(object), data["ref"])
    assert chunk_bytes(out) == chunk_bytes(threads_out) and len(chunk_bytes(out)) == 12
    assert any(cluster.address in m for m in messages), messages
    from distributed import Client

    with Client(cluster.address, timeout=30) as client:
        port = client.scheduler_info(n_workers=0)["services"]["dashboard"]
    assert any(f"dashboard: http://127.0.0.1:{port}/status" in m for m in messages), messages
    # the scheduler process runs this interpreter: its dashboard draws plots only with bokeh here
    import importlib.util

    hint = "(its plots need bokeh: pip install bokeh where the scheduler runs)"
    # lines while the workers are awaited and load the kernels, before the first progress
    waiting = next(i for i, m in enumerate(messages) if m.startswith(f"waiting for workers at {cluster.address} (up to "))
    assert messages[waiting + 1] == "loading the kernels on 1 workers", messages
    assert any(hint in m for m in messages) == (importlib.util.find_spec("bokeh") is None), messages
    assert not any("warning" in m for m in messages), messages  # loopback tcp: no warning


@pytest.mark.parametrize("how", ["DASK_SCHEDULER_ADDRESS", "dask config file"])
def test_dask_environment_and_config_files_are_honoured(data, threads_out, cluster, tmp_path, how):
    cfg = config(data, "out.zarr")  # no compute.scheduler
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    env = worker_env()
    if how == "DASK_SCHEDULER_ADDRESS":
        env["DASK_SCHEDULER_ADDRESS"] = cluster.address
    else:
        (tmp_path / "dask").mkdir()
        (tmp_path / "dask" / "distributed.yaml").write_text(yaml.safe_dump({"scheduler-address": cluster.address}))
        env["DASK_CONFIG"] = str(tmp_path / "dask")
    p = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "-q", str(tmp_path / "run.yaml")],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert f"scheduler: {cluster.address}" in p.stderr or cluster.address in p.stderr, p.stderr
    assert chunk_bytes(tmp_path / "out.zarr") == chunk_bytes(threads_out)


def test_worker_sigkilled_mid_run_is_replaced_logged_and_the_output_is_complete(data, cluster, tmp_path, caplog):
    from distributed import Client

    victim = cluster.add_worker()
    with Client(cluster.address, timeout=30) as client:
        client.wait_for_workers(2, timeout=60)
        victim_address = next(a for a, pid in client.run(os.getpid).items() if pid == victim.pid)
    err = StringIO()
    notify = batchlog.notify(batchlog.Log("json", err=err, context={"batch": "b1"}), "c.yaml")
    markers = tmp_path / "markers"
    markers.mkdir()
    prep = runconfig.prepare(config(data, tmp_path / "out.zarr", scheduler=cluster.address))
    target = _create_output(prep)
    failure = []

    def work():
        try:
            with sessions.session(prep.config, task_bytes=prep.plan.task_bytes, notify=notify) as sess:
                runconfig.execute(prep, target, record=SlowRecord(str(markers), 0.3), session=sess)
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            failure.append(e)

    t = threading.Thread(target=work)
    t.start()
    deadline = time.monotonic() + 60
    while not any(victim.pid in pids for pids in recorded(markers).values()):
        assert time.monotonic() < deadline and t.is_alive(), "the second worker never ran a block"
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)  # mid-run: it is sleeping inside a task
    t.join(120)
    assert not t.is_alive() and not failure, failure
    assert victim.wait(10) == -signal.SIGKILL
    done = recorded(markers)
    assert set(done) == {(i, j) for i in range(3) for j in range(4)}  # every block recorded
    assert any(victim.pid not in pids for pids in done.values())  # the survivor did the rest
    assert np.array_equal(result(tmp_path / "out.zarr").astype(object), data["ref"])
    # one warning in the batch's log and on the pipeline.execution logger, naming the lost worker
    lost = [e for e in map(json.loads, err.getvalue().splitlines()) if e["event"] == "warning"]
    assert len(lost) == 1, err.getvalue()
    m = re.fullmatch(rf"worker {re.escape(victim_address)} lost; its (\d+) task\(s\) in progress go to the other workers", lost[0]["message"])
    assert m and int(m[1]) >= 1, lost  # at least the one it was sleeping in
    assert lost[0]["batch"] == "b1" and lost[0]["config"] == "c.yaml"
    assert [r.name for r in caplog.records if r.getMessage() == lost[0]["message"]] == ["pipeline.execution"]


def test_worker_restarted_is_logged_and_the_next_run_is_exact(data, tmp_path):
    cfg = parse_config(config(data, tmp_path / "out.zarr", scheduler="local-cluster", workers=1, threads_per_worker=1, memory_limit="1GiB"))
    prep = runconfig.prepare(cfg)
    messages: list[str] = []
    with sessions.session(cfg, task_bytes=1, notify=messages.append) as sess:
        before = len(messages)
        (old,) = sess.client.scheduler_info(n_workers=-1)["workers"]
        sess.client.restart_workers([old])
        deadline = time.monotonic() + 60
        while not any(m.endswith(" joined") for m in messages[before:]):
            assert time.monotonic() < deadline, messages
            time.sleep(0.05)
        (new,) = sess.client.scheduler_info(n_workers=-1)["workers"]
        runconfig.execute(prep, _create_output(prep), session=sess)
    assert messages[before:] == [f"warning: worker {old} lost", f"worker {new} joined"]  # idle: no task to run again
    assert np.array_equal(result(tmp_path / "out.zarr").astype(object), data["ref"])


# --------------------------------------------------------------------------------------------
# a LocalCluster from the config


def test_local_cluster_from_config_on_loopback_and_resume_on_another_cluster(data, threads_out, cluster, tmp_path):
    cfg = parse_config(
        config(data, tmp_path / "local.zarr", scheduler="local-cluster", workers=2, threads_per_worker=1, memory_limit="1GiB")
    )
    with sessions.session(cfg, task_bytes=1) as sess:
        info = sess.client.scheduler_info(n_workers=-1)
        assert sess.client.scheduler.address.startswith("tls://127.0.0.1:")  # TLS, temporary credentials
        port = sess.client.scheduler.address.rsplit(":", 1)[1]
        with pytest.raises(Exception):  # noqa: B017 - a client without the credentials cannot connect
            from distributed import Client

            Client(f"tcp://127.0.0.1:{port}", timeout=2)
        assert len(info["workers"]) == 2
        for addr, w in info["workers"].items():
            assert addr.startswith("tls://127.0.0.1:"), addr  # loopback only
            assert w["memory_limit"] == 2**30 and w["nthreads"] == 1
        # the nanny's MALLOC_TRIM_THRESHOLD_ (every block buffer a fresh mmap) is left out, the rest kept
        assert set(sess.client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_").values()) == {None}
        assert set(sess.client.run(os.environ.get, "OMP_NUM_THREADS").values()) == {"1"}
        runconfig.run(cfg, session=sess)  # runs on the session given
        assert chunk_bytes(tmp_path / "local.zarr") == chunk_bytes(threads_out)

        # a job started on this cluster (half of the blocks, recorded on the workers) ...
        prep = runconfig.prepare(cfg.model_copy(update={"output": cfg.output.model_copy(update={"path": str(tmp_path / "moved.zarr")})}))
        target = _create_output(prep)
        markers = tmp_path / "markers"
        markers.mkdir()
        first = [(0, j) for j in range(4)] + [(1, 0), (1, 1)]
        runconfig.execute(prep, target, blocks=first, record=SlowRecord(str(markers)), session=sess)
        assert set(recorded(markers)) == set(first)
        assert os.getpid() not in set().union(*recorded(markers).values())  # ran on the workers
    # ... finished on another one (the dask scheduler processes)
    other = parse_config(config(data, tmp_path / "moved.zarr", scheduler=cluster.address))
    rest = [(i, j) for i in range(3) for j in range(4) if (i, j) not in first]
    with sessions.session(other) as sess:
        runconfig.execute(runconfig.prepare(other), zarr.open_group(tmp_path / "moved.zarr", mode="a")["result"], blocks=rest, session=sess)
    assert chunk_bytes(tmp_path / "moved.zarr") == chunk_bytes(threads_out)


# --------------------------------------------------------------------------------------------
# object storage


def test_s3_inputs_and_output_on_a_loopback_s3_server(data, threads_out, cluster, s3, tmp_path):
    so = {"endpoint_url": s3["endpoint_url"]}  # credentials: from the environment only
    src = zarr.open_group(store="s3://pipeline-test/in.zarr", storage_options=so, mode="w")
    for name in ("a", "b"):
        src.create_array(name, shape=SHAPE, dtype=np.uint16, chunks=(16, 16), dimension_names=("y", "x"))[...] = data[name]
    for scheduler in ("threads", cluster.address):
        out = f"s3://pipeline-test/out-{len(scheduler)}.zarr"
        cfg = {
            "inputs": {n: {"path": "s3://pipeline-test/in.zarr", "array": n, "storage_options": so} for n in ("a", "b")},
            "op": "a**2 - b**2",
            "window": {"size": W},
            "output": {"path": out, "storage_options": so},
            "compute": {"chunks": [16, 16], "scheduler": scheduler},
        }
        res = runconfig.run(cfg)
        assert res.blocks == 12
        got = zarr.open_group(store=out, storage_options=so, mode="r")["result"][...]
        assert np.array_equal(got, result(threads_out)), scheduler
        assert np.array_equal(got.astype(object), data["ref"]), scheduler
    # a missing store is named, and nothing is written
    cfg["inputs"]["a"]["path"] = "s3://pipeline-test/missing.zarr"
    cfg["output"]["path"] = "s3://pipeline-test/never.zarr"
    with pytest.raises(PipelineError, match=r"inputs\.a: store s3://pipeline-test/missing.zarr does not exist"):
        runconfig.run(cfg)
    import s3fs

    assert not s3fs.S3FileSystem(endpoint_url=s3["endpoint_url"]).exists("pipeline-test/never.zarr")


def test_new_pixels_in_place_on_s3_are_not_up_to_date(data, s3, tmp_path):
    """A URL input's identity includes its objects' ETags: new pixels written under the same
    keys (same metadata, same sizes) make the output stale, not "up to date"."""
    so = {"endpoint_url": s3["endpoint_url"]}
    src = zarr.open_group(store="s3://pipeline-test/inplace.zarr", storage_options=so, mode="w")
    arrays = {n: src.create_array(n, shape=SHAPE, dtype=np.uint16, chunks=(16, 16), dimension_names=("y", "x")) for n in ("a", "b")}
    for n, arr in arrays.items():
        arr[...] = data[n]
    cfg = {
        "inputs": {n: {"path": "s3://pipeline-test/inplace.zarr", "array": n, "storage_options": so} for n in ("a", "b")},
        "op": "a**2 - b**2",
        "window": {"size": W},
        "output": {"path": str(tmp_path / "out.zarr")},
        "compute": {"chunks": [16, 16], "scheduler": "threads"},
    }
    assert runconfig.run(cfg).status == runconfig.DONE
    assert runconfig.run(cfg).status == runconfig.UP_TO_DATE
    a2 = data["a"].copy()
    a2[:16, :16] = a2[:16, :16][::-1]  # same dtype, same chunk, new pixels
    arrays["a"][:16, :16] = a2[:16, :16]
    with pytest.raises(PipelineError, match="written by a different config, inputs or version"):
        runconfig.run(cfg)
    res = runconfig.run(cfg, overwrite=True)
    assert res.status == runconfig.DONE and res.computed == 12
    assert np.array_equal(result(tmp_path / "out.zarr").astype(object), seed_loop(a2, data["b"], W))


def test_s3_output_interrupted_mid_run_resumes_from_its_ledger_byte_identical(data, threads_out, cluster, s3, tmp_path):
    import s3fs

    so = {"endpoint_url": s3["endpoint_url"]}
    fs = s3fs.S3FileSystem(endpoint_url=s3["endpoint_url"])
    out = "s3://pipeline-test/resume.zarr"
    cfg = parse_config(config(data, out, scheduler="threads", workers=1) | {"output": {"path": out, "storage_options": so}})

    def stop_after_5(done, total):
        if done == 5:
            raise KeyboardInterrupt("test")

    with pytest.raises(KeyboardInterrupt) as info:
        runconfig.run(cfg, progress=stop_after_5)
    assert info.value.pipeline_result.computed == 5
    # the ledger is beside the output, in the same bucket
    assert len(fs.ls("pipeline-test/resume.zarr.pipeline/result/", detail=False)) == 1
    # resumed on the cluster: only the 7 blocks left are computed
    res = runconfig.run(cfg.model_copy(update={"compute": cfg.compute.model_copy(update={"scheduler": cluster.address})}))
    assert (res.skipped, res.computed) == (5, 7)
    got = {k.split("/result/", 1)[1]: fs.cat_file(k) for k in fs.find("pipeline-test/resume.zarr/result") if "/c/" in k}
    assert got == {k: v for k, v in chunk_bytes(threads_out).items() if k.startswith("c/")}
    assert runconfig.run(cfg).status == runconfig.UP_TO_DATE
    # another config on the same output is refused, as on a local disk
    other = config(data, out, scheduler="threads") | {"output": {"path": out, "storage_options": so}, "window": {"size": 3}}
    with pytest.raises(PipelineError, match="pass --overwrite"):
        runconfig.run(other)


def test_process_local_memory_store_is_refused_on_a_cluster(data, cluster, tmp_path):
    for scheduler in (cluster.address, "processes", "local-cluster"):
        with pytest.raises(sessions.ClusterError, match=r"output\.path: memory://out\.zarr is an in-memory store local to this process"):
            runconfig.run(config(data, "memory://out.zarr", scheduler=scheduler))
    # with threads the same store works: it is the same process
    runconfig.run(config(data, "memory://out.zarr", scheduler="threads"))
    got = zarr.open_group(store="memory://out.zarr", mode="r")["result"][...]
    assert np.array_equal(got.astype(object), data["ref"])


# --------------------------------------------------------------------------------------------
# memory limits


def test_a_task_larger_than_any_worker_is_refused_before_anything_is_written(cluster, tmp_path):
    g = zarr.open_group(tmp_path / "big.zarr", mode="w")  # metadata only: no chunk is ever written
    for name in ("a", "b"):
        g.create_array(name, shape=(20000, 20000), dtype=np.uint16, chunks=(4000, 4000))
    cfg = {
        "inputs": {n: {"path": str(tmp_path / "big.zarr"), "array": n} for n in ("a", "b")},
        "op": "a**2 - b**2",
        "window": {"size": 3},
        "output": {"path": str(tmp_path / "out.zarr")},
        "compute": {"chunks": [20000, 20000], "scheduler": cluster.address},
    }
    task = runconfig.prepare(cfg).plan.task_bytes
    assert task > 2 * 2**30  # the fixture's worker has a 2 GiB limit
    with pytest.raises(sessions.ClusterError, match=r"compute\.memory_limit: a task needs about .* largest worker memory limit is 2\.00 GiB"):
        runconfig.run(cfg)
    assert not (tmp_path / "out.zarr").exists()


def test_memory_check_rules():
    gib = 2**30
    sessions.check_memory(gib, [{"name": "w", "memory_limit": gib, "nthreads": 1}])  # fits exactly
    sessions.check_memory(10 * gib, [{"name": "w", "memory_limit": 0, "nthreads": 4}])  # unlimited
    with pytest.raises(sessions.ClusterError):
        sessions.check_memory(gib + 1, [{"name": "w", "memory_limit": gib, "nthreads": 1}])
    said = []
    sessions.check_memory(gib // 2, [{"name": "w", "memory_limit": gib, "nthreads": 4}], said.append)
    assert len(said) == 1 and "4 threads" in said[0]
    # a job queue's workers: memory per job split between its processes
    spec = parse_config({"inputs": {"a": {"path": "x"}}, "op": "a", "window": {"size": 3}, "output": {"path": "o"},
                         "compute": {"cluster": {"kind": "slurm", "cores": 8, "memory": "16GiB", "processes": 2, "jobs": 3}}})
    workers = sessions._cluster_workers(spec.compute.cluster)
    assert len(workers) == 6 and all(w["memory_limit"] == 8 * gib and w["nthreads"] == 4 for w in workers)


# --------------------------------------------------------------------------------------------
# security


def _closed_loopback_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then closed)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_plain_tcp_to_another_host_is_warned_about(data, tmp_path, monkeypatch):
    from pipeline.execution import clusters

    said = []
    address = f"tcp://127.0.0.1:{_closed_loopback_port()}"
    # the scheduler stands for another host (the warning's condition), but the address tried is a
    # closed port on loopback: tests reach nothing beyond this machine
    monkeypatch.setattr(clusters, "is_loopback", lambda a: a != address and sessions.is_loopback(a))
    cfg = config(data, tmp_path / "out.zarr", scheduler=address, worker_timeout=1)
    with pytest.raises(sessions.ClusterError, match=rf"compute\.scheduler: cannot reach the scheduler at {re.escape(address)}"):
        runconfig.run(cfg, notify=said.append)
    assert said and f"plain tcp to {address}" in said[0] and "tls://" in said[0]
    assert not (tmp_path / "out.zarr").exists()
    assert sessions.is_loopback("tcp://127.0.0.1:1") and sessions.is_loopback("tcp://localhost:1")
    assert sessions.is_loopback("tcp://[::1]:8786") and not sessions.is_loopback("tcp://10.0.0.1:8786")
    assert not sessions.is_loopback("tcp://192.0.2.1:8786")


def test_tls_scheduler_with_certificates_from_the_config(data, threads_out, tmp_path):
    pytest.importorskip("cryptography")
    from distributed import Client, Security

    certs = make_ca(tmp_path)
    c = Cluster(tmp_path, worker_env(), tls=certs)
    try:
        assert c.address.startswith("tls://127.0.0.1:")
        c.add_worker()
        sec = Security(tls_ca_file=certs["ca"], tls_client_cert=certs["cert"], tls_client_key=certs["key"], require_encryption=True)
        with Client(c.address, security=sec, timeout=30) as client:
            client.wait_for_workers(1, timeout=60)
        # relative certificate paths resolve against the config file's folder
        cfg = config(data, tmp_path / "tls.zarr", scheduler=c.address, security={"ca_file": "ca.pem", "cert": "cert.pem", "key": "key.pem"})
        (tmp_path / "tls.yaml").write_text(yaml.safe_dump(cfg))
        runconfig.run(tmp_path / "tls.yaml")
        assert chunk_bytes(tmp_path / "tls.zarr") == chunk_bytes(threads_out)
        # no certificates: a clear error naming the key, nothing written
        with pytest.raises(sessions.ClusterError, match=r"compute\.security: tls://.* needs TLS certificates"):
            runconfig.run(config(data, tmp_path / "none.zarr", scheduler=c.address))
        with pytest.raises(sessions.ClusterError, match=r"compute\.security\.ca_file: certificate file .*nope.pem does not exist"):
            runconfig.run(config(data, tmp_path / "none.zarr", scheduler=c.address, security={"ca_file": str(tmp_path / "nope.pem"), "cert": certs["cert"]}))
        assert not (tmp_path / "none.zarr").exists()
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.close()


# --------------------------------------------------------------------------------------------
# HPC job queues and the CLI


def test_slurm_job_script_is_printed_by_validate_with_the_requested_resources(data, tmp_path):
    pytest.importorskip("dask_jobqueue")
    cfg = config(data, tmp_path / "out.zarr")
    cfg["compute"]["cluster"] = {
        "kind": "slurm", "jobs": 4, "cores": 8, "memory": "32GiB", "processes": 2, "walltime": "02:30:00",
        "queue": "compute", "account": "proj42", "job_script_prologue": ["module load python"],
        "job_extra_directives": ["--exclusive"],
    }
    (tmp_path / "hpc.yaml").write_text(yaml.safe_dump(cfg))
    r = CliRunner().invoke(app, ["validate", str(tmp_path / "hpc.yaml")])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert "scheduler:     slurm job queue: 4 job(s) of 8 cores, 32GiB" in lines
    script = lines[lines.index("#!/usr/bin/env bash") :]
    for directive in ("#SBATCH -p compute", "#SBATCH -A proj42", "#SBATCH --cpus-per-task=8", "#SBATCH --mem=32G",
                      "#SBATCH -t 02:30:00", "#SBATCH --exclusive"):
        assert directive in script, (directive, script)
    assert "module load python" in script
    worker = next(l for l in script if "distributed.cli.dask_worker" in l)
    assert "--nthreads 4" in worker and "--nworkers 2" in worker and "--memory-limit 16.00GiB" in worker
    assert not (tmp_path / "out.zarr").exists()
    # no sbatch here: a clear error, nothing submitted or written
    r = CliRunner().invoke(app, ["run", str(tmp_path / "hpc.yaml")])
    assert r.exit_code == 2 and "compute.cluster.kind: sbatch not found" in r.output, r.output
    assert not (tmp_path / "out.zarr").exists()
    # a scheduler given with a cluster is a contradiction
    with pytest.raises(sessions.ClusterError, match=r"compute\.scheduler: compute\.cluster starts its own scheduler"):
        sessions.resolve(parse_config({**cfg, "compute": {**cfg["compute"], "scheduler": "threads"}}))


def test_scheduler_option_of_the_cli(data, tmp_path):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config(data, "out.zarr", scheduler="threads")))
    r = CliRunner().invoke(app, ["run", str(tmp_path / "c.yaml"), "--scheduler", "gpu"])
    assert r.exit_code == 2 and "--scheduler: must be threads, processes, synchronous, local-cluster" in r.output
    assert not (tmp_path / "out.zarr").exists()
    r = CliRunner().invoke(app, ["validate", str(tmp_path / "c.yaml"), "--scheduler", "synchronous"])
    assert r.exit_code == 0 and "scheduler:     synchronous" in r.output, r.output
    r = CliRunner().invoke(app, ["run", "-q", str(tmp_path / "c.yaml"), "--scheduler", "synchronous"])
    assert r.exit_code == 0, r.output
    assert np.array_equal(result(tmp_path / "out.zarr").astype(object), data["ref"])
    assert load_config(tmp_path / "c.yaml").compute.scheduler == "threads"


@pytest.mark.parametrize(
    "value,ok",
    [("threads", True), ("local-cluster", True), ("tcp://10.1.2.3:8786", True), ("tls://head:8786", True),
     ("gpu", False), ("http://x:1", False), ("tcp://", False)],
)
def test_scheduler_values(value, ok):
    base = {"inputs": {"a": {"path": "x"}}, "op": "a", "window": {"size": 3}, "output": {"path": "o"}}
    if ok:
        assert parse_config({**base, "compute": {"scheduler": value}}).compute.scheduler == value
    else:
        with pytest.raises(PipelineError, match="compute.scheduler: .*must be threads"):
            parse_config({**base, "compute": {"scheduler": value}})
