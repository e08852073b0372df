"""``ssim(x, y, ...)`` against scikit-image's ``structural_similarity(full=True)`` map on its
bundled real photographs (camera against a noisy and a shifted copy; the motorcycle stereo
pair), uniform and Gaussian windows (given as window weights, or built in with
``gaussian_weights=1``), at several chunkings."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

import pipeline
from pipeline.errors import ConfigError

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


@pytest.mark.parametrize("pair", ["noisy", "stereo"])
@pytest.mark.parametrize("sample", [False, True])
@pytest.mark.parametrize("chunks", [None, 64, 37])
def test_built_in_gaussian_window_matches_scikit_image(pair, sample, chunks):
    x, y = PAIRS[pair]
    x, y = x[100:260, 50:250], y[100:260, 50:250]
    _, ref = structural_similarity(x, y, full=True, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=sample)
    inputs = {"x": x, "y": y} if chunks is None else {"x": da.from_array(x, chunks=chunks), "y": da.from_array(y, chunks=chunks)}
    op = f"ssim(x, y, data_range=255, gaussian_weights=1, sigma=1.5, use_sample_covariance={int(sample)})"
    got = np.asarray(pipeline.window_reduce(op, inputs, boundary="reflect"))
    assert got.shape == ref.shape and np.abs(got - ref).max() <= 1e-9


@pytest.mark.parametrize("sigma", [0.8, 2.0])
def test_built_in_gaussian_window_other_sigma(sigma):
    x, y = (im[:150, :170] for im in PAIRS["stereo"])
    _, ref = structural_similarity(x, y, full=True, data_range=255, gaussian_weights=True, sigma=sigma, use_sample_covariance=False)
    op = f"ssim(x, y, data_range=255, gaussian_weights=1, sigma={sigma}, use_sample_covariance=0)"
    got = np.asarray(pipeline.window_reduce(op, {"x": da.from_array(x, chunks=50), "y": da.from_array(y, chunks=50)}, boundary="reflect"))
    assert np.abs(got - ref).max() <= 1e-9


def test_gaussian_window_is_every_terms_window():
    """Other window terms of the op share the Gaussian window (window.size 11 agrees with it)."""
    x, y = (im[:90, :80].astype(np.float64) for im in PAIRS["noisy"])
    res = pipeline.window_reduce({"s": "ssim(x, y, data_range=255, gaussian_weights=1)", "m": "mean(x)"}, {"x": x, "y": y}, size=11, boundary="reflect")
    w = gaussian_window()
    padded = np.pad(x, 5, mode="symmetric")  # scipy/scikit-image 'reflect'
    ref = np.array([[(padded[i : i + 11, j : j + 11] * w).sum() / w.sum() for j in range(x.shape[1])] for i in range(x.shape[0])])
    assert np.abs(res["m"] - ref).max() <= 1e-9


@pytest.mark.parametrize(
    ("op", "kw", "where"),
    [
        ("ssim(x, y, data_range=255, gaussian_weights=1)", {"weights": [[1, 2], [3, 4]]}, "window.weights"),
        ("ssim(x, y, data_range=255, gaussian_weights=1)", {"size": 7}, "window.size"),
        ("ssim(x, y, data_range=255, gaussian_weights=1, sigma=1)", {"size": [11, 11]}, "window.size"),
        ("ssim(x, y, data_range=255, gaussian_weights=1)", {"shape": "disk", "size": 11}, "window.shape"),
        ("ssim(x, y, data_range=255, gaussian_weights=1) - ssim(x, y, data_range=255)", {"size": 11}, "op"),
        ("ssim(x, y, data_range=255, gaussian_weights=1) - ssim(x, y, data_range=255, gaussian_weights=1, sigma=1)", {}, "op"),
        ("ssim(x, y, data_range=255, gaussian_weights=1, sigma=0)", {}, "op"),
    ],
)
def test_gaussian_window_conflicts_are_user_errors(op, kw, where):
    x = np.zeros((30, 30), np.uint8)
    with pytest.raises(ConfigError) as exc:
        pipeline.window_reduce(op, {"x": x, "y": x}, boundary="reflect", **kw)
    assert exc.value.where == where.removeprefix("window.") and "\n" not in str(exc.value)  # the API names its argument
    assert "gaussian_weights=1" in str(exc.value) or "'sigma' must lie in" in str(exc.value)


def test_float_images_and_constants():
    x, y = PAIRS["shifted"]
    xf, yf = x[:120, :140] / 255.0, y[:120, :140] / 255.0
    _, ref = structural_similarity(xf, yf, win_size=9, full=True, data_range=1.0, K1=0.02, K2=0.05)
    got = pipeline.window_reduce("ssim(x, y, data_range=1, K1=0.02, K2=0.05)", {"x": xf, "y": yf}, size=9, boundary="reflect")
    assert np.abs(got - ref).max() <= 1e-9
