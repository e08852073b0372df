"""Window functions in ``op``: pointwise formulas over window statistics of pointwise expressions.

``sum mean var std min max count`` take one pointwise expression, ``cov corr`` two and ``ssim``
two plus its keywords; they combine pointwise with everything :mod:`pipeline.expr` allows, e.g.
``(a - mean(a)) / std(a)``.  Names outside a window function are the centre pixel's values.
Window functions do not nest.  ``cov``, ``corr`` and ``ssim`` are written out as formulas of
``mean`` and ``count`` terms (``cov(x, y) = mean(x*y) - mean(x)*mean(y)``, population moments as
``var``), so every distinct term, e.g. ``mean(a * b)``, is computed once however often it is
used.  ``ssim(..., gaussian_weights=1, sigma=1.5)`` asks for scikit-image's Gaussian window,
which is the window of every term (:attr:`WindowExpr.gaussian`).  The same syntax-tree walk, whitelist and limits as :mod:`pipeline.expr.parse` apply; the
result's type follows the same rules, a window term typed as :class:`TermTyping` says.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from pipeline.errors import ConfigError

from .intervals import fit
from .nodes import F64, Node, Window
from .parse import MAX_TEXT_LENGTH, Expr, _check_size, _err, _syntax_tree, _Walk

__all__ = [
    "STATS", "WINDOW_FUNCTIONS", "Term", "TermTyping", "WindowExpr", "gaussian_window", "parse_window_expression", "uses_gaussian_window",
    "uses_window_functions",
]

#: the window statistics a term computes (the package's reducers)
STATS = ("sum", "mean", "var", "std", "min", "max", "count")
#: every window function and its number of positional arguments
WINDOW_FUNCTIONS: dict[str, int] = {**{s: 1 for s in STATS}, "cov": 2, "corr": 2, "ssim": 2}
#: ``ssim``'s keywords and their defaults (scikit-image's ``structural_similarity``)
SSIM_KEYWORDS: dict[str, float | None] = {
    "data_range": None, "use_sample_covariance": 1, "K1": 0.01, "K2": 0.03, "gaussian_weights": 0, "sigma": 1.5,
}
#: scikit-image's Gaussian window reaches ``truncate * sigma`` pixels from its centre
SSIM_TRUNCATE = 3.5

_COV = "mean(X * Y) - mean(X) * mean(Y)"
_CORR = "(mean(X * Y) - mean(X) * mean(Y)) / sqrt((mean(X * X) - mean(X) ** 2) * (mean(Y * Y) - mean(Y) ** 2))"
_SSIM = (
    "((2 * mean(X) * mean(Y) + C1) * (2 * (N * (mean(X * Y) - mean(X) * mean(Y))) + C2))"
    " / ((mean(X) ** 2 + mean(Y) ** 2 + C1) * (N * (mean(X * X) - mean(X) * mean(X))"
    " + N * (mean(Y * Y) - mean(Y) * mean(Y)) + C2))"
)


@dataclass(frozen=True)
class TermTyping:
    """What types a window term: ``area`` (pixels in a whole window), whether sums are
    ``weighted`` (window.weights: float sums), and ``cval`` (boundary 'constant': a value windows
    may see; None otherwise)."""

    area: int = 1
    weighted: bool = False
    cval: float | None = None

    def values(self, inner: Node) -> tuple[int, int] | None:
        """Exact bounds of the values a window of ``inner`` sees; None when not integers."""
        if inner.kind == "f":
            return None
        lo, hi = inner.ibounds
        if self.cval is None:
            return lo, hi
        if not float(self.cval).is_integer():
            return None
        return min(lo, int(self.cval)), max(hi, int(self.cval))

    def node(self, key: str, stat: str, inner: Node) -> Window:
        """The typed term: integer sums within ``area`` times the values' bounds (0 included),
        counts within ``[0, area]``, min/max within the values' bounds, floats elsewhere."""
        b = self.values(inner)
        bounds = None
        if stat == "count":
            bounds = (0, self.area)
        elif b is not None and stat == "sum" and not self.weighted:
            bounds = (min(0, b[0], self.area * b[0]), max(0, b[1], self.area * b[1]))
        elif b is not None and stat in ("min", "max"):
            bounds = b
        dtype = fit(*bounds) if bounds is not None else None
        if dtype is None:
            return Window(key, stat, inner, "f", F64, None)
        return Window(key, stat, inner, "i", dtype, bounds)


@dataclass(frozen=True)
class Term:
    """One distinct window term: the statistic ``stat`` of the pointwise expression ``expr``,
    typed ``dtype`` in the formula."""

    key: str
    stat: str
    expr: Expr
    dtype: np.dtype


@dataclass(frozen=True)
class WindowExpr(Expr):
    """A parsed formula over window terms (:class:`Expr`'s fields, its ``root`` holding
    :class:`~pipeline.expr.nodes.Window` leaves), with ``terms`` (the distinct window terms,
    in order of first use), ``centre`` (the input names used outside window functions) and
    ``min_count`` (the valid pixels a window needs for the formula to be defined) and
    ``gaussian`` (one entry per ``ssim``: its Gaussian window's sigma, or None for the plain window)."""

    terms: tuple[Term, ...] = field(default=(), compare=False)
    centre: tuple[str, ...] = ()
    min_count: int = 0
    gaussian: tuple[float | None, ...] = ()


class _Substitute(ast.NodeTransformer):
    def __init__(self, values: Mapping[str, ast.expr]) -> None:
        self.values = values

    def visit_Name(self, node: ast.Name) -> ast.expr:
        return self.values.get(node.id, node)


class _WindowWalk(_Walk):
    """The whitelisted walk (:class:`pipeline.expr.parse._Walk`) that also takes window functions."""

    def __init__(self, text: str, inputs: Mapping[str, np.dtype], typing: TermTyping) -> None:
        super().__init__(text, inputs)
        self.typing = typing
        self.terms: dict[str, Term] = {}
        self.centre: set[str] = set()
        self.inside: str | None = None
        self.min_count = 0
        self.gaussian: list[float | None] = []

    def name(self, node: ast.Name) -> Node:
        built = super().name(node)
        if self.inside is None:
            self.centre.update(built.names)
        return built

    def call(self, node: ast.Call) -> Node:
        fname = node.func.id if isinstance(node.func, ast.Name) else ""
        if fname not in WINDOW_FUNCTIONS:
            return super().call(node)
        if self.inside is not None:
            raise _err(f"window function '{fname}' inside window function '{self.inside}' (in '{self.seg(node)}'); window functions do not nest")
        arity = WINDOW_FUNCTIONS[fname]
        if len(node.args) != arity or any(isinstance(a, ast.Starred) for a in node.args):
            raise _err(f"window function '{fname}' takes {arity} argument{'s' if arity > 1 else ''}, got {len(node.args)} in '{self.seg(node)}'")
        if fname == "ssim":
            return self.build(self.ssim(node))
        if node.keywords:
            raise _err(f"keyword argument '{self.seg(node.keywords[0])}' is not allowed in '{self.seg(node)}'")
        if fname in ("cov", "corr"):
            return self.build(_expand(_COV if fname == "cov" else _CORR, X=node.args[0], Y=node.args[1]))
        return self.term(fname, node)

    def term(self, stat: str, node: ast.Call) -> Node:
        self.inside = stat
        try:
            inner = self.build(node.args[0])
        finally:
            self.inside = None
        if not inner.names:
            raise _err(f"window function '{stat}' needs an input in its argument (in '{self.seg(node)}')")
        text = ast.unparse(node.args[0])
        key = f"{stat}({text})"
        typed = self.typing.node(key, stat, inner)
        if key not in self.terms:
            bounds = inner.bounds if inner.kind in "bi" else None
            expr = Expr(text=text, names=tuple(sorted(inner.names)), dtype=inner.dtype, bounds=bounds, root=inner)
            self.terms[key] = Term(key, stat, expr, typed.dtype)
        if stat != "count" and stat != "sum":
            self.min_count = max(self.min_count, 1)
        return typed

    def ssim(self, node: ast.Call) -> ast.expr:
        """``ssim(x, y, data_range=R, use_sample_covariance=1, K1=0.01, K2=0.03, gaussian_weights=0,
        sigma=1.5)`` written out; its window (Gaussian or not) noted in :attr:`gaussian`."""
        opts = dict(SSIM_KEYWORDS)
        for kw in node.keywords:
            v = kw.value
            if kw.arg not in opts:
                raise _err(f"unknown keyword '{kw.arg}' of ssim (allowed: {', '.join(SSIM_KEYWORDS)})")
            if not (isinstance(v, ast.Constant) and isinstance(v.value, (int, float)) and np.isfinite(v.value)):
                raise _err(f"ssim's '{kw.arg}' must be a literal number, got '{self.seg(v)}'")
            opts[kw.arg] = float(v.value)
        if opts["data_range"] is None:
            raise _err(f"ssim needs data_range=... (the images' value range), in '{self.seg(node)}'")
        sigma = float(opts["sigma"] or 0.0)
        if opts["gaussian_weights"] and not 0 < sigma <= 100:
            raise _err(f"ssim's 'sigma' must lie in (0, 100], got {sigma:g} in '{self.seg(node)}'")
        self.gaussian.append(sigma if opts["gaussian_weights"] else None)
        r, k1, k2 = (float(opts[k] or 0.0) for k in ("data_range", "K1", "K2"))
        sample = bool(opts["use_sample_covariance"])
        x, y = node.args
        n = _expand("count(X) / (count(X) - 1)", X=x) if sample else ast.Constant(1.0)
        self.min_count = max(self.min_count, 2 if sample else 1)
        return _expand(_SSIM, X=x, Y=y, N=n, C1=ast.Constant((k1 * r) ** 2), C2=ast.Constant((k2 * r) ** 2))


def _expand(template: str, **values: ast.expr) -> ast.expr:
    """``template`` with its placeholder names replaced by the syntax trees ``values``."""
    tree = ast.parse(template, mode="eval").body
    return _Substitute(values).visit(tree)


def uses_window_functions(text: object) -> bool:
    """Whether ``text`` (an ``op``) calls a window function (False for text that does not parse)."""
    if not isinstance(text, str):
        return False
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return False
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in WINDOW_FUNCTIONS for n in ast.walk(tree))


def parse_window_expression(text: str, inputs: Mapping[str, np.dtype], typing: TermTyping = TermTyping(), where: str = "op") -> WindowExpr:
    """Parse and type-check ``text``, a formula that may use window functions, over ``inputs``
    (name -> dtype); window terms are typed by ``typing``.  Raises
    :class:`~pipeline.errors.ConfigError` (at ``where``) naming the offending token."""
    try:
        return _parse(text, inputs, typing)
    except ConfigError as exc:
        if where == "op":
            raise
        raise ConfigError(exc.message, where=where) from None


def _parse(text: str, inputs: Mapping[str, np.dtype], typing: TermTyping) -> WindowExpr:
    if not isinstance(text, str):
        raise _err(f"must be a string, got {type(text).__name__}")
    source = text.strip()
    if not source:
        raise _err("expression is empty")
    if len(text) > MAX_TEXT_LENGTH:
        raise _err(f"expression is too long ({len(text)} characters, at most {MAX_TEXT_LENGTH})")
    tree = _syntax_tree(source)
    _check_size(tree)
    walk = _WindowWalk(source, {str(k): v for k, v in inputs.items()}, typing)
    root = walk.build(tree.body)
    if not root.names:
        raise _err(f"expression uses no input (inputs are: {', '.join(sorted(inputs)) or 'none'})")
    return WindowExpr(
        text=text,
        names=tuple(sorted(root.names)),
        dtype=root.dtype,
        bounds=root.bounds if root.kind in "bi" else None,
        root=root,
        terms=tuple(walk.terms.values()),
        centre=tuple(sorted(walk.centre)),
        min_count=walk.min_count,
        gaussian=tuple(walk.gaussian),
    )


def gaussian_window(sigma: float) -> np.ndarray:
    """scikit-image's Gaussian SSIM window as one weights matrix: the outer product of the 1-D
    kernel scipy.ndimage.gaussian_filter uses (radius ``int(3.5 * sigma + 0.5)``, normalised to
    sum 1); 11 x 11 for sigma 1.5."""
    radius = int(SSIM_TRUNCATE * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    g = np.exp(-0.5 / (sigma * sigma) * x**2)
    g = g / g.sum()
    return np.outer(g, g)


def uses_gaussian_window(op: object) -> bool:
    """Whether ``op`` (one formula, or named ones) calls ``ssim`` with a literal true
    ``gaussian_weights`` (such an ``op`` sets its window; False for text that does not parse)."""
    texts = op.values() if isinstance(op, Mapping) else [op]
    for text in texts:
        if not isinstance(text, str):
            continue
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
            continue
        for n in ast.walk(tree):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "ssim":
                if any(k.arg == "gaussian_weights" and isinstance(k.value, ast.Constant) and bool(k.value.value) for k in n.keywords):
                    return True
    return False
