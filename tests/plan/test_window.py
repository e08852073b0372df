"""Window sums against the brute-force reference: shapes, chunkings, W odd and even, windows wider
than chunks and images, one-row images, W=1, dtype extremes."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kernel_paths import kernel_path
from reference import brute_window_sum

import pipeline


def _ref(a, b, size, boundary):
    if a.dtype.kind == "f":
        field = a.astype(np.float64) ** 2 - b.astype(np.float64) ** 2
    else:
        field = a.astype(object) ** 2 - b.astype(object) ** 2
    return brute_window_sum(field, size, boundary)


@st.composite
def cases(draw):
    rows = draw(st.integers(1, 13))
    cols = draw(st.integers(1, 13))
    size = draw(st.one_of(st.integers(1, 17), st.tuples(st.integers(1, 17), st.integers(1, 17))))
    boundary = draw(st.sampled_from(["shrink", "valid"]))
    sizes = (size, size) if isinstance(size, int) else size
    if boundary == "valid" and (sizes[0] > rows or sizes[1] > cols):
        boundary = "shrink"
    ca = (draw(st.integers(1, rows)), draw(st.integers(1, cols)))
    cb = (draw(st.integers(1, rows)), draw(st.integers(1, cols)))
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.int8, np.int16, np.float32, np.float64]))
    seed = draw(st.integers(0, 2**32 - 1))
    return rows, cols, size, boundary, ca, cb, dtype, seed


def _random(rng, shape, dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return (rng.standard_normal(shape) * 100).astype(dtype)
    info = np.iinfo(dtype)
    lo, hi = max(info.min, -(2**20)), min(info.max, 2**20)
    x = rng.integers(lo, hi, size=shape, endpoint=True, dtype=np.int64)
    # sprinkle the dtype's extremes
    mask = rng.random(shape)
    x = np.where(mask < 0.1, info.max, np.where(mask > 0.9, info.min, x))
    return x.astype(dtype)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_dask_chunkings_match_brute_force(case):
    rows, cols, size, boundary, ca, cb, dtype, seed = case
    rng = np.random.default_rng(seed)
    a = _random(rng, (rows, cols), dtype)
    b = _random(rng, (rows, cols), dtype)
    ref = _ref(a, b, size, boundary)
    got = pipeline.window_reduce(
        "a**2 - b**2", {"a": da.from_array(a, chunks=ca), "b": da.from_array(b, chunks=cb)},
        size=size, boundary=boundary, chunks=ca,
    ).compute(scheduler="sync")
    assert got.shape == ref.shape
    if np.dtype(dtype).kind == "f":
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, ref.astype(np.float64), rtol=1e-12, atol=1e-9 * np.abs(ref).max(initial=1))
    else:
        assert got.dtype.kind == "i"
        assert np.array_equal(got.astype(object), ref), (got, ref)
    # numpy in, numpy out, same values (integers: bit for bit, whatever the chunking)
    whole = pipeline.window_reduce("a**2 - b**2", {"a": a, "b": b}, size=size, boundary=boundary)
    if np.dtype(dtype).kind == "f":
        np.testing.assert_allclose(whole, got, rtol=1e-12, atol=1e-9 * np.abs(ref).max(initial=1))
    else:
        assert np.array_equal(whole, got)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_dask_chunkings_match_brute_force_on_the_numpy_path(case):
    with kernel_path("numpy"):
        test_dask_chunkings_match_brute_force.hypothesis.inner_test(case)


@pytest.mark.parametrize("dtype,expected", [(np.uint8, np.int32), (np.uint16, np.int64), (np.int8, np.int32)])
@pytest.mark.parametrize("W", [1, 2, 3, 8, 33])
def test_extremes_exact_and_dtype(dtype, expected, W):
    info = np.iinfo(dtype)
    a = np.full((9, 11), info.max, dtype=dtype)
    b = np.full((9, 11), info.min, dtype=dtype)
    a[::2, ::3] = info.min
    b[1::2, ::2] = info.max
    out = pipeline.window_reduce("a**2 - b**2", {"a": a, "b": b}, size=W)
    assert out.dtype == expected
    assert np.array_equal(out.astype(object), _ref(a, b, W, "shrink"))


def test_sums_beyond_2_53_stay_exact():
    # full-range uint16 cubed over a 63x63 window: sums near 1.1e18, far beyond 2**53 where a
    # float64 running sum can no longer represent every integer; the integer path is exact
    a = np.full((100, 100), 65535, dtype=np.uint16)
    b = np.zeros((100, 100), dtype=np.uint16)
    b[50, 50] = 1
    out = pipeline.window_reduce("a**3 - b", {"a": a, "b": b}, size=63)
    assert out.dtype == np.int64
    centre = 65535**3 * 63 * 63 - 1
    assert centre > 2**53 and float(centre) != centre
    assert int(out[50, 50]) == centre
    assert np.array_equal(out.astype(object), brute_window_sum(a.astype(object) ** 3 - b.astype(object), 63))


def test_window_wider_than_image_and_one_row():
    a = np.arange(7, dtype=np.uint8)[None, :]
    b = np.zeros_like(a)
    out = pipeline.window_reduce("a - b", {"a": da.from_array(a, chunks=(1, 2)), "b": b}, size=(5, 21))
    # every window covers the whole row
    assert np.array_equal(out.compute(), np.full((1, 7), a.sum()))


def test_zarr_runner_matches_reference_with_uneven_chunks(tmp_path):
    rng = np.random.default_rng(7)
    a = rng.integers(0, 256, size=(37, 53), dtype=np.uint8)
    b = rng.integers(0, 256, size=(37, 53), dtype=np.uint8)
    g = zarr.open_group(tmp_path / "in.zarr", mode="w")
    g.create_array("a", shape=a.shape, dtype=a.dtype, chunks=(8, 9))[...] = a
    g.create_array("b", shape=b.shape, dtype=b.dtype, chunks=(5, 16))[...] = b
    for boundary in ("shrink", "valid"):
        for chunks in (6, [4, 11], "auto"):
            out = tmp_path / f"out-{boundary}-{chunks}.zarr"
            pipeline.run({
                "inputs": {"a": {"path": str(tmp_path / "in.zarr"), "array": "a"},
                           "b": {"path": str(tmp_path / "in.zarr"), "array": "b"}},
                "op": "a**2 - b**2",
                "window": {"size": [7, 4], "boundary": boundary},
                "output": {"path": str(out)},
                "compute": {"chunks": chunks, "scheduler": "synchronous"},
            })
            got = zarr.open_group(out, mode="r")["result"][...]
            assert np.array_equal(got.astype(object), _ref(a, b, (7, 4), boundary)), (boundary, chunks)


def test_sums_beyond_int64_are_refused():
    a = np.zeros((4, 4), dtype=np.int32)
    with pytest.raises(pipeline.ConfigError, match="beyond int64"):
        pipeline.window_reduce("a**2 - a**2", {"a": a}, size=3)
    # a single pixel still fits int64
    big = np.full((2, 2), np.iinfo(np.int32).min, dtype=np.int32)
    out = pipeline.window_reduce("a**2", {"a": big}, size=1)
    assert out.dtype == np.int64 and int(out[0, 0]) == 2**62
