"""``window_reduce`` against ``scipy.ndimage``: a grid of every scipy mode, odd and even sizes,
windows larger than the image, 1-D, 2-D and 3-D windows, ``origin``, weights and footprints
(NaN-free data; small arrays, so that the grid runs in seconds).

scipy's ``uniform_filter`` rounds into the input dtype for integer inputs, so sums are compared
with ``correlate`` by ones on float64 (exact here: small integers) and means on float64 inputs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from reference import disk_reference

import pipeline

ndi = pytest.importorskip("scipy.ndimage")

MODES = ("reflect", "mirror", "nearest", "wrap", "constant")
CVAL = 3


def _origins(size):
    """Origin 0 and the extreme origins scipy accepts, per axis."""
    return [(0,) * len(size), tuple(-(w // 2) for w in size), tuple((w - 1) // 2 for w in size)]


def _ours(x, size, axes, mode, origin):
    return pipeline.window_reduce(
        "a", {"a": x}, size=list(size), axes=list(axes), reduce=["sum", "mean", "min", "max"], mode=mode, cval=CVAL,
        origin=list(origin),
    )


def _check(x, size, axes, mode, origin):
    got = _ours(x, size, axes, mode, origin)
    kw = dict(mode=mode, cval=CVAL, origin=origin, axes=axes)
    xf = x.astype(np.float64)
    ones = np.ones([size[list(axes).index(a)] for a in sorted(axes)])  # rows along the lower axis
    sums = ndi.correlate(xf, ones, mode=mode, cval=CVAL, origin=[origin[list(axes).index(a)] for a in sorted(axes)],
                         axes=sorted(axes))
    assert np.array_equal(got["sum"], sums.astype(np.int64)), (size, axes, mode, origin)  # small integers: exact
    np.testing.assert_allclose(got["mean"], ndi.uniform_filter(xf, size, **kw), rtol=1e-13, atol=1e-12)
    assert np.array_equal(got["min"], ndi.minimum_filter(x, size, **kw))
    assert np.array_equal(got["max"], ndi.maximum_filter(x, size, **kw))


@pytest.mark.parametrize("mode", MODES)
def test_1d(mode):
    x = np.random.default_rng(1).integers(-20, 20, 7).astype(np.int16)
    for w in (1, 2, 3, 4, 7, 9, 16):  # odd, even, as wide as the image, wider, more than twice as wide
        for origin in _origins((w,)):
            _check(x, (w,), (0,), mode, origin)


@pytest.mark.parametrize("mode", MODES)
def test_2d(mode):
    x = np.random.default_rng(2).integers(-20, 20, (5, 6)).astype(np.int16)  # one integer dtype: one compile
    for size, axes in itertools.product([(2, 3), (3, 3), (4, 1), (7, 13)], [(0, 1), (1, 0)]):
        for origin in _origins(size):
            _check(x, size, axes, mode, origin)


@pytest.mark.parametrize("mode", MODES)
def test_3d(mode):
    x = np.random.default_rng(3).integers(0, 50, (4, 5, 6)).astype(np.uint8)
    for size, axes in [((3, 2, 4), (0, 1, 2)), ((2, 5, 3), (2, 0, 1)), ((5, 6, 8), (0, 1, 2))]:
        for origin in _origins(size):
            _check(x, size, axes, mode, origin)


@pytest.mark.parametrize("mode", MODES)
def test_float_means_and_extremes(mode):
    x = np.random.default_rng(4).normal(size=(4, 5, 6))
    for size, axes, origin in [((3, 4), (1, 2), (1, -2)), ((2, 3, 5), (0, 1, 2), (0, 1, -2)), ((9,), (2,), (4,))]:
        kw = dict(mode=mode, cval=CVAL, origin=origin, axes=axes)
        got = pipeline.window_reduce("a", {"a": x}, size=list(size), axes=list(axes), reduce=["mean", "min", "max"],
                                     mode=mode, cval=CVAL, origin=list(origin))
        np.testing.assert_allclose(got["mean"], ndi.uniform_filter(x, size, **kw), rtol=1e-12, atol=1e-12)
        assert np.array_equal(got["min"], ndi.minimum_filter(x, size, **kw))
        assert np.array_equal(got["max"], ndi.maximum_filter(x, size, **kw))


@pytest.mark.parametrize("mode", MODES)
def test_weights_and_footprints(mode):
    """Weights and footprints run along the window axes in increasing order, whatever the order
    ``axes`` names them in, as ``scipy.ndimage.correlate`` and its footprints do (a 3-D input, so
    that scipy maps ``origin`` along ``axes`` too)."""
    rng = np.random.default_rng(5)
    x = rng.integers(-9, 10, (3, 6, 7)).astype(np.int16)
    w = rng.integers(-3, 4, (2, 3))
    fp = np.array([[1, 0, 1], [0, 1, 1]], bool)
    for axes, origin in [((1, 2), (0, 0)), ((2, 1), (0, 0)), ((2, 1), (1, -1)), ((1, 2), (-1, 1))]:
        kw = dict(mode=mode, cval=CVAL, origin=origin, axes=axes)
        got = pipeline.window_reduce("a", {"a": x}, weights=w.tolist(), axes=list(axes), mode=mode, cval=CVAL, origin=list(origin))
        assert np.array_equal(got, ndi.correlate(x.astype(np.int64), w, **kw)), (axes, origin)
        for st, fn in (("min", ndi.minimum_filter), ("max", ndi.maximum_filter)):
            got = pipeline.window_reduce("a", {"a": x}, footprint=fp, reduce=st, axes=list(axes), mode=mode, cval=CVAL,
                                         origin=list(origin))
            assert np.array_equal(got, fn(x, footprint=fp, **kw)), (st, axes, origin)


def test_weights_on_a_2d_input_with_axes_reversed_as_scipy():
    """The issue's case: ``weights`` with ``axes=[1, 0]`` was applied transposed."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(6, 7))
    w = rng.normal(size=(2, 3))
    got = pipeline.window_reduce("a", {"a": x}, weights=w.tolist(), axes=[1, 0], mode="reflect")
    np.testing.assert_allclose(got, ndi.correlate(x, w, mode="reflect", axes=(1, 0)), rtol=1e-12, atol=1e-12)


def test_disk_with_origin():
    rng = np.random.default_rng(7)
    x = rng.integers(0, 100, (8, 9)).astype(np.int16)
    fp = disk_reference((5, 4))
    for origin in [(0, 0), (2, -2), (-1, 1)]:
        got = pipeline.window_reduce("a", {"a": x}, size=[5, 4], shape="disk", reduce="max", mode="nearest", origin=list(origin))
        assert np.array_equal(got, ndi.maximum_filter(x, footprint=fp, mode="nearest", origin=origin))
