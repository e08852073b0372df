"""Tests of pipeline.expr.parse: the whitelist refuses hostile or invalid text with a ConfigError
naming the offending token, and the resource limits fail fast."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from pipeline.errors import ConfigError
from pipeline.expr import parse_expression

# ------------------------------------------------------------------------------ hostile input

U8 = {"a": np.dtype(np.uint8), "b": np.dtype(np.uint8), "c": np.dtype(np.uint8)}


@pytest.mark.parametrize(
    "text, token",
    [
        ("__import__('os')", "__import__"),
        ("__import__('os').system('true')", "system"),
        ("a.real", ".real"),
        ("a.__class__", "__class__"),
        ("a[0]", "a[0]"),
        ("a[1:2]", "a[1:2]"),
        ("lambda: 1", "lambda"),
        ("open('x')", "open"),
        ("9**9**9", "9**9"),
        ("a**b", "'b'"),
        ("a**(1+1)", "1+1"),
        ("a**65", "65"),
        ("a**-100", "-100"),
        ("a**1e400", "1e400"),
        ("d + a", "'d'"),
        ("system(a)", "system"),
        ("eval('1')", "eval"),
        ("where(a, b, c, d)", "where"),
        ("sqrt()", "sqrt"),
        ("minimum(a, b=c)", "b=c"),
        ("sqrt(**{})", "**{}"),
        ("sqrt(*[a])", "*[a]"),
        ("a if b else c", "a if b else c"),
        ("a and b", "and"),
        ("a or b", "or"),
        ("not a", "not"),
        ("", "empty"),
        ("   ", "empty"),
        ("a +", "syntax error"),
        ("a b", "syntax error"),
        ("a; b", "syntax error"),
        ("import os", "syntax error"),
        ("a\x00", "null"),
        ("'abc'", "'abc'"),
        ("b'x' + a", "b'x'"),
        ("1j * a", "1j"),
        ("f'{a}'", "f'{a}'"),
        ("(x := a)", "x := a"),
        ("[a for a in b]", "for"),
        ("(a for a in b)", "for"),
        ("[a, b]", "[a, b]"),
        ("(a, b)", "a, b"),
        ("{a: b}", "{a: b}"),
        ("(a)(b)", "'a'"),
        ("(a + b)(c)", "a + b"),
        ("sqrt(a)(b)", "sqrt(a)"),
        ("a @ b", "@"),
        ("a ^ b", "^"),
        ("a << 2", "<<"),
        ("a in b", "in"),
        ("a is b", "is"),
        ("a & b", "&"),
        ("~a", "~"),
        ("1 + 2", "no input"),
        ("pi", "no input"),
        (str(2**62 + 1) + " + a", str(2**62 + 1)),
        ("...", "..."),
        ("None", "None"),
        ("await a", "await"),
    ],
)
def test_hostile_or_invalid_expressions_are_config_errors(text, token):
    with pytest.raises(ConfigError) as info:
        parse_expression(text, U8)
    message = str(info.value)
    assert info.value.where == "op"
    assert token in message, message
    assert "\n" not in message


def test_unknown_name_lists_inputs():
    with pytest.raises(ConfigError, match=r"unknown name 'c' \(inputs are: a, b\)"):
        parse_expression("a + c", {"b": np.dtype(np.uint8), "a": np.dtype(np.uint8)})


def test_unsupported_input_dtype():
    with pytest.raises(ConfigError, match="'z'"):
        parse_expression("z + 1", {"z": np.dtype(np.complex64)})
    parse_expression("a + 1", {"a": np.dtype(np.uint8), "z": np.dtype(np.complex64)})


def test_non_string_op():
    with pytest.raises(ConfigError):
        parse_expression(5, U8)  # type: ignore[arg-type]


def _fast_config_error(text, token=None):
    """``text`` is refused, after fewer Python and C function calls (a measure of the work done,
    the same on every machine) than parsing a valid expression of MAX_NODES // 2 nodes takes
    (~77,000): the limits stop the work early, whatever the size of the text."""
    calls = 0

    def count(frame, event, arg):
        nonlocal calls
        calls += event in ("call", "c_call")

    sys.setprofile(count)
    try:
        with pytest.raises(ConfigError) as info:
            parse_expression(text, U8)
    finally:
        sys.setprofile(None)
    assert calls < 60_000, calls
    if token:
        assert token in str(info.value)


def test_resource_limits_fail_fast():
    _fast_config_error("+".join(["a"] * 100_000), "too long")  # 100k-term sum
    _fast_config_error("(" * 10_000 + "a" + ")" * 10_000, "too long")
    # within the length limit
    _fast_config_error("(" * 4_000 + "a" + ")" * 4_000, "nested")
    _fast_config_error("-" * 9_000 + "a", "nested too deeply")
    _fast_config_error("~" * 9_000 + "a", "nested too deeply")
    _fast_config_error("+".join(["a"] * 4_000), "nested too deeply")
    _fast_config_error("sqrt(" * 2_000 + "a" + ")" * 2_000)
    _fast_config_error("a" * 10_001, "too long")
    _fast_config_error("1" * 5_000 + " + a")  # absurd literal


def test_node_count_limit_with_shallow_tree():
    def balanced(n):
        if n == 1:
            return "a"
        return f"({balanced(n // 2)}+{balanced(n - n // 2)})"

    ok = balanced(900)  # 1799 nodes
    assert parse_expression(ok, U8).bounds == (0, 900 * 255)
    _fast_config_error(balanced(1100), "too large")


def test_depth_limit_boundary():
    parse_expression("-" * 60 + "a", U8)
    parse_expression("+".join(["a"] * 60), U8)
    with pytest.raises(ConfigError, match="nested too deeply"):
        parse_expression("-" * 70 + "a", U8)
