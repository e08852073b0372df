"""The window-expression example configs (configs/local_correlation.yaml, configs/ssim.yaml,
configs/zscore.yaml) run through the CLI on the shipped samples, against brute-force numpy and
scikit-image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from sample_data import samples
from typer.testing import CliRunner

from pipeline.cli.main import app

ROOT = Path(__file__).resolve().parents[2]




def _run(tree, name):
    result = CliRunner().invoke(app, ["validate", str(tree / "configs" / name)])
    assert result.exit_code == 0, result.output
    run = CliRunner().invoke(app, ["run", "-q", str(tree / "configs" / name)])
    assert run.exit_code == 0, run.output
    return result.output


def _shrink_windows(shape, W):
    """Per pixel the slices of its W x W window truncated at the border."""
    h = W // 2
    for i in range(shape[0]):
        for j in range(shape[1]):
            yield (i, j), (slice(max(i - h, 0), i + h + 1), slice(max(j - h, 0), j + h + 1))


def test_local_correlation(tree):
    out = _run(tree, "local_correlation.yaml")
    assert "mean(t0 * t1) float64" in out  # validate lists every window term with its dtype
    s = samples()
    t0, t1 = s["t0"].astype(np.float64), s["t1"].astype(np.float64)
    ref = np.empty(t0.shape)
    for idx, win in _shrink_windows(t0.shape, 7):
        ref[idx] = np.corrcoef(t0[win].ravel(), t1[win].ravel())[0, 1]
    got = zarr.open_group(tree / "out" / "local_correlation.zarr", mode="r")["ncc"][...]
    assert np.abs(got - ref).max() <= 1e-9


def test_ssim_with_several_named_results(tree):
    skimage_metrics = pytest.importorskip("skimage.metrics")
    _run(tree, "ssim.yaml")
    s = samples()
    g = zarr.open_group(tree / "out" / "ssim.zarr", mode="r")
    _, ref = skimage_metrics.structural_similarity(s["t0"], s["t1"], win_size=7, full=True, data_range=4000)
    assert np.abs(g["ssim_ssim"][...] - ref).max() <= 1e-9
    t0, t1 = np.pad(s["t0"].astype(np.int64), 3, mode="symmetric"), np.pad(s["t1"].astype(np.int64), 3, mode="symmetric")
    dsum = np.array([[t1[i:i + 7, j:j + 7].sum() - t0[i:i + 7, j:j + 7].sum() for j in range(64)] for i in range(48)])
    assert g["ssim_dsum"].dtype.kind == "i" and np.array_equal(g["ssim_dsum"][...], dsum)
    ncc = np.array([[np.corrcoef(t0[i:i + 7, j:j + 7].ravel(), t1[i:i + 7, j:j + 7].ravel())[0, 1] for j in range(64)] for i in range(48)])
    assert np.abs(g["ssim_ncc"][...] - ncc).max() <= 1e-9


def test_ssim_gaussian_window_without_window_size(tree):
    """``gaussian_weights=1`` sets the window: a config may leave out window.size."""
    skimage_metrics = pytest.importorskip("skimage.metrics")
    (tree / "configs" / "gauss.yaml").write_text(
        "inputs:\n  t0: {path: ../data/samples.zarr, array: t0}\n  t1: {path: ../data/samples.zarr, array: t1}\n"
        "op: ssim(t0, t1, data_range=4000, gaussian_weights=1, sigma=1.5, use_sample_covariance=0)\n"
        "window: {boundary: reflect}\noutput: {path: ../out/gauss.zarr, array: s, overwrite: true}\n"
    )
    _run(tree, "gauss.yaml")
    s = samples()
    _, ref = skimage_metrics.structural_similarity(s["t0"], s["t1"], full=True, data_range=4000, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    got = zarr.open_group(tree / "out" / "gauss.zarr", mode="r")["s"][...]
    assert np.abs(got - ref).max() <= 1e-9


def test_zscore(tree):
    _run(tree, "zscore.yaml")
    dem = samples()["dem"]
    valid = dem != -9999
    x = dem.astype(np.float64)
    ref = np.full(dem.shape, np.nan)
    for idx, win in _shrink_windows(dem.shape, 7):
        v = x[win][valid[win]]
        if valid[idx] and v.size and v.std() > 0:
            ref[idx] = (x[idx] - v.mean()) / v.std()
    got = zarr.open_group(tree / "out" / "zscore.zarr", mode="r")["z"][...]
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    assert np.nanmax(np.abs(got - ref)) <= 1e-9
