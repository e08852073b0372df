"""The founding example (shared/seed/), through the API and the CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from reference import SEED_A, SEED_B, SEED_EXPECTED, SEED_VALID, seed_loop
from typer.testing import CliRunner

import pipeline
from pipeline.cli.main import app

ROOT = Path(__file__).resolve().parents[1]


def test_seed_loop_reproduces_the_printed_matrix():
    # guards the reference itself: the seed's loop gives the seed's printed output
    assert np.array_equal(seed_loop(SEED_A, SEED_B, 3), SEED_EXPECTED)


def test_naive_uint8_wraps_around():
    # the trap the package must avoid: numpy on uint8 silently wraps
    assert not np.array_equal((SEED_A**2 - SEED_B**2).astype(np.int64), SEED_A.astype(np.int64) ** 2 - SEED_B.astype(np.int64) ** 2)


def test_api_numpy_shrink():
    out = pipeline.window_reduce("a**2 - b**2", {"a": SEED_A, "b": SEED_B}, size=3)
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.int32
    assert np.array_equal(out, SEED_EXPECTED)


def test_api_numpy_valid():
    out = pipeline.window_reduce("a**2 - b**2", {"a": SEED_A, "b": SEED_B}, size=3, boundary="valid")
    assert np.array_equal(out, SEED_VALID)


def test_api_dask_is_lazy_and_exact():
    import dask.array as da

    a = da.from_array(SEED_A, chunks=(2, 4))
    b = da.from_array(SEED_B, chunks=(3, 3))  # a different grid: re-chunked explicitly
    out = pipeline.window_reduce("a**2 - b**2", {"a": a, "b": b}, size=3)
    assert isinstance(out, da.Array)
    assert np.array_equal(out.compute(), SEED_EXPECTED)


def test_api_xarray_keeps_coords():
    import xarray as xr

    coords = {"y": np.arange(6) * 10.0, "x": np.arange(6) * 0.5}
    a = xr.DataArray(SEED_A, dims=("y", "x"), coords=coords, attrs={"units": "dn"})
    b = xr.DataArray(SEED_B, dims=("y", "x"), coords=coords)
    out = pipeline.window_reduce("a**2 - b**2", {"a": a, "b": b}, size=3, boundary="valid")
    assert isinstance(out, xr.DataArray)
    assert out.dims == ("y", "x")
    assert np.array_equal(out.values, SEED_VALID)
    assert np.array_equal(out.y.values, coords["y"][1:-1])
    assert np.array_equal(out.x.values, coords["x"][1:-1])


@pytest.fixture
def example(tmp_path):
    """The shipped example config and data, copied so that the test writes under tmp_path."""
    shutil.copytree(ROOT / "data" / "seed.zarr", tmp_path / "data" / "seed.zarr")
    (tmp_path / "configs").mkdir()
    shutil.copy(ROOT / "configs" / "example.yaml", tmp_path / "configs" / "example.yaml")
    return tmp_path


def test_cli_run_example(example, monkeypatch):
    monkeypatch.chdir(example.parent)  # relative paths resolve against the config, not the cwd
    result = CliRunner().invoke(app, ["run", str(example / "configs" / "example.yaml")])
    assert result.exit_code == 0, result.output
    out_path = example / "out" / "seed.zarr"
    assert str(out_path) in result.output
    arr = zarr.open_group(out_path, mode="r")["result"]
    assert arr.dtype == np.int32
    assert np.array_equal(arr[...], SEED_EXPECTED)


def test_output_readable_by_xarray_with_provenance(example):
    import xarray as xr

    pipeline.run(example / "configs" / "example.yaml")
    ds = xr.open_zarr(example / "out" / "seed.zarr")
    res = ds["result"]
    assert res.dims == ("y", "x")
    assert np.array_equal(res.values, SEED_EXPECTED)
    prov = res.attrs["pipeline"]
    assert prov["op"] == "a**2 - b**2"
    assert prov["config"]["window"]["size"] == 3
    assert prov["inputs"]["a"]["dtype"] == "uint8"
    assert prov["version"] == pipeline.__version__


def test_run_accepts_a_mapping(tmp_path):
    data = tmp_path / "in.zarr"
    g = zarr.open_group(data, mode="w")
    for name, arr in (("a", SEED_A), ("b", SEED_B)):
        g.create_array(name, shape=arr.shape, dtype=arr.dtype, chunks=(2, 2))[...] = arr
    cfg = {
        "inputs": {"a": {"path": str(data), "array": "a"}, "b": {"path": str(data), "array": "b"}},
        "op": "a**2 - b**2",
        "window": {"size": 3, "boundary": "valid"},
        "output": {"path": str(tmp_path / "out.zarr")},
    }
    res = pipeline.run(cfg)
    assert res.shape == (4, 4)
    assert np.array_equal(zarr.open_group(tmp_path / "out.zarr", mode="r")["result"][...], SEED_VALID)
