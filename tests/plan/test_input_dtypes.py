"""Big-endian and float16 inputs (issue 21 "Crashes", issue 22 items 17-18): read in native byte
order, float16 computed wider, every result against the brute-force reference on float64 or
exact integer copies of the same values."""

from __future__ import annotations

import math

import dask.array as da
import numpy as np
import pytest
import yaml
import zarr
from reference import brute_window, seed_loop
from typer.testing import CliRunner

import pipeline
from pipeline.cli.main import app
from pipeline.storage.zarrchunks import DirectChunks

runner = CliRunner()

BOUNDARIES = ["shrink", "valid", "constant", "nearest", "reflect", "mirror", "wrap"]
REDUCERS = ["sum", "mean", "var", "std", "min", "max", "count"]
#: README "Output dtypes per reducer" for a float op (no cval): float16 is computed as float32
F16_OUT = {"sum": "float64", "mean": "float64", "var": "float64", "std": "float64", "min": "float32", "max": "float32", "count": "int32"}


def _expected(ref: np.ndarray, reduce: str) -> np.ndarray:
    """The brute force's object array as floats (None, a window without a valid pixel: NaN, or
    0 for count)."""
    empty = 0 if reduce == "count" else math.nan
    return np.array([empty if v is None else float(v) for v in ref.ravel()], dtype=np.float64).reshape(ref.shape)


def _check(got: np.ndarray, ref: np.ndarray, reduce: str, rtol: float) -> None:
    want = _expected(ref, reduce)
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == want.shape
    assert np.array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    if reduce in ("min", "max", "count"):
        assert np.array_equal(got[ok], want[ok])
    else:
        np.testing.assert_allclose(got[ok], want[ok], rtol=rtol, atol=0)


def _float16_image() -> np.ndarray:
    rng = np.random.default_rng(16)
    x = rng.uniform(-100, 100, (9, 8)).astype(np.float16)
    x[1, 2], x[4, 5] = 65504, -65504  # float16's extremes: a float16 window sum would overflow
    x[6, 1] = 0.0009765625
    x[3, 3] = np.nan
    return x


@pytest.fixture(scope="module")
def f16_refs():
    x = _float16_image()
    wide = x.astype(np.float64)  # exact: every float16 is a float64
    miss = np.isnan(wide)
    return x, {(r, b): brute_window(wide, (3, 4), r, boundary=b, cval=2.5, missing=miss) for r in REDUCERS for b in BOUNDARIES}


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("lazy", [False, True])
def test_float16_every_reducer_and_boundary(f16_refs, boundary, lazy):
    x, refs = f16_refs
    arr = da.from_array(x, chunks=(4, 4)) if lazy else x
    kw = {"cval": 2.5} if boundary == "constant" else {}
    out = pipeline.window_reduce("a", {"a": arr}, size=(3, 4), reduce=REDUCERS, boundary=boundary, **kw)
    # the output dtypes are those of the same call on float32 inputs (README's rule for a float op)
    as32 = pipeline.window_reduce("a", {"a": x[:1, :1].astype(np.float32)}, size=1, reduce=REDUCERS, boundary=boundary, **kw)
    for r in REDUCERS:
        got = out[r].compute() if lazy else out[r]
        assert got.dtype == as32[r].dtype, r
        # computed in float64 from exact float32 copies: far inside float16's own rounding (2**-11)
        _check(got, refs[(r, boundary)], r, rtol=1e-12)


def test_float16_weights_and_float16_output():
    x = _float16_image()
    wide = x.astype(np.float64)
    w = [[1, 2, 1], [2, 4, 2], [1, 2, 1]]
    got = pipeline.window_reduce("a", {"a": x}, weights=w, reduce="sum", boundary="reflect")
    _check(got, brute_window(wide, 3, "sum", boundary="reflect", weights=w, missing=np.isnan(wide)), "sum", 1e-12)
    got = pipeline.window_reduce("a", {"a": x}, size=3, reduce="max", boundary="nearest", dtype="float16")
    assert got.dtype == np.float16
    _check(got, brute_window(wide, 3, "max", boundary="nearest", missing=np.isnan(wide)), "max", 0)


BIG = [">i2", ">u2", ">i4", ">f4", ">f8"]


@pytest.mark.parametrize("dtype", BIG)
@pytest.mark.parametrize("lazy", [False, True])
def test_big_endian_api_inputs(dtype, lazy):
    rng = np.random.default_rng(7)
    native = rng.integers(0, 30000, (10, 9)).astype(np.dtype(dtype).newbyteorder("="))
    if native.dtype.kind == "f":
        native = native / 7
    big = native.astype(dtype)
    arr = da.from_array(big, chunks=(4, 5)) if lazy else big
    stats = ["sum", "mean", "var", "max"]
    out = pipeline.window_reduce("a", {"a": arr}, size=3, reduce=stats, boundary="reflect")
    for r in stats:
        got = out[r].compute() if lazy else out[r]
        assert got.dtype.isnative, (r, got.dtype)
        ref = brute_window(native, 3, r, boundary="reflect")
        if r == "sum" and native.dtype.kind in "iu":
            assert np.array_equal(got.astype(object), ref)  # exact
        else:
            _check(got, ref, r, rtol=1e-12)
    assert out["max"].dtype == native.dtype


def test_big_endian_output_dtype_is_native():
    a = np.arange(30.0).reshape(5, 6)
    got = pipeline.window_reduce("a", {"a": a}, size=3, dtype=">f4")
    assert got.dtype == np.float32 and got.dtype.isnative
    assert np.array_equal(got, _expected(brute_window(a, 3, "sum"), "sum").astype(np.float32))


def _big_store(path, version: int, arrays):
    g = zarr.open_group(path, mode="w", zarr_format=version)
    for name, x in arrays.items():
        if version == 2:
            g.create_array(name, shape=x.shape, chunks=(16, 16), dtype=">i2")[...] = x
        else:
            g.create_array(name, shape=x.shape, chunks=(16, 16), dtype="int16",
                           serializer=zarr.codecs.BytesCodec(endian="big"))[...] = x


def _config(tmp_path, store, op, window, out="out.zarr"):
    cfg = {
        "inputs": {n: {"path": str(store), "array": n} for n in ("a", "b") if n in op},
        "op": op, "window": window, "compute": {"chunks": [16, 16]}, "output": {"path": out},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("version", [2, 3])
def test_cli_big_endian_store(tmp_path, version):
    rng = np.random.default_rng(version)
    A, B = rng.integers(-300, 300, (40, 36)), rng.integers(-300, 300, (40, 36))
    _big_store(tmp_path / "in.zarr", version, {"a": A, "b": B})
    res = runner.invoke(app, ["run", str(_config(tmp_path, tmp_path / "in.zarr", "a**2 - b**2", {"size": 3, "reduce": "sum"}))])
    assert res.exit_code == 0, res.output
    out = zarr.open_array(tmp_path / "out.zarr" / "result", mode="r")
    got = out[...]
    assert got.dtype.isnative and out.dtype.isnative
    assert np.array_equal(got.astype(object), seed_loop(A, B, 3))


def test_cli_float16_op_a(tmp_path):
    x = np.random.default_rng(3).uniform(-500, 500, (40, 36)).astype(np.float16)
    x[5, 7] = np.nan
    g = zarr.open_group(tmp_path / "in.zarr", mode="w")
    g.create_array("a", shape=x.shape, chunks=(16, 16), dtype="float16")[...] = x
    stats = ["mean", "max", "std"]
    cfg = _config(tmp_path, tmp_path / "in.zarr", "a", {"size": 5, "reduce": stats, "boundary": "reflect"})
    res = runner.invoke(app, ["run", str(cfg)])
    assert res.exit_code == 0, res.output
    wide = x.astype(np.float64)
    for r in stats:
        got = zarr.open_array(tmp_path / "out.zarr" / f"result_{r}", mode="r")[...]
        assert got.dtype == np.dtype(F16_OUT[r])
        _check(got, brute_window(wide, 5, r, boundary="reflect", missing=np.isnan(wide)), r, 1e-12)


@pytest.mark.parametrize("dtype", ["int16", "uint16", "float32", "float64"])
def test_direct_chunks_big_endian_reads_as_zarr(tmp_path, dtype):
    x = (np.arange(20 * 19) % 251).reshape(20, 19).astype(dtype)
    arr = zarr.create_array(tmp_path / "a.zarr", shape=x.shape, chunks=(8, 8), dtype=dtype,
                            serializer=zarr.codecs.BytesCodec(endian="big"), fill_value=3)
    arr[:16, :] = x[:16]  # the last chunk row is not stored: the fill value
    direct = DirectChunks.of(arr)
    assert direct is not None
    for i in range(3):
        for j in range(3):
            region = (slice(8 * i, min(8 * i + 8, 20)), slice(8 * j, min(8 * j + 8, 19)))
            got, want = direct.read((i, j)), arr[region]
            assert got.dtype == want.dtype and got.dtype.isnative
            assert got.tobytes() == want.tobytes()
            expect = np.where(np.arange(20)[region[0], None] < 16, x[region], 3)
            assert np.array_equal(got, expect)


def _float16_with_nodata():
    x = np.random.default_rng(5).uniform(0, 50, (12, 10)).astype(np.float16)
    x[::3, ::4] = -9999  # float16 holds -10000
    return x


def _nodata_reference(x, size, reduce):
    wide = x.astype(np.float64)
    return brute_window(wide, size, reduce, missing=wide == -10000.0)  # the marked pixels, by value


def test_float16_nodata_api():
    x = _float16_with_nodata()
    for arr in (x, da.from_array(x, chunks=(5, 5))):
        got = np.asarray(pipeline.window_reduce("a", {"a": arr}, size=3, reduce="mean", nodata={"a": -9999}))
        _check(got, _nodata_reference(x, 3, "mean"), "mean", 1e-12)


@pytest.mark.parametrize("declared", [False, True])
def test_float16_nodata_cli(tmp_path, declared):
    x = _float16_with_nodata()
    g = zarr.open_group(tmp_path / "in.zarr", mode="w")
    g.create_array("a", shape=x.shape, chunks=(16, 16), dtype="float16",
                   attributes={"missing_value": -9999} if declared else {})[...] = x
    window = {"size": 3, "reduce": "count"}
    cfg = _config(tmp_path, tmp_path / "in.zarr", "a", window)
    if not declared:
        doc = yaml.safe_load(cfg.read_text())
        doc["inputs"]["a"]["nodata"] = -9999
        cfg.write_text(yaml.safe_dump(doc))
    res = runner.invoke(app, ["run", str(cfg)])
    assert res.exit_code == 0, res.output
    got = zarr.open_array(tmp_path / "out.zarr" / "result", mode="r")[...]
    _check(got, _nodata_reference(x, 3, "count"), "count", 0)


@pytest.mark.parametrize("version", [2, 3])
def test_cli_big_endian_store_dask_path(tmp_path, version):
    """A periodic boundary reads the inputs through dask (not chunk by chunk)."""
    rng = np.random.default_rng(10 + version)
    A = rng.integers(-300, 300, (20, 18))
    _big_store(tmp_path / "in.zarr", version, {"a": A})
    res = runner.invoke(app, ["run", str(_config(tmp_path, tmp_path / "in.zarr", "a", {"size": 5, "reduce": "max", "boundary": "wrap"}))])
    assert res.exit_code == 0, res.output
    got = zarr.open_array(tmp_path / "out.zarr" / "result", mode="r")[...]
    assert got.dtype == np.int16
    assert np.array_equal(got.astype(object), brute_window(A, 5, "max", boundary="wrap"))
