"""The one block-task engine (:mod:`pipeline.execution.engine`): the same output from every executor it
feeds, bounded memory whatever the number of blocks, the tiles it cuts, and ``--force``.

Outputs are checked against the brute-force reference and, chunk file by chunk file, against
the threaded run.  The cluster schedulers (LocalCluster, ``tcp://``, a worker SIGKILLed mid-run)
are in test_cluster.py; the in-process checks here use a thread pool as the executor, the code
path of the process pool and the Client (tasks submitted, a bounded number in flight)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr
from reference import brute_window, brute_window_sum
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.config.load import parse_config
from pipeline.execution import engine, sessions
from pipeline.runner import runconfig
from pipeline.storage import chunkcache, targets

W = 5


def inputs(root: Path, shape: tuple[int, int], chunk: int = 8, seed: int = 3) -> dict:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    b = rng.integers(0, 256, shape, dtype=np.uint8)
    g = zarr.open_group(root / "in.zarr", mode="w")
    for name, arr in (("a", a), ("b", b)):
        g.create_array(name, shape=shape, dtype=arr.dtype, chunks=(chunk, chunk), dimension_names=("y", "x"))[...] = arr
    field = a.astype(np.int64) ** 2 - b.astype(np.int64) ** 2
    return {"store": str(root / "in.zarr"), "a": a, "b": b, "field": field}


def config(data: dict, out: Path, chunks: int = 8, window: dict | None = None, **compute) -> dict:
    return {
        "inputs": {"a": {"path": data["store"], "array": "a"}, "b": {"path": data["store"], "array": "b"}},
        "op": "a**2 - b**2",
        "window": window or {"size": W},
        "output": {"path": str(out)},
        "compute": {"chunks": chunks, **compute},
    }


def chunk_bytes(path: Path) -> dict[str, bytes]:
    root = Path(path) / "result"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != "zarr.json"}


def result(path: Path) -> np.ndarray:
    return zarr.open_group(str(path), mode="r")["result"][...]


def create(prep: runconfig.Prepared):
    names = runconfig.output_names(prep.plan, "result")
    target = targets.open_target(prep.config.output.path, prep.config.output.storage_options)
    return runconfig.create_outputs(prep, target, names, {"complete": False}, overwrite=False)[prep.plan.stats[0]]


class PoolSession(sessions.Session):
    """A session whose executor is a thread pool of this process: the submit/wait path of the
    process pool and the Client, observable from the test (tasks pending at once)."""

    def __init__(self, threads: int) -> None:
        super().__init__(mode="threads", kwargs={}, description="test pool", threads=threads)
        self.executor = ThreadPoolExecutor(threads)
        self.pending = 0
        self.most = 0
        self.lock = threading.Lock()

    def submit(self, fn, *args):
        with self.lock:
            self.pending += 1
            self.most = max(self.most, self.pending)
        fut = self.executor.submit(fn, *args)

        def done(_):
            with self.lock:
                self.pending -= 1

        fut.add_done_callback(done)
        return fut


# --------------------------------------------------------------------------------------------
# the same chunks from every executor


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine")
    data = inputs(root, (45, 61))
    out = root / "threads.zarr"
    runconfig.run(config(data, out, scheduler="threads", workers=2))
    assert np.array_equal(result(out), brute_window_sum(data["field"], W))
    return data, out


@pytest.mark.parametrize("scheduler", ["synchronous", "processes"])
def test_local_schedulers_write_the_threaded_chunks(small, tmp_path, scheduler):
    data, threads_out = small
    out = tmp_path / "out.zarr"
    res = runconfig.run(config(data, out, scheduler=scheduler, workers=2))
    assert res.computed == res.blocks == 6 * 8
    assert chunk_bytes(out) == chunk_bytes(threads_out)


def test_tasks_through_an_executor_write_the_threaded_chunks_with_bounded_tasks_in_flight(small, tmp_path):
    data, threads_out = small
    prep = runconfig.prepare(config(data, tmp_path / "out.zarr"))
    target = create(prep)
    sess = PoolSession(2)
    with sess.executor:
        n, lo, hi = runconfig.execute(prep, target, session=sess)
    ref = brute_window_sum(data["field"], W)
    assert n == 48 and (lo, hi) == (ref.min(), ref.max())
    assert sess.most <= engine.IN_FLIGHT * 2
    assert chunk_bytes(tmp_path / "out.zarr") == chunk_bytes(threads_out)


def test_periodic_boundary_blocks_from_the_lazy_graph_on_an_executor(small, tmp_path):
    """Plans the chunk path does not cover (wrap) run in the same loop, block by block from the
    culled map_overlap graph."""
    data, _ = small
    window = {"size": W, "boundary": "wrap"}
    runconfig.run(config(data, tmp_path / "threads.zarr", window=window, scheduler="threads"))
    prep = runconfig.prepare(config(data, tmp_path / "pool.zarr", window=window))
    assert not engine.chunk_path(prep)
    target = create(prep)
    sess = PoolSession(2)
    with sess.executor:
        runconfig.execute(prep, target, session=sess)
    assert np.array_equal(result(tmp_path / "pool.zarr"), brute_window(data["field"], W, "sum", boundary="wrap"))
    assert chunk_bytes(tmp_path / "pool.zarr") == chunk_bytes(tmp_path / "threads.zarr")


# --------------------------------------------------------------------------------------------
# memory flat in the number of blocks


def test_chunks_held_and_tasks_in_flight_do_not_grow_with_the_number_of_blocks(tmp_path, monkeypatch):
    held: list[int] = []

    class Counting(chunkcache.HaloReader):
        def read(self, region, group=None):
            out = super().read(region, group)
            held.append(self.cached)
            return out

    monkeypatch.setattr(engine, "HaloReader", Counting)
    peaks = {}
    for rows in (16, 64):  # 2 x 8 and 8 x 8 blocks... 4x as many blocks
        root = tmp_path / str(rows)
        root.mkdir()
        data = inputs(root, (rows * 8, 64), seed=rows)
        prep = runconfig.prepare(config(data, root / "out.zarr"))
        target = create(prep)
        held.clear()
        sess = PoolSession(2)
        with sess.executor:
            runconfig.execute(prep, target, session=sess)
        assert np.array_equal(result(root / "out.zarr"), brute_window_sum(data["field"], W))
        peaks[rows] = (max(held), sess.most)
    assert peaks[64] == peaks[16], peaks  # decoded chunks held by a task, tasks pending at once


# --------------------------------------------------------------------------------------------
# tiles


@pytest.mark.parametrize("nblocks,strip,threads", [((8, 8), 6, 2), ((16, 16), 4, 16), ((3, 1), 6, 4), ((2, 3, 5), 2, 3), ((1, 40), 6, 2)])
def test_tiles_cover_every_block_once_in_strip_order(nblocks, strip, threads):
    order = chunkcache.strip_order(nblocks, 1)
    got = engine.tiles(nblocks, strip, order, threads)
    flat = [b for t in got for b in t]
    assert sorted(flat) == sorted(order) and len(flat) == len(set(flat))
    for t in got:
        cols = {b[-1] for b in t}
        assert max(cols) - min(cols) < strip  # a tile stays within one strip
        rows = [b[:-1] for b in t]
        assert rows == sorted(rows)  # row by row: its chunk cache stays two chunk rows high
    if nblocks[-1] * np.prod(nblocks[:-1]) >= engine.TILES_PER_THREAD * threads:
        assert len(got) >= threads  # every worker thread gets work


def test_tiles_of_a_subset_leave_the_other_blocks_out():
    subset = [(0, 1), (3, 3), (2, 0)]
    got = engine.tiles((4, 4), 4, subset, 2)
    assert sorted(b for t in got for b in t) == sorted(subset)


# --------------------------------------------------------------------------------------------
# --force


def test_force_recomputes_an_up_to_date_output(small, tmp_path):
    data, threads_out = small
    cfg = config(data, tmp_path / "out.zarr", scheduler="threads")
    runconfig.run(cfg)
    # damage a chunk behind the ledger's back: a plain rerun trusts the ledger ...
    victim = tmp_path / "out.zarr" / "result" / "c" / "1" / "1"
    good = victim.read_bytes()
    victim.write_bytes((tmp_path / "out.zarr" / "result" / "c" / "0" / "0").read_bytes())
    assert runconfig.run(cfg).status == runconfig.UP_TO_DATE
    assert victim.read_bytes() != good
    # ... --force recomputes every block
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = CliRunner().invoke(app, ["run", "-q", "--force", str(tmp_path / "c.yaml")])
    assert r.exit_code == 0, r.output
    assert "48 blocks in" in r.output and "resumed" not in r.output, r.output
    assert victim.read_bytes() == good
    assert chunk_bytes(tmp_path / "out.zarr") == chunk_bytes(threads_out)


def test_force_does_not_replace_an_output_of_another_config(small, tmp_path):
    data, _ = small
    runconfig.run(config(data, tmp_path / "out.zarr", scheduler="threads"))
    other = config(data, tmp_path / "out.zarr", window={"size": 3}, scheduler="threads")
    with pytest.raises(Exception, match="pass --overwrite"):
        runconfig.run(parse_config(other), force=True)


@pytest.mark.parametrize("dtype", ["int32", "float64"])
def test_block_range_skips_nan_and_the_fill(dtype):
    """assemble.value_range (a block's range, as engine.write gives it) against the masked
    reference: NaN and the fill value excluded, None when nothing is left, also when the fill is
    the block's own extreme."""
    from pipeline.execution.assemble import value_range

    rng = np.random.default_rng(3)
    for trial in range(40):
        b = rng.integers(-5, 6, (7, 9)).astype(dtype)
        if dtype == "float64" and trial % 2:
            b[rng.random(b.shape) < 0.4] = np.nan
        fill = [None, -5, 5, 0, np.nan][trial % 5] if dtype == "float64" else [None, -5, 5, 0][trial % 4]
        if trial % 7 == 0:
            b[...] = np.nan if dtype == "float64" else (fill if fill is not None else 1)
        keep = b[~np.isnan(b)] if dtype == "float64" else b.ravel()
        if fill is not None and fill == fill:
            keep = keep[keep != fill]
        want = (None, None) if keep.size == 0 else (keep.min().item(), keep.max().item())
        assert value_range(b, fill) == want
