"""The plan of window expressions: result dtypes and fill values, the parts (one per distinct
pointwise expression, with the statistics its terms need), validate's listing, refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.errors import ConfigError
from pipeline.plan.planner import ArraySpec, make_plan

U8 = np.dtype(np.uint8)


def specs(dtype=U8):
    return {n: ArraySpec(n, (40, 50), np.dtype(dtype), chunks=(20, 25)) for n in "ab"}


def test_integral_formula_stays_exact_integer():
    p = make_plan("sum(a) - sum(b)", specs(), size=3)
    # 9 uint8 pixels: each sum in [0, 2295], the difference in [-2295, 2295]
    assert p.out_dtype.kind == "i" and p.out_bounds == (-2295, 2295) and p.fill_values["result"] is None
    p = make_plan("sum(a) - sum(b)", specs(), size=3, nodata={"a": 0})  # empty windows sum to 0: still exact
    assert p.out_dtype.kind == "i"


def test_formula_needing_valid_pixels_is_float_with_nan_fill():
    p = make_plan("(a - mean(a)) / std(a)", specs(), size=3, nodata={"a": 0})
    assert p.out_dtype == np.float64 and math.isnan(p.fill_values["result"])
    p = make_plan("max(a) - min(a)", specs(), size=3, nodata={"a": 0})  # an empty window has no max
    assert p.out_dtype == np.float64
    assert make_plan("max(a) - min(a)", specs(), size=3).out_dtype.kind == "i"  # never empty without nodata
    p = make_plan("ssim(a, b, data_range=255)", specs(), size=1)  # one pixel: no sample covariance
    assert p.out_dtype == np.float64 and math.isnan(p.fill_values["result"])


def test_parts_and_named_results():
    p = make_plan({"ncc": "corr(a, b)", "m": "mean(a) + sum(a)"}, specs(), size=5)
    assert p.stats == ("ncc", "m") and p.multi
    assert set(p.parts) == {"a", "b", "a * b", "a * a", "b * b"}
    assert p.parts["a"].stats[:2] == ("mean", "sum")
    assert sum("count" in part.stats for part in p.parts.values()) == 1  # counted once: one mask for all
    text = p.describe()
    assert "result ncc:" in text and "mean(a * b) float64" in text and "sum(a) int32" in text


def test_refusals():
    with pytest.raises(ConfigError, match="output.dtype"):
        make_plan("mean(a)", specs(), size=3, dtype="float32")
    with pytest.raises(ConfigError, match=r"op: reducer .std. is not available with window.weights"):
        make_plan("std(a)", specs(), weights=[[1, 2], [2, 1]])
    with pytest.raises(ConfigError, match=r"op\.bad"):
        make_plan({"ok": "mean(a)", "bad": "mean(mean(a))"}, specs(), size=3)
    with pytest.raises(ConfigError, match="identifier"):
        make_plan({"not ok": "mean(a)"}, specs(), size=3)
