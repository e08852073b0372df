"""window_reduce with window expressions: several named results give a Dataset for xarray inputs
and a dict otherwise; one formula gives one array."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import pipeline
from pipeline.errors import ConfigError


def _inputs():
    rng = np.random.default_rng(1)
    coords = {"y": np.arange(12) * 10.0, "x": np.arange(15) * 5.0}
    a = xr.DataArray(rng.normal(size=(12, 15)), dims=("y", "x"), coords=coords)
    b = a + xr.DataArray(rng.normal(size=(12, 15)), dims=("y", "x"), coords=coords)
    return a, b


def _corr_reference(a, b, W=5):
    """np.corrcoef over every window truncated at the border (boundary shrink)."""
    h = W // 2
    out = np.empty(a.shape)
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            win = (slice(max(i - h, 0), i + h + 1), slice(max(j - h, 0), j + h + 1))
            out[i, j] = np.corrcoef(a[win].ravel(), b[win].ravel())[0, 1]
    return out


def test_named_results_give_a_dataset_for_xarray_inputs():
    a, b = _inputs()
    ds = pipeline.window_reduce({"ncc": "corr(a, b)", "dsum": "sum(b) - sum(a)"}, {"a": a, "b": b}, size=5)
    assert isinstance(ds, xr.Dataset) and list(ds.data_vars) == ["ncc", "dsum"]
    assert ds["ncc"].dims == ("y", "x") and np.array_equal(ds["ncc"].x, a.x)
    assert np.abs(ds["ncc"].values - _corr_reference(a.values, b.values)).max() <= 1e-9


def test_named_results_give_a_dict_for_numpy_and_one_formula_one_array():
    a, b = (v.values for v in _inputs())
    got = pipeline.window_reduce({"ncc": "corr(a, b)", "m": "mean(a)"}, {"a": a, "b": b}, size=5)
    assert isinstance(got, dict) and list(got) == ["ncc", "m"]
    one = pipeline.window_reduce("corr(a, b)", {"a": a, "b": b}, size=5)
    assert isinstance(one, np.ndarray)
    assert np.abs(one - _corr_reference(a, b)).max() <= 1e-9 and np.array_equal(one, got["ncc"])


def test_bad_result_is_named():
    a, b = (v.values for v in _inputs())
    with pytest.raises(ConfigError, match=r"op\.ncc.*takes 2 arguments"):
        pipeline.window_reduce({"ncc": "corr(a)"}, {"a": a, "b": b}, size=5)
