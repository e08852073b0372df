"""Safe parsing and exact evaluation of the pointwise expression ``op`` (e.g. ``a**2 - b**2``).

The text is parsed with :func:`ast.parse` (which only builds a syntax tree, it never runs code)
and then checked against a strict whitelist; nothing of the user's text is ever evaluated by
Python.  What is allowed:

* numeric literals (``int``, ``float``; ``True``/``False``), the constants ``nan``, ``inf``,
  ``pi`` and ``e`` (an input of the same name takes precedence), and input names;
* binary ``+ - * / // % **``, unary ``-`` and ``+``, comparisons ``< <= > >= == !=`` (chained
  comparisons ``a < b < c`` mean ``(a < b) & (b < c)``), and ``& | ~`` on boolean operands;
* calls, with positional arguments only, of ``abs sqrt exp log log1p sin cos tan arctan2
  minimum maximum where clip isnan floor ceil`` (numpy semantics, e.g. ``minimum`` propagates
  nan; ``clip(x, lo, hi)`` is ``minimum(maximum(x, lo), hi)``).

Resource limits (each violation is a :class:`~pipeline.errors.ConfigError`): at most
:data:`MAX_TEXT_LENGTH` characters, syntax-tree depth at most :data:`MAX_DEPTH`, at most
:data:`MAX_NODES` nodes, the exponent of ``**`` must be a literal number (optionally signed) of
magnitude at most :data:`MAX_EXPONENT`, integer literals of magnitude at most
:data:`MAX_INT_LITERAL`.

Result types are decided at parse time, so that evaluation never overflows or wraps:

* every integer (or boolean) subexpression carries exact inclusive value bounds, computed with
  Python ints by interval arithmetic (an integer input has its dtype's full range, a boolean one
  ``[0, 1]``, an integer literal ``[v, v]``);
* an integer operation (``+ - *``, ``**`` with a non-negative integer exponent, unary ``-``/``+``,
  ``abs``, ``minimum``, ``maximum``, ``clip``, ``where``, and ``//``/``%`` by a non-zero integer
  literal) is computed in the smallest of int16/int32/int64 holding both its operands' and its
  result's bounds, and its result has the smallest of int16/int32/int64 holding the result's
  bounds (booleans count as 0/1);
* when those bounds do not fit int64 (e.g. any arithmetic on a uint64 input, or ``a + b`` on two
  int64 inputs) the subexpression is computed in float64 instead - inexact beyond 2**53, but
  never wrapped;
* ``/``, ``sqrt exp log log1p sin cos tan arctan2 floor ceil``, negative or non-integer
  exponents, ``//``/``%`` by anything but a non-zero integer literal, and any arithmetic with a
  float operand give float64 (float32/float16 inputs are computed in float64);
* comparisons, ``isnan``, ``& | ~`` give bool; integer comparisons are exact except between
  uint64 and a signed operand (compared in float64); ``where``/``minimum``/``maximum``/``clip``
  of booleans only stay bool;
* a bare input name keeps the input's own dtype (the input array itself is returned, no copy).

Floating-point warnings (log of a negative number, division by zero, ...) are silenced: the
results are numpy's (nan, inf).

The package, one module per responsibility:

* :mod:`~pipeline.expr.parse` - the text, the whitelisted syntax-tree walk, the limits,
  :class:`Expr` and :func:`parse_expression`;
* :mod:`~pipeline.expr.rules` - the typing rules above (typed nodes from typed operands);
* :mod:`~pipeline.expr.intervals` - exact interval arithmetic and :func:`~.intervals.fit`, the one
  rule choosing the integer dtype that holds a range;
* :mod:`~pipeline.expr.nodes` - the typed tree and :class:`~.nodes.Visitor`, the public way to walk
  it (:mod:`pipeline.kernels.compiled` generates its numba loops through one);
* :mod:`~pipeline.expr.evaluate` - numpy evaluation of the tree (a visitor);
* :mod:`~pipeline.expr.windowfuncs` - window functions in ``op`` (``mean(a)``, ``corr(a, b)``,
  ``ssim(a, b, ...)``): formulas over window terms, each term listed once.

May import: pipeline.errors.
"""

from __future__ import annotations

from . import parse
from .intervals import fit
from .nodes import Node, Visitor
from .parse import FUNCTIONS, MAX_DEPTH, MAX_EXPONENT, MAX_INT_LITERAL, MAX_NODES, MAX_TEXT_LENGTH, Expr, parse_expression  # noqa: F401 - in parse.__all__

__all__ = ["Node", "Visitor", "fit", *parse.__all__]
