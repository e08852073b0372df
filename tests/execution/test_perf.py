"""The performance paths against independent references: the fused compiled window sum, the
decode-once halo reader, the direct threaded executor, and the benchmark's smoke run."""

from __future__ import annotations

import collections
import itertools
import json
import subprocess
import sys
import threading

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import brute_window_sum, seed_loop

import pipeline
from pipeline.kernels import fastsum
from pipeline.runner import runconfig
from pipeline.storage.chunkcache import HaloReader, strip_order

needs_numba = pytest.mark.skipif(not fastsum.AVAILABLE, reason="numba not installed: the numpy path is used")


def _brute_centres(x, lo, hi, start, stop):
    """Sums over windows clipped to the data, for centres [start, stop) per axis (Python ints)."""
    h, w = x.shape[-2:]
    lead = x.shape[:-2]
    out = np.zeros(lead + (stop[0] - start[0], stop[1] - start[1]), dtype=object)
    for li in np.ndindex(lead):
        sub = x[li].astype(object)
        for r, c in itertools.product(range(start[0], stop[0]), range(start[1], stop[1])):
            win = sub[max(r - lo[0], 0) : min(r + hi[0], h - 1) + 1, max(c - lo[1], 0) : min(c + hi[1], w - 1) + 1]
            out[li + (r - start[0], c - start[1])] = sum(int(v) for v in win.ravel())
    return out


@st.composite
def fused_cases(draw):
    dtype = draw(st.sampled_from(["uint8", "int16", "int32", "int64", "bool"]))
    lead = draw(st.sampled_from([(), (2,)]))
    h, w = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    lo = (draw(st.integers(0, 26)), draw(st.integers(0, 26)))
    hi = (draw(st.integers(0, 26)), draw(st.integers(0, 26)))
    r0 = draw(st.integers(0, h))
    c0 = draw(st.integers(0, w))
    r1 = draw(st.integers(r0, h))
    c1 = draw(st.integers(c0, w))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        x = rng.integers(0, 2, lead + (h, w)).astype(bool)
    else:
        info = np.iinfo(dtype)
        lo_v, hi_v = (info.min, info.max) if dtype != "int64" else (-(2**40), 2**40)
        x = rng.integers(lo_v, hi_v, lead + (h, w), dtype=dtype, endpoint=True)
    return x, lo, hi, (r0, c0), (r1, c1)


@needs_numba
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fused_cases())
def test_fused_window_sum_matches_brute_force(case):
    x, lo, hi, start, stop = case
    got = fastsum.window_sum_2d(x, lo, hi, start, stop, np.int64)
    want = _brute_centres(x, lo, hi, start, stop)
    assert got.dtype == np.int64
    assert got.shape == want.shape
    assert np.array_equal(got.astype(object), want)


@needs_numba
def test_fused_window_sum_is_exact_when_partial_sums_wrap():
    # int32 output; the column sums and running sums exceed int32 transiently, the window sums do not
    x = np.zeros((7, 9), np.int32)
    x[0::2] = 2**31 - 1
    x[1::2] = -(2**31) + 1
    got = fastsum.window_sum_2d(x, (0, 0), (1, 0), (0, 0), (6, 9), np.int32)  # pairs of rows
    assert np.array_equal(got.astype(object), _brute_centres(x, (0, 0), (1, 0), (0, 0), (6, 9)))


@pytest.mark.parametrize("whole", [True, False], ids=["whole-field", "strips"])
@pytest.mark.parametrize("w", [1, 2, 3, 8, 33])
def test_window_reduce_fast_path_on_a_large_block(w, whole, monkeypatch):
    # the field evaluated whole, or a strip of rows at a time into a ring (blocks wider than the
    # STRIP rows and the ring), uint8 extremes included
    from pipeline.kernels import ops

    monkeypatch.setattr(ops, "WHOLE_FIELD_BYTES", 2**40 if whole else 0)
    rng = np.random.default_rng(w)
    a = rng.integers(0, 256, (90, 41), dtype=np.uint8)
    b = rng.integers(0, 256, (90, 41), dtype=np.uint8)
    a[:20] = 255
    b[-20:] = 255
    got = pipeline.window_reduce("a**2 - b**2", {"a": a, "b": b}, size=w)
    want = brute_window_sum(a.astype(object) ** 2 - b.astype(object) ** 2, w)
    assert np.array_equal(got.astype(object), want)


def test_window_reduce_seed_through_fast_path():
    from reference import SEED_A, SEED_B, SEED_EXPECTED

    assert np.array_equal(pipeline.window_reduce("a**2 - b**2", {"a": SEED_A, "b": SEED_B}, size=3), SEED_EXPECTED)
    assert np.array_equal(seed_loop(SEED_A, SEED_B, 3), SEED_EXPECTED)


# ----------------------------------------------------------------------------------- halo reader


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 30), st.integers(1, 30),
    st.integers(1, 9), st.integers(1, 9), st.integers(1, 9), st.integers(1, 9),
    st.integers(1, 12), st.integers(1, 12), st.integers(0, 5), st.integers(1, 4),
)
def test_halo_reader_assembles_regions_and_decodes_each_chunk_once(h, w, ca0, ca1, cb0, cb1, bh, bw, d, strip):
    rng = np.random.default_rng(h * 31 + w)
    data = {"a": rng.integers(0, 100, (h, w)), "b": rng.integers(0, 100, (h, w)).astype(np.uint8)}
    chunks = {"a": (ca0, ca1), "b": (cb0, cb1)}
    calls = []

    def read(name, region):
        # only ever whole storage chunks
        for sl, c, n in zip(region, chunks[name], (h, w)):
            assert sl.start % c == 0 and sl.stop == min(sl.start + c, n)
        calls.append((name, tuple((sl.start, sl.stop) for sl in region)))
        return data[name][region].copy()

    nb = (-(-h // bh), -(-w // bw))
    order = strip_order(nb, strip)
    assert sorted(order) == sorted(itertools.product(range(nb[0]), range(nb[1])))
    regions = []
    for i, j in order:
        regions.append((slice(max(i * bh - d, 0), min((i + 1) * bh + d, h)), slice(max(j * bw - d, 0), min((j + 1) * bw + d, w))))
    reader = HaloReader(read, (h, w), chunks, regions)
    for region in regions:
        got = reader.read(region)
        for name in data:
            assert np.array_equal(got[name], data[name][region])
            assert got[name].dtype == data[name].dtype
    assert reader.cached == 0  # everything released
    # a chunk is decoded at most once per strip it is used in, and once overall when one strip
    if strip >= nb[1]:
        assert len(calls) == len(set(calls))


@pytest.mark.parametrize("strip", [1, 2, 3])
def test_halo_reader_cache_per_strip_is_flat_in_image_height(strip):
    """With a cache per strip (group), the chunks held at once do not grow with the image
    height; each chunk is decoded once per strip that uses it."""
    peaks = {}
    for h in (64, 256):
        data = {"a": np.arange(h * 64).reshape(h, 64)}
        calls = []

        def read(name, region):
            calls.append(region)
            return data[name][region].copy()

        nb = (h // 8, 64 // 8)
        order = strip_order(nb, strip)
        regions = [(slice(max(i * 8 - 2, 0), min(i * 8 + 10, h)), slice(max(j * 8 - 2, 0), min(j * 8 + 10, 64))) for i, j in order]
        groups = [j // strip for _, j in order]
        reader = HaloReader(read, (h, 64), {"a": (16, 16)}, regions, groups)
        peak = 0
        for region, group in zip(regions, groups):
            got = reader.read(region, group)
            assert np.array_equal(got["a"], data["a"][region])
            peak = max(peak, reader.cached)
        assert reader.cached == 0
        # each chunk decoded exactly once per strip whose blocks touch it
        decoded = collections.Counter((r[0].start, r[1].start) for r in calls)
        users = collections.defaultdict(set)
        for region, group in zip(regions, groups):
            for ci in range(region[0].start // 16, (region[0].stop - 1) // 16 + 1):
                for cj in range(region[1].start // 16, (region[1].stop - 1) // 16 + 1):
                    users[(ci * 16, cj * 16)].add(group)
        assert decoded == {k: len(g) for k, g in users.items()}
        peaks[h] = peak
    assert peaks[64] == peaks[256]


def test_halo_reader_is_thread_safe():
    data = {"a": np.arange(64 * 64).reshape(64, 64)}
    calls = []
    lock = threading.Lock()

    def read(name, region):
        with lock:
            calls.append(region)
        return data[name][region].copy()

    regions = [(slice(max(i - 3, 0), min(i + 11, 64)), slice(max(j - 3, 0), min(j + 11, 64))) for i in range(0, 64, 8) for j in range(0, 64, 8)]
    reader = HaloReader(read, (64, 64), {"a": (16, 16)}, regions)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(reader.read, regions))
    for region, got in zip(regions, results):
        assert np.array_equal(got["a"], data["a"][region])
    assert len(calls) == len({(r[0].start, r[1].start) for r in calls}) == 16
    assert reader.cached == 0


# ----------------------------------------------------------------------------------- executor


def _pair(tmp_path, shape, chunks_a, chunks_b, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    b = rng.integers(0, 256, shape, dtype=np.uint8)
    g = zarr.open_group(str(tmp_path / "in.zarr"), mode="w")
    g.create_array("a", shape=shape, dtype="uint8", chunks=chunks_a)[...] = a
    g.create_array("b", shape=shape, dtype="uint8", chunks=chunks_b)[...] = b
    return a, b


@pytest.mark.parametrize(
    "shape,ca,cb,w,chunks,scheduler",
    [
        ((37, 53), (8, 16), (16, 8), 5, "auto", "threads"),
        ((37, 53), (8, 16), (8, 16), 21, 8, "threads"),  # halo wider than blocks and chunks
        ((64, 40), (10, 10), (10, 10), 4, [16, 12], "synchronous"),
        ((3, 20, 30), (1, 7, 7), (2, 5, 9), 3, 7, "threads"),  # a leading band axis
    ],
)
def test_direct_executor_matches_brute_force(tmp_path, shape, ca, cb, w, chunks, scheduler):
    a, b = _pair(tmp_path, shape, ca, cb)
    cfg = {
        "inputs": {"a": {"path": str(tmp_path / "in.zarr"), "array": "a"}, "b": {"path": str(tmp_path / "in.zarr"), "array": "b"}},
        "op": "a**2 - b**2",
        "window": {"size": w, **({"axes": [1, 2]} if len(shape) == 3 else {})},  # unnamed 3-D: axes needed
        "output": {"path": str(tmp_path / "out.zarr")},
        "compute": {"scheduler": scheduler, "chunks": chunks, "workers": 2},
    }
    res = pipeline.run(cfg)
    got = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")["result"][...]
    want = brute_window_sum(a.astype(object) ** 2 - b.astype(object) ** 2, w)
    assert np.array_equal(got.astype(object), want)
    assert res.minimum == want.min() and res.maximum == want.max()


def test_direct_executor_subset_and_record(tmp_path):
    a, b = _pair(tmp_path, (40, 40), (10, 10), (10, 10))
    cfg = {
        "inputs": {"a": {"path": str(tmp_path / "in.zarr"), "array": "a"}, "b": {"path": str(tmp_path / "in.zarr"), "array": "b"}},
        "op": "a**2 - b**2",
        "window": {"size": 3},
        "output": {"path": str(tmp_path / "out.zarr")},
        "compute": {"chunks": 10},
    }
    prep = runconfig.prepare(cfg)
    from pipeline.storage import io

    plan = prep.plan
    target = io.create_output(
        str(tmp_path / "out.zarr"), "result", shape=plan.out_shape, dtype=plan.out_dtype, chunks=plan.storage_chunks,
        dims=plan.dims, attrs={}, coords={}, fill_value=-1,
    )
    recorded = []

    def record(idx):
        # recorded only after the block is on disk
        region = dict(runconfig.block_regions(plan))[idx]
        assert (target[region] != -1).all()
        recorded.append(idx)

    progress = []
    want = [(0, 1), (2, 3), (3, 0)]
    n, lo, hi = runconfig.execute(prep, target, blocks=want, record=record, progress=lambda d, t: progress.append((d, t)))
    assert n == 3 and sorted(recorded) == sorted(want)
    assert progress[-1] == (3, 3)
    full = brute_window_sum(a.astype(object) ** 2 - b.astype(object) ** 2, 3)
    out = target[...]
    for idx, region in runconfig.block_regions(plan):
        if idx in want:
            assert np.array_equal(out[region].astype(object), full[region])
        else:
            assert (out[region] == -1).all()


# ----------------------------------------------------------------------------------- direct chunk I/O


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "dtype,shape,chunks,fill",
    [
        ("int32", (100, 130), (32, 48), 0),  # edge chunks on both axes
        ("float64", (3, 50, 50), (2, 16, 20), np.nan),
        ("uint8", (64, 64), (64, 64), 7),
        ("int64", (10,), (3,), -1),
    ],
)
def test_direct_chunks_write_the_bytes_zarr_writes(tmp_path, dtype, shape, chunks, fill):
    """zarrchunks.DirectChunks encodes with zarr's own codecs in the calling thread: every stored file is
    byte-identical to zarr's, edge chunks padded alike, and its reads equal zarr's."""
    from pipeline.storage import io, zarrchunks

    rng = np.random.default_rng(3)
    data = rng.normal(0, 1000, shape).astype(dtype)
    kw = dict(shape=shape, dtype=np.dtype(dtype), chunks=chunks, dims=tuple("zyx"[-len(shape):]), attrs={}, coords={}, fill_value=fill)
    by_zarr = io.create_output(str(tmp_path / "z.zarr"), "r", **kw)
    by_zarr[...] = data
    mine = io.create_output(str(tmp_path / "d.zarr"), "r", **kw)
    direct = zarrchunks.DirectChunks.of(mine)
    assert direct is not None
    full = tuple(slice(0, n) for n in shape)
    direct.write_region(full, data)
    assert _files(tmp_path / "d.zarr") == _files(tmp_path / "z.zarr")
    reader = zarrchunks.DirectChunks.of(by_zarr)
    for coords in itertools.product(*(range(-(-n // c)) for n, c in zip(shape, chunks))):
        np.testing.assert_array_equal(reader.read(coords), by_zarr.get_block_selection(coords))
    # a chunk never written reads as the fill value, clipped to the array
    empty = io.create_output(str(tmp_path / "e.zarr"), "r", **kw)
    last = tuple(-(-n // c) - 1 for n, c in zip(shape, chunks))
    np.testing.assert_array_equal(zarrchunks.DirectChunks.of(empty).read(last), empty.get_block_selection(last))


def test_direct_chunks_refuses_what_it_does_not_handle(tmp_path):
    from zarr.codecs import TransposeCodec

    from pipeline.storage import zarrchunks

    g = zarr.open_group(str(tmp_path / "x.zarr"), mode="w")
    sharded = g.create_array("s", shape=(8, 8), dtype="int32", chunks=(2, 2), shards=(4, 4))
    transposed = g.create_array("t", shape=(8, 8), dtype="int32", chunks=(4, 4), filters=[TransposeCodec(order=(1, 0))])
    mem = zarr.open_group("memory://direct-refuses", mode="w").create_array("m", shape=(4,), dtype="int32", chunks=(2,))
    for arr in (sharded, transposed, mem, np.zeros(3)):
        assert zarrchunks.DirectChunks.of(arr) is None
    plain = g.create_array("p", shape=(8, 8), dtype="int32", chunks=(4, 4))
    with pytest.raises(ValueError, match="not aligned"):
        zarrchunks.DirectChunks.of(plain).write_region((slice(2, 6), slice(0, 4)), np.zeros((4, 4), np.int32))


def test_direct_chunks_name_a_damaged_input_chunk(tmp_path):
    from pipeline.errors import InputError
    from pipeline.storage import io, zarrchunks

    g = zarr.open_group(str(tmp_path / "x.zarr"), mode="w")
    arr = g.create_array("a", shape=(8, 8), dtype="int32", chunks=(4, 4), compressors=io.default_compressors(np.dtype("int32")))
    arr[...] = np.arange(64, dtype=np.int32).reshape(8, 8)
    key = tmp_path / "x.zarr" / "a" / "c" / "1" / "0"
    raw = bytearray(key.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    key.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="chunk c/1/0 cannot be read") as e:
        zarrchunks.DirectChunks.of(arr, "inputs.a").read((1, 0))
    assert e.value.where == "inputs.a"


def test_direct_executor_same_bytes_with_and_without_direct_chunks(tmp_path, monkeypatch):
    """The direct executor's output through zarrchunks.DirectChunks and through zarr's API is the same,
    file for file."""
    from pipeline.storage import zarrchunks

    _pair(tmp_path, (70, 90), (16, 32), (32, 16))
    outs = {}
    for mode in ("direct", "zarr"):
        if mode == "zarr":
            monkeypatch.setattr(zarrchunks.DirectChunks, "of", classmethod(lambda cls, arr, where=None: None))
        out = tmp_path / f"{mode}.zarr"
        cfg = {
            "inputs": {"a": {"path": str(tmp_path / "in.zarr"), "array": "a"}, "b": {"path": str(tmp_path / "in.zarr"), "array": "b"}},
            "op": "a**2 - b**2", "window": {"size": 7}, "output": {"path": str(out)},
            "compute": {"chunks": 24, "workers": 2},
        }
        pipeline.run(cfg)
        outs[mode] = {k: v for k, v in _files(out / "result").items() if k != "zarr.json"}
    assert outs["direct"] == outs["zarr"] and len(outs["direct"]) == 3 * 4


# ----------------------------------------------------------------------------------- benchmark


def test_bench_fast_smoke(tmp_path):
    """`pipeline bench --fast`: every contender runs, every output is exact (no timing checks)."""
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "bench", "--fast", "--workdir", str(tmp_path / "w"), "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    names = {(r["W"], r["contender"]) for r in res["runs"]}
    assert {(w, c) for w in (3, 15) for c in ("pipeline", "floor")} <= names
    for r in res["runs"]:
        if "error" in r:
            assert "not installed" in r["error"], r
            continue
        assert r["wall"] > 0 and r["rss"] > 0 and r["disk"] > 0
        if r["contender"] != "floor":
            assert r["exact"] is True, r
    kern = [r for r in res["kernel"] if "kernel" in r]
    assert kern and all(r.get("exact") for r in kern if "mpix_s" in r)
    assert "| 3 | pipeline |" in proc.stdout
    assert not (tmp_path / "w" / "pair-512.zarr").exists()  # generated data removed
