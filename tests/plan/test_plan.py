"""The plan's small pure steps and the registries, each against an independent reference."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import get_args

import numpy as np
import pytest

from pipeline.api import reduce
from pipeline.bench import kernelgrid
from pipeline.config import load
from pipeline.errors import ConfigError
from pipeline.execution.engine import INPUT_CACHE_BYTES, strip_width
from pipeline.expr import parse_expression
from pipeline.plan import registry
from pipeline.plan.planner import (
    MAX_AUTO_CHUNK,
    MIN_AUTO_CHUNK,
    ArraySpec,
    _auto_chunk,
    _axis_grid,
    make_plan,
    output_shape,
    plan_dtypes,
    plan_grid,
    plan_nodata,
    plan_window,
    requested_chunks,
    sum_dtype,
)

DOCS = [Path(__file__).resolve().parents[2] / "README.md", Path(__file__).resolve().parents[2] / "docs" / "configuration.md"]


# ---- the registries are the one list of names


def test_config_and_api_literals_are_the_registries():
    assert get_args(load.Reducer) == registry.REDUCER_NAMES
    assert get_args(load.Boundary) == registry.BOUNDARY_NAMES
    assert get_args(reduce.Reducer) == registry.REDUCER_NAMES
    assert get_args(reduce.Boundary) == registry.BOUNDARY_NAMES
    assert set(kernelgrid.REDUCERS) == set(registry.REDUCER_NAMES)
    assert kernelgrid.BOUNDARIES == registry.BOUNDARY_NAMES


def test_readme_lists_are_the_registries():
    text = "\n".join(p.read_text() for p in DOCS)
    reducers = {tuple(m.split(" | ")) for m in re.findall(r"reduce: .*?# ((?:\w+ \| )+\w+)", text)}
    boundaries = {tuple(m.replace(" (default)", "").split(" | ")) for m in re.findall(r"boundary: .*?# ((?:\w+(?: \(default\))? \| )+\w+)", text)}
    assert reducers == {registry.REDUCER_NAMES}
    assert boundaries == {registry.BOUNDARY_NAMES}


def test_unknown_names_are_refused_not_treated_like_others():
    with pytest.raises(ConfigError, match="unknown reducer 'median'"):
        registry.reducers(["sum", "median"])
    with pytest.raises(ConfigError, match="unknown boundary 'periodic'"):
        registry.boundary("periodic")
    with pytest.raises(ConfigError, match="must not repeat"):
        registry.reducers(["sum", "sum"])
    with pytest.raises(ConfigError, match="at least one"):
        registry.reducers([])


def test_boundary_padding_matches_numpy_and_scipy():
    """Each padded boundary's np.pad mode gives the values scipy.ndimage's mode of that name gives."""
    from scipy import ndimage

    x = np.arange(7.0)
    for b in registry.BOUNDARIES.values():
        if b.np_mode is None:
            continue
        padded = np.pad(x, 3, mode=b.np_mode)
        # a 7-tap window sum of the padded line is the scipy uniform filter with that mode
        want = ndimage.uniform_filter1d(x, 7, mode=b.scipy_mode) * 7
        got = np.convolve(padded, np.ones(7), mode="valid")
        np.testing.assert_allclose(got, want, err_msg=b.name)


# ---- one fit of a value range into an integer dtype


@pytest.mark.parametrize("lo, hi, first, want", [
    (0, 255, np.dtype("uint8"), "uint8"),
    (0, 256, np.dtype("uint8"), "int16"),
    (-1, 10, np.dtype("uint8"), "int16"),
    (-(2**15) - 1, 0, None, "int32"),
    (0, 2**31, None, "int64"),
    (0, 2**63, None, None),
    (0, 1, np.dtype("float32"), "int16"),
])
def test_fit(lo, hi, first, want):
    got = registry.fit(lo, hi, first)
    assert (None if got is None else str(got)) == want


def test_sum_dtype_against_the_extreme_window_sums():
    for bounds, area in [((0, 255), 9), ((-5, 3), 49), ((0, 2**31 - 1), 1), ((0, 2**31 - 1), 2), ((-(2**20), 2**20), 2**20)]:
        dt, out = sum_dtype(bounds, area)
        extremes = [bounds[0], bounds[1], area * bounds[0], area * bounds[1]]
        assert out == (min(extremes), max(extremes))
        want = "int32" if -(2**31) <= out[0] and out[1] < 2**31 else "int64"
        assert str(dt) == want
    assert sum_dtype(None, 9) == (np.dtype("float64"), None)
    with pytest.raises(ConfigError, match="beyond int64"):
        sum_dtype((0, 2**62), 4)


# ---- the grid


def test_axis_grid_covers_and_merges_a_thin_last_block():
    for m, c, d in [(10, 3, 0), (10, 3, 2), (1000, 256, 7), (7, 7, 1), (1, 5, 2)]:
        g = _axis_grid(m, c, d)
        assert sum(g) == m
        assert all(b == c for b in g[:-1] if len(g) > 1) or g[-2] >= c
        assert len(g) == 1 or g[-1] >= d
    assert _axis_grid(10, 4, 3) == (4, 6)
    assert _axis_grid(10, 4, 2) == (4, 4, 2)


def test_auto_chunk_stays_aligned_and_bounded():
    for storage, n, depth in [(None, 10_000, 1), (4096, 10_000, 1), (100, 10_000, 1), (3000, 100_000, 2), (512, 300, 1), (64, 10_000, 700)]:
        c = _auto_chunk(storage, n, depth)
        assert 1 <= c <= n
        if storage and c < n:
            assert c % storage == 0 or storage % c == 0  # whole storage chunks, or halves of them
        if c < n:
            assert c >= min(MIN_AUTO_CHUNK, n) and c >= depth
        if storage and storage % 2 == 0 and storage > MAX_AUTO_CHUNK and c < n:
            assert c <= MAX_AUTO_CHUNK or c * 2 > storage


def test_requested_chunks():
    assert requested_chunks("auto", (0, 1)) == (None, None)
    assert requested_chunks(64, (0, 1)) == (64, 64)
    assert requested_chunks([10, 20], (1, 0)) == (20, 10)
    with pytest.raises(ConfigError, match="one per window axis"):
        requested_chunks([10], (0, 1))
    with pytest.raises(ConfigError, match=">= 1"):
        requested_chunks(0, (0, 1))


def test_plan_grid_valid_adds_the_arms_to_the_input_blocks():
    win = plan_window(2, None, registry.reducers(["sum"]), size=5)
    bnd = registry.boundary("valid")
    out_shape = output_shape((100, 90), win.axes, win.sizes, bnd)
    assert out_shape == (96, 86)
    grid = plan_grid((100, 90), out_shape, (None, None), win, (40, 40), bnd)
    assert grid.out_chunks == ((40, 40, 16), (40, 40, 6))
    assert tuple(map(sum, grid.in_chunks)) == (100, 90)
    assert grid.in_chunks[1] == (42, 40, 8)
    assert grid.depth == (2, 2)


def test_strip_width_keeps_the_cache_within_budget():
    spec = ArraySpec("a", (4096, 65536), np.dtype("uint8"), chunks=(512, 512))
    plan = make_plan("a", {"a": spec}, size=3)
    w = strip_width(plan, [(512, 512)], [1])
    assert w >= 1
    cache = 2 * 512 * (w * max(plan.in_chunks[-1]) + 2 * 512)
    assert cache <= 2 * INPUT_CACHE_BYTES


# ---- window, nodata, dtypes


def test_plan_window_sorts_axes_and_keeps_weights_along_increasing_axes():
    # scipy.ndimage.correlate(x, w, axes=...): w's rows run along the lower window axis, whatever
    # the order the axes are named in
    reds = registry.reducers(["sum"])
    for axes in (["x", "y"], ["y", "x"]):
        win = plan_window(3, ("x", "band", "y"), reds, weights=[[1, 2, 3], [4, 5, 6]], axes=axes)
        assert win.axes == (0, 2) and win.sizes == (2, 3)
        assert win.weights == ((1, 2, 3), (4, 5, 6))
    with pytest.raises(ConfigError, match=r"differs from the shape \[2, 3\] of the weights \(rows along the lower window axis: size \[3, 2\]"):
        plan_window(3, ("x", "band", "y"), reds, weights=[[1, 2, 3], [4, 5, 6]], axes=["y", "x"], size=[2, 3])
    win = plan_window(3, ("x", "band", "y"), reds, weights=[[1, 2, 3], [4, 5, 6]], axes=["y", "x"], size=[3, 2])
    assert win.sizes == (2, 3)
    disk = plan_window(2, None, reds, size=5, shape="disk")
    assert disk.area == 21 and (disk.lo, disk.hi) == ((2, 2), (2, 2))
    with pytest.raises(ConfigError, match="not available with window.weights"):
        plan_window(2, None, registry.reducers(["std"]), weights=[[2]])
    ones = plan_window(2, None, registry.reducers(["std"]), weights=[[1, 1]])  # integer ones: the plain window
    assert (ones.kind, ones.sizes, ones.weights) == ("rect", (1, 2), None)
    with pytest.raises(ConfigError, match="required key is missing"):
        plan_window(2, None, reds)


def test_plan_nodata():
    specs = {"a": ArraySpec("a", (4, 4), np.dtype("uint8")), "b": ArraySpec("b", (4, 4), np.dtype("float32"))}
    expr = parse_expression("a + 1", {n: s.dtype for n, s in specs.items()})
    assert plan_nodata(expr, specs, None) == ({"a": None}, False)
    assert plan_nodata(expr, specs, {"a": 255.0}) == ({"a": 255}, True)
    with pytest.raises(ConfigError, match="outside the range"):
        plan_nodata(expr, specs, {"a": 256})
    expr = parse_expression("b", {n: s.dtype for n, s in specs.items()})
    assert plan_nodata(expr, specs, {"b": math.nan}) == ({"b": None}, True)


def test_plan_dtypes_fill_below_the_results():
    values = registry.Values(np.dtype("uint8"), (0, 255), 9, "shrink")
    dts, bounds, fills, acc = plan_dtypes(registry.reducers(["sum", "max", "mean", "count"]), values, False, None, None)
    assert {k: str(v) for k, v in dts.items()} == {"sum": "int32", "max": "uint8", "mean": "float64", "count": "int32"}
    assert bounds["sum"] == (0, 255 * 9) and bounds["count"] == (0, 9)
    assert fills == {"sum": None, "max": None, "mean": None, "count": None}
    assert str(acc) == "int32"
    dts, bounds, fills, _ = plan_dtypes(registry.reducers(["max", "mean", "count"]), values, True, None, None)
    assert str(dts["max"]) == "int16" and fills["max"] == -(2**15) and bounds["max"] == (-(2**15), 255)
    assert math.isnan(fills["mean"]) and fills["count"] is None
    dts, _, fills, _ = plan_dtypes(registry.reducers(["max"]), values, True, None, 300)
    assert str(dts["max"]) == "int16" and fills["max"] == 300
    with pytest.raises(ConfigError, match="cannot hold"):
        plan_dtypes(registry.reducers(["sum"]), values, False, "uint8", None)


def test_plan_keeps_one_representation_of_the_statistics():
    spec = ArraySpec("a", (64, 64), np.dtype("uint8"))
    plan = make_plan("a", {"a": spec}, size=3, reduce=["max", "mean"])
    assert plan.reduce == "max,mean"
    assert plan.out_dtype == plan.out_dtypes["max"] and plan.out_bounds == plan.stat_bounds["max"]
    assert not plan.plain_sum and make_plan("a", {"a": spec}, size=3).plain_sum
    assert not make_plan("a", {"a": spec}, size=3, boundary="reflect").plain_sum
