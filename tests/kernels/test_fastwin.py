"""The compiled window statistics (pipeline.kernels.fastwin): boundaries in index space against np.pad,
every reducer × boundary × dtype × nodata against the brute-force reference, per-block memory
with tracemalloc, and the CLI's kernel grid."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst
from kernel_paths import KERNELS, kernel_path
from reference import brute_window, readme_int_output

import pipeline
from pipeline.kernels import fastwin

pytestmark = pytest.mark.skipif(not fastwin.AVAILABLE, reason="numba not installed")

REDUCERS = ["sum", "mean", "var", "std", "count", "min", "max"]
BOUNDARIES = ["shrink", "valid", "constant", "reflect", "mirror", "nearest", "wrap"]
NP_MODES = {"reflect": "symmetric", "mirror": "reflect", "nearest": "edge", "wrap": "wrap"}


@pytest.mark.parametrize("boundary", sorted(NP_MODES))
@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("pads", [(0, 0), (1, 2), (3, 3), (7, 12)])
def test_index_map_reads_what_np_pad_writes(boundary, n, pads):
    got = fastwin.index_map(n, pads[0], pads[1], 0, n, boundary)
    assert np.array_equal(got, np.pad(np.arange(n), pads, mode=NP_MODES[boundary]))


def test_index_map_codes_outside_the_data():
    assert fastwin.index_map(3, 2, 1, 0, 3, "constant").tolist() == [-1, -1, 0, 1, 2, -1]
    assert fastwin.index_map(3, 2, 1, 1, 2, "shrink").tolist() == [-2, 0, 1, 2]


def _image(rng, shape, dtype, nodata):
    dt = np.dtype(dtype)
    if dt.kind == "f":
        x = (rng.standard_normal(shape) * 40 + 1e4).astype(dt)  # a large mean: var's stability matters
    else:
        info = np.iinfo(dt)
        x = rng.integers(max(info.min, -(2**20)), min(info.max, 2**20), shape, endpoint=True).astype(dt)
        x.flat[:: 7] = info.max  # the dtype's extremes
        x.flat[3:: 11] = info.min
    miss, nd = None, None
    if nodata:
        miss = rng.random(shape) < 0.3
        miss[: shape[0] // 2, : shape[1] // 2] = True  # a missing corner: windows without a valid pixel
        if dt.kind == "f":
            x[miss] = np.nan
        else:
            nd = {"a": int(x.flat[1])}
            x[miss] = x.flat[1]
            miss = x == x.flat[1]
    return x, miss, nd


def _compare(got, ref, reduce, scale, fill=None):
    """``got`` against the brute-force ``ref`` (None: a window without a valid pixel, NaN in float
    outputs, ``fill`` in integer ones)."""
    none = np.vectorize(lambda v: v is None, otypes=[bool])(ref)
    if got.dtype.kind == "f":
        r = np.array([np.nan if v is None else float(v) for v in ref.ravel()]).reshape(ref.shape)
        atol = {"var": 1e-9 * scale**2, "std": 1e-6 * scale}.get(reduce, 1e-9 * scale)
        np.testing.assert_allclose(got, r, rtol=1e-9, atol=atol, equal_nan=True)
    else:
        assert [int(v) for v in got[~none].ravel()] == [int(v) for v in ref[~none].ravel()]
        if none.any():
            assert fill is not None and [int(v) for v in got[none].ravel()] == [fill] * int(none.sum())


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int32", "float32", "float64"])
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("nodata", [False, True])
@pytest.mark.parametrize("kernel", KERNELS)
def test_every_reducer_boundary_dtype_nodata_matches_brute_force(kernel, dtype, boundary, nodata):
    with kernel_path(kernel):
        _every_reducer_matches_brute_force(dtype, boundary, nodata)


def _every_reducer_matches_brute_force(dtype, boundary, nodata):
    rng = np.random.default_rng(zlib.crc32(repr((dtype, boundary, nodata)).encode()))
    empty = 0
    for size in [(3, 4), (1, 6), (7, 2), (9, 9)]:  # (9, 9): windows wider than the image
        x, miss, nd = _image(rng, (6, 8), dtype, nodata)
        if boundary == "valid" and size[0] > 6:
            continue
        got = pipeline.window_reduce("a", {"a": x}, size=size, reduce=REDUCERS, boundary=boundary, cval=-3, nodata=nd)
        scale = float(np.nanmax(np.abs(x.astype(np.float64)))) + 3
        for st in REDUCERS:
            ref = brute_window(x, size, st, boundary=boundary, cval=-3, missing=miss)
            fill = None
            if np.dtype(dtype).kind != "f" and st in ("sum", "count", "min", "max"):
                info = np.iinfo(dtype)
                out_dtype, fill = readme_int_output((int(info.min), int(info.max)), dtype, st, boundary=boundary, cval=-3,
                                                    pixels=size[0] * size[1], empty=nodata)
                assert got[st].dtype == out_dtype, (st, got[st].dtype, out_dtype)
            empty += int(np.vectorize(lambda v: v is None, otypes=[bool])(ref).sum())
            _compare(got[st], ref, st, scale, fill)
    assert (empty > 0) == nodata  # the fill of empty windows is tested with nodata


def test_leading_axes_and_window_axes_not_last():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 1000, (5, 3, 7)).astype(np.int32)  # window over axes 0 and 2, band axis 1
    got = pipeline.window_reduce("a", {"a": x}, size=(3, 2), reduce=["mean", "max"], boundary="mirror", axes=(0, 2))
    for st in ("mean", "max"):
        ref = brute_window(x, (3, 2), st, boundary="mirror", axes=(0, 2))
        _compare(got[st], ref, st, 1000.0)


def test_constant_windows_have_zero_variance_on_a_large_offset():
    rng = np.random.default_rng(2)
    x = 1e8 + rng.standard_normal((40, 50))
    x[5:25, 10:40] = 1e8 + 0.1  # flat: every window inside has variance exactly 0
    var = pipeline.window_reduce("a", {"a": x}, size=5, reduce="var", boundary="reflect")
    assert (var[7:23, 12:38] == 0).all()
    assert (var[30:, :] > 0).all()


# ------------------------------------------------------------------ memory per block


@pytest.mark.parametrize(
    "dtype,reduce,boundary,nodata",
    [
        ("float64", "std", "reflect", False),
        ("float32", ["mean", "var"], "nearest", True),
        ("uint8", "mean", "shrink", True),
        ("uint16", ["min", "max"], "wrap", False),
        ("int32", "sum", "constant", False),
        ("uint8", "count", "mirror", True),
    ],
)
def test_block_peak_memory_is_within_four_times_its_input_and_output(dtype, reduce, boundary, nodata):
    rng = np.random.default_rng(0)
    x, _, nd = _image(rng, (384, 512), dtype, nodata)
    pipeline.window_reduce("a", {"a": x}, size=15, reduce=reduce, boundary=boundary, nodata=nd)  # compile outside
    tracemalloc.start()
    try:
        out = pipeline.window_reduce("a", {"a": x}, size=15, reduce=reduce, boundary=boundary, nodata=nd)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    outs = out.values() if isinstance(out, dict) else [out]
    budget = 4 * (x.nbytes + sum(o.nbytes for o in outs))
    assert peak <= budget, (peak, budget)


# ------------------------------------------------------------------ the kernel grid in the CLI


def test_bench_kernels_fast_prints_the_grid(tmp_path):
    out = tmp_path / "grid.json"
    r = subprocess.run(
        [sys.executable, "-m", "pipeline", "bench", "--kernels", "--fast", "--reducers", "mean,max",
         "--boundaries", "reflect,shrink", "--dtypes", "uint8", "--nodata", "no", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr
    cells = json.loads(out.read_text())["cells"]
    assert {(c["W"], c["reduce"], c["boundary"]) for c in cells} == {
        (w, st, b) for w in (3, 15) for st in ("mean", "max") for b in ("reflect", "shrink")
    }
    assert all(("x_scipy" in c) == (c["boundary"] == "reflect") for c in cells)
    assert "| 15 | max | reflect | uint8 | no |" in r.stdout


def test_bench_kernels_refuses_an_unknown_dtype_in_one_line():
    r = subprocess.run([sys.executable, "-m", "pipeline", "bench", "--kernels", "--fast", "--dtypes", "int8"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["error: --dtypes: must be among uint8,uint16,int32,float32,float64, got 'int8'"]


# ------------------------------------------------------------------ kernels on larger shapes (property-based)


SCIPY_MODES = {"reflect": "reflect", "mirror": "mirror", "nearest": "nearest", "wrap": "wrap", "constant": "constant"}


@settings(max_examples=60, deadline=None)
@given(
    h=hst.integers(1, 40),
    w=hst.integers(1, 300),
    w0=hst.integers(0, 20),
    w1=hst.integers(0, 150),
    dtype=hst.sampled_from(["uint8", "int32", "float64"]),
    boundary=hst.sampled_from(sorted(SCIPY_MODES)),
    seed=hst.integers(0, 2**16),
)
def test_min_max_and_moments_match_scipy_on_odd_windows(h, w, w0, w1, dtype, boundary, seed):
    """Odd windows up to 41 × 301 (row windows past the doubling limit take van Herk) on images
    up to 40 × 300: min/max equal scipy.ndimage's filters, sum and mean its uniform filter (in
    float64 on the float64 data), var a float64 two-pass reference."""
    from scipy import ndimage

    size = (2 * w0 + 1, 2 * w1 + 1)
    rng = np.random.default_rng(seed)
    if dtype == "float64":
        x = rng.standard_normal((h, w)) * 100 + 1e3
    else:
        x = rng.integers(0, 256 if dtype == "uint8" else 2**20, (h, w)).astype(dtype)
    kw = dict(size=size, mode=SCIPY_MODES[boundary], cval=-3)
    got = pipeline.window_reduce("a", {"a": x}, size=size, reduce=["min", "max", "sum", "mean", "var"], boundary=boundary, cval=-3)
    f = x.astype(np.float64)
    assert np.array_equal(got["min"], ndimage.minimum_filter(f, **kw))
    assert np.array_equal(got["max"], ndimage.maximum_filter(f, **kw))
    area = size[0] * size[1]
    mean = ndimage.uniform_filter(f, **kw)  # float64 running means: rounding, not exact
    np.testing.assert_allclose(got["mean"], mean, rtol=1e-9, atol=1e-9 * 2**20)
    np.testing.assert_allclose(got["sum"].astype(np.float64), mean * area, rtol=1e-9, atol=1e-6 * area)
    pad = np.pad(f, [(size[0] // 2,) * 2, (size[1] // 2,) * 2], mode={"reflect": "symmetric", "mirror": "reflect", "nearest": "edge", "wrap": "wrap", "constant": "constant"}[boundary], **({"constant_values": -3} if boundary == "constant" else {}))
    win = np.lib.stride_tricks.sliding_window_view(pad, size)
    np.testing.assert_allclose(got["var"], win.var(axis=(-2, -1)), rtol=1e-7, atol=1e-7 * 2**20)


@settings(max_examples=20, deadline=None)
@given(h=hst.integers(1, 40), w=hst.integers(1, 300), w0=hst.integers(0, 20), w1=hst.integers(0, 150),
       dtype=hst.sampled_from(["uint8", "int32", "float64"]), boundary=hst.sampled_from(sorted(SCIPY_MODES)),
       seed=hst.integers(0, 2**16))
def test_min_max_and_moments_match_scipy_on_the_numpy_path(h, w, w0, w1, dtype, boundary, seed):
    with kernel_path("numpy"):
        test_min_max_and_moments_match_scipy_on_odd_windows.hypothesis.inner_test(h, w, w0, w1, dtype, boundary, seed)


def test_bench_kernels_without_scipy_summarises_per_reducer(tmp_path):
    out = tmp_path / "grid.json"
    r = subprocess.run(
        [sys.executable, "-m", "pipeline", "bench", "--kernels", "--fast", "--reducers", "std,min",
         "--boundaries", "reflect", "--dtypes", "uint8,float32", "--nodata", "both", "--no-scipy", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr
    cells = json.loads(out.read_text())["cells"]
    assert len(cells) == 2 * 2 * 2 * 2 and not any("x_scipy" in c for c in cells)
    for red in ("std", "min"):
        for dt in ("uint8", "float32"):
            sel = sorted(c["vs_int_sum"] for c in cells if (c["reduce"], c["dtype"]) == (red, dt))
            median = (sel[1] + sel[2]) / 2  # of 4 cells: the mean of the middle two
            assert f"| {red} | {dt} | 4 | {median:.2f} | {sel[-1]:.2f} | — |" in r.stdout
