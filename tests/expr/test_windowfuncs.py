"""Parsing window functions in op: distinct terms, typing, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import ConfigError
from pipeline.expr import MAX_TEXT_LENGTH
from pipeline.expr.windowfuncs import TermTyping, gaussian_window, parse_window_expression, uses_gaussian_window, uses_window_functions

U8 = np.dtype(np.uint8)
F4 = np.dtype(np.float32)
INPUTS = {"a": U8, "b": U8, "x": F4}
NINE = TermTyping(area=9)


def keys(text: str, typing: TermTyping = NINE) -> list[str]:
    return [t.key for t in parse_window_expression(text, INPUTS, typing).terms]


def test_distinct_terms_listed_once_in_order_of_use():
    text = "(mean(a*b) - mean(a)*mean(b)) / (std(a) * std(b)) + mean(a * b) / sum(a)"
    assert keys(text) == ["mean(a * b)", "mean(a)", "mean(b)", "std(a)", "std(b)", "sum(a)"]


def test_corr_and_cov_are_written_out_as_mean_terms():
    assert keys("corr(a, b)") == ["mean(a * b)", "mean(a)", "mean(b)", "mean(a * a)", "mean(b * b)"]
    assert keys("cov(a, b) + corr(a, b)") == ["mean(a * b)", "mean(a)", "mean(b)", "mean(a * a)", "mean(b * b)"]


def test_ssim_terms_and_needs():
    w = parse_window_expression("ssim(a, b, data_range=255)", INPUTS, TermTyping(area=49))
    assert sorted(t.key for t in w.terms) == sorted(["mean(a)", "mean(b)", "count(a)", "mean(a * b)", "mean(a * a)", "mean(b * b)"])
    assert w.min_count == 2  # the sample covariance divides by count - 1
    w = parse_window_expression("ssim(a, b, data_range=1, use_sample_covariance=0)", INPUTS)
    assert w.min_count == 1 and "count(a)" not in [t.key for t in w.terms]


def test_ssim_gaussian_window_asked():
    assert parse_window_expression("ssim(a, b, data_range=1)", INPUTS).gaussian == (None,)
    w = parse_window_expression("ssim(a, b, data_range=1, gaussian_weights=1) + ssim(a, b, data_range=1, gaussian_weights=1, sigma=2)", INPUTS)
    assert w.gaussian == (1.5, 2.0)
    assert uses_gaussian_window({"s": "ssim(a, b, data_range=1, gaussian_weights=True)"})
    assert not uses_gaussian_window("ssim(a, b, data_range=1, gaussian_weights=0, sigma=2)")


@pytest.mark.parametrize("sigma", [0.5, 1.5, 2.3])
def test_gaussian_window_is_scipys_filter_of_an_impulse(sigma):
    ndimage = pytest.importorskip("scipy.ndimage")
    w = gaussian_window(sigma)
    r = int(3.5 * sigma + 0.5)
    impulse = np.zeros((2 * r + 1, 2 * r + 1))
    impulse[r, r] = 1.0
    ref = ndimage.gaussian_filter(impulse, sigma, truncate=3.5, mode="constant")
    assert w.shape == ref.shape and np.abs(w - ref).max() <= 1e-15
    assert gaussian_window(1.5).shape == (11, 11)


def test_centre_names_are_those_outside_window_functions():
    w = parse_window_expression("(x - mean(x)) / std(x) + sum(a)", INPUTS)
    assert w.centre == ("x",) and w.names == ("a", "x")
    assert parse_window_expression("sum(a)", INPUTS).centre == ()


def test_integral_formula_keeps_exact_integers():
    # 9 pixels of uint8: each sum in [0, 9*255 = 2295], their difference in [-2295, 2295]
    w = parse_window_expression("sum(a) - sum(b)", INPUTS, TermTyping(area=9))
    assert w.dtype == np.int16 and w.bounds == (-2295, 2295)
    w = parse_window_expression("count(a) + max(b)", INPUTS, TermTyping(area=9))
    assert w.dtype.kind == "i" and w.bounds == (0, 9 + 255)
    assert parse_window_expression("mean(a) - sum(b)", INPUTS, TermTyping(area=9)).dtype == np.float64
    assert parse_window_expression("sum(x)", INPUTS, TermTyping(area=9)).dtype == np.float64
    assert parse_window_expression("sum(a)", INPUTS, TermTyping(area=9, weighted=True)).dtype == np.float64


def test_constant_boundary_value_widens_bounds():
    w = parse_window_expression("max(a)", INPUTS, TermTyping(area=9, cval=-1))
    assert w.bounds == (-1, 255)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("sum(mean(a))", "window function 'mean' inside window function 'sum'"),
        ("corr(a, std(b))", "window function 'std' inside window function 'mean'"),
        ("sum(a, b)", "'sum' takes 1 argument, got 2"),
        ("corr(a)", "'corr' takes 2 arguments, got 1"),
        ("ssim(a)", "'ssim' takes 2 arguments, got 1"),
        ("ssim(a, b)", "ssim needs data_range"),
        ("ssim(a, b, data_range=b)", "must be a literal number"),
        ("ssim(a, b, data_range=1, truncate=2)", "unknown keyword 'truncate'"),
        ("ssim(a, b, data_range=1, gaussian_weights=1, sigma=0)", "'sigma' must lie in (0, 100]"),
        ("mean(a, axis=0)", "keyword argument 'axis=0' is not allowed"),
        ("sum(1)", "needs an input in its argument"),
        ("mean(a.real)", "attribute access"),
        ("median(a)", "unknown function 'median'"),
        ("mean(q)", "unknown name 'q'"),
    ],
)
def test_misuse_is_a_config_error_naming_the_token(text, needle):
    with pytest.raises(ConfigError, match="op") as e:
        parse_window_expression(text, INPUTS)
    assert needle in str(e.value)


def test_limits_apply():
    with pytest.raises(ConfigError, match="too long"):
        parse_window_expression("sum(a)+" * (MAX_TEXT_LENGTH // 7 + 1) + "a", INPUTS)
    with pytest.raises(ConfigError, match="nested too deeply"):
        parse_window_expression("sum(" + "-" * 80 + "a)", INPUTS)


def test_errors_name_the_result():
    with pytest.raises(ConfigError, match=r"op\.ncc"):
        parse_window_expression("corr(a)", INPUTS, where="op.ncc")


def test_uses_window_functions():
    assert uses_window_functions("a - mean(a)")
    assert not uses_window_functions("a**2 - b**2")
    assert not uses_window_functions("sum(")
    assert not uses_window_functions(3)
