"""``ssim(x, y, ...)`` against scikit-image's ``structural_similarity(full=True)`` map on its
bundled real photographs (camera against a noisy and a shifted copy; the motorcycle stereo
pair), uniform and Gaussian windows, at several chunkings."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

import pipeline

skimage = pytest.importorskip("skimage")
from skimage import data  # noqa: E402
from skimage.metrics import structural_similarity  # noqa: E402


def gaussian_window(sigma=1.5, truncate=3.5):
    """scipy.ndimage.gaussian_filter's separable kernel (the window skimage's SSIM uses) as one matrix."""
    r = int(truncate * sigma + 0.5)
    x = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-0.5 * x * x / sigma**2)
    g /= g.sum()
    return np.outer(g, g)


def pairs():
    cam = data.camera()
    rng = np.random.default_rng(0)
    noisy = np.clip(cam + rng.normal(0, 25, cam.shape), 0, 255).astype(np.uint8)
    shifted = np.roll(cam, (3, -5), axis=(0, 1))
    left, right, _ = data.stereo_motorcycle()
    grey = [(0.299 * im[..., 0] + 0.587 * im[..., 1] + 0.114 * im[..., 2]).round().astype(np.uint8) for im in (left, right)]
    return {"noisy": (cam, noisy), "shifted": (cam, shifted), "stereo": tuple(grey)}


PAIRS = pairs()


@pytest.mark.parametrize("pair", sorted(PAIRS))
@pytest.mark.parametrize("W", [7, 11])
@pytest.mark.parametrize("chunks", [None, 100, 37])
def test_uniform_window_matches_scikit_image(pair, W, chunks):
    x, y = PAIRS[pair]
    if chunks is not None:  # several chunkings, on a crop to keep the run short
        x, y = x[:300, :333], y[:300, :333]
    _, ref = structural_similarity(x, y, win_size=W, full=True, data_range=255)
    inputs = {"x": x, "y": y} if chunks is None else {"x": da.from_array(x, chunks=chunks), "y": da.from_array(y, chunks=chunks)}
    got = np.asarray(pipeline.window_reduce("ssim(x, y, data_range=255)", inputs, size=W, boundary="reflect"))
    assert got.shape == ref.shape and got.dtype == np.float64
    assert np.abs(got - ref).max() <= 1e-9


@pytest.mark.parametrize("sample", [False, True])
@pytest.mark.parametrize("chunks", [None, 64])
def test_gaussian_window_matches_scikit_image(sample, chunks):
    x, y = PAIRS["noisy"]
    x, y = x[100:260, 50:250], y[100:260, 50:250]
    _, ref = structural_similarity(x, y, full=True, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=sample)
    inputs = {"x": x, "y": y} if chunks is None else {"x": da.from_array(x, chunks=chunks), "y": da.from_array(y, chunks=chunks)}
    op = f"ssim(x, y, data_range=255, use_sample_covariance={int(sample)})"
    got = np.asarray(pipeline.window_reduce(op, inputs, weights=gaussian_window(), boundary="reflect"))
    assert np.abs(got - ref).max() <= 1e-9


def test_float_images_and_constants():
    x, y = PAIRS["shifted"]
    xf, yf = x[:120, :140] / 255.0, y[:120, :140] / 255.0
    _, ref = structural_similarity(xf, yf, win_size=9, full=True, data_range=1.0, K1=0.02, K2=0.05)
    got = pipeline.window_reduce("ssim(x, y, data_range=1, K1=0.02, K2=0.05)", {"x": xf, "y": yf}, size=9, boundary="reflect")
    assert np.abs(got - ref).max() <= 1e-9
