"""Compiled evaluation of integer expressions: one fused loop instead of a numpy call per node.

numpy evaluates ``a**2 - b**2`` on uint8 inputs as five passes over memory with four temporaries
(two casts, two squares, a subtraction); on a 4096² pair that took longer than the window sum
itself.  For an expression whose every node is an integer or boolean (the typed tree of
:mod:`pipeline.expr.nodes`), :func:`pointwise` generates one loop that computes each pixel in int64
registers and stores it in the expression's dtype, compiled with numba (``nogil``, so that two
threads evaluate in parallel).

Exactness is the same as :meth:`pipeline.expr.Expr.evaluate`: every integer node's exact bounds
fit its dtype, which is at most int64, so int64 arithmetic never wraps, and the stored result
fits the expression's dtype.  Integer ``//`` and ``%`` follow Python's floor semantics in numba,
as numpy's do.  Anything else (a float node, uint64 inputs, comparisons made in float64) gives
``None`` and the caller keeps numpy.

Safety: the generated source is built from fixed templates, integer literals formatted by
Python and the generated names ``x0, x1, ...``; no text of the user's expression is ever
placed in it.  The source is written to the kernel cache (:mod:`pipeline.storage.kernelcache`) under the hash of its text, so that
numba's own cache applies and a rerun of the same expression loads the compiled loop instead
of compiling it again (about 0.2 s); without a writable folder, or where another user could swap
that folder or one above it, it is compiled in memory.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import types
from collections.abc import Callable, Mapping

import numpy as np

from pipeline.expr import Expr, Node, Visitor, nodes
from pipeline.kernels import fastsum
from pipeline.storage import kernelcache

Evaluator = Callable[[Mapping[str, np.ndarray]], np.ndarray]

_INT_OPS = {
    np.add: "({0} + {1})",
    np.subtract: "({0} - {1})",
    np.multiply: "({0} * {1})",
    np.floor_divide: "({0} // {1})",
    np.remainder: "({0} % {1})",
    np.negative: "(-{0})",
    np.positive: "({0})",
    np.absolute: "abs({0})",
    np.minimum: "min({0}, {1})",
    np.maximum: "max({0}, {1})",
}
_BOOL_OPS = {
    np.logical_and: "({0} and {1})",
    np.logical_or: "({0} or {1})",
    np.logical_not: "(not {0})",
    np.minimum: "({0} and {1})",
    np.maximum: "({0} or {1})",
}
_COMPARE: dict[np.ufunc, str] = {np.less: "<", np.less_equal: "<=", np.greater: ">", np.greater_equal: ">=", np.equal: "==", np.not_equal: "!="}
_I64 = (int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max))


class _Unsupported(Exception):
    pass


class _Gen(Visitor[str]):
    """The numba expression computing one pixel of a node, in int64 (or bool)."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.index = {n: i for i, n in enumerate(names)}

    def as_int(self, node: Node) -> str:
        code = self.code(node)
        return code if node.kind == "i" else f"np.int64({code})"

    def code(self, node: Node) -> str:
        if node.kind not in "ib":
            raise _Unsupported("float node")
        if node.kind == "i" and (node.bounds is None or node.bounds[0] < _I64[0] or node.bounds[1] > _I64[1]):
            raise _Unsupported("bounds beyond int64")
        return self.visit(node)

    def _unhandled(self, node: Node) -> str:
        raise _Unsupported(type(node).__name__)

    def visit_name(self, node: nodes.Name) -> str:
        var = f"x{self.index[node.name]}[k]"
        return f"np.int64({var})" if node.kind == "i" else var

    def visit_const(self, node: nodes.Const) -> str:
        return f"np.int64({int(node.py)})" if node.kind == "i" else ("True" if node.py else "False")

    def visit_zeros(self, node: nodes.Zeros) -> str:
        return "False"

    def visit_pow(self, node: nodes.Pow) -> str:
        if node.kind != "i" or not isinstance(node.exponent, int) or node.exponent < 0:
            raise _Unsupported("power")
        if node.exponent == 0:
            return "np.int64(1)"
        base = self.as_int(node.base)
        return f"_ipow({base}, {int(node.exponent)})"

    def visit_clip(self, node: nodes.Clip) -> str:
        if node.kind != "i":
            raise _Unsupported("clip")
        x, lo, hi = (self.as_int(c) for c in node.children)
        return f"min(max({x}, {lo}), {hi})"

    def visit_where(self, node: nodes.Where) -> str:
        cond = self.code(node.cond)
        if node.kind == "i":
            return f"({self.as_int(node.x)} if {cond} else {self.as_int(node.y)})"
        return f"({self.code(node.x)} if {cond} else {self.code(node.y)})"

    def visit_chain(self, node: nodes.Chain) -> str:
        if any(c is not None and np.dtype(c).kind == "f" for c in node.cdts):
            raise _Unsupported("float comparison")
        ops = node.operands
        parts = [f"({self.as_int(a)} {_COMPARE[u]} {self.as_int(b)})" for u, a, b in zip(node.ufuncs, ops, ops[1:])]
        return "(" + " and ".join(parts) + ")"

    def visit_ufunc(self, node: nodes.Ufunc) -> str:
        if node.cdt is not None and node.cdt.kind == "f":
            raise _Unsupported("float operation")
        if node.ufunc in _COMPARE:
            a, b = (self.as_int(c) for c in node.children)
            return f"({a} {_COMPARE[node.ufunc]} {b})"
        if node.kind == "b":
            template = _BOOL_OPS.get(node.ufunc)
            if template is None:
                raise _Unsupported(str(node.ufunc))
            return template.format(*(self.code(c) for c in node.children))
        template = _INT_OPS.get(node.ufunc)
        if template is None:
            raise _Unsupported(str(node.ufunc))
        return template.format(*(self.as_int(c) for c in node.children))


_TEMPLATE = '''"""Generated by pipeline.kernels.compiled: the pointwise loop of one integer expression."""
import numba
import numpy as np


@numba.njit(nogil=True, cache={cache})
def _ipow(x, n):
    r = np.int64(1)
    for _ in range(n):
        r *= x
    return r


@numba.njit(nogil=True, cache={cache})
def evaluate(out, {args}):
    for k in range(out.size):
        out[k] = {body}
'''


def source(expression: Expr, *, cache: bool = True) -> str | None:
    """The generated module source for ``expression``, or None where it is not supported."""
    try:
        body = _Gen(expression.names).code(expression.root)
    except (_Unsupported, KeyError, AttributeError):
        return None
    args = ", ".join(f"x{i}" for i in range(len(expression.names)))
    return _TEMPLATE.format(cache=cache, args=args, body=body)


_lock = threading.Lock()
_loaded: dict[str, Callable] = {}
_sources: dict[int, tuple[object, str | None]] = {}


def _in_memory(text: str, digest: str) -> Callable:
    module_ns: dict = {}
    exec(compile(text.replace("cache=True", "cache=False"), f"<pipeline expr {digest}>", "exec"), module_ns)  # noqa: S102 - generated from templates only
    return module_ns["evaluate"]


def _load(text: str, *, cached: bool = True) -> Callable:
    digest = hashlib.sha256(text.encode()).hexdigest()[:20]
    with _lock:
        fn = _loaded.get(digest)
        if fn is not None:
            return fn
        try:
            path = kernelcache.source_file(f"expr_{digest}.py", text) if cached else None
            if path is None:
                raise OSError("no private cache folder")
            # compiled from the text itself, never from a .pyc (a planted one would run); numba's
            # cache needs the file on disk (its index is stamped with the file's mtime and size)
            module = types.ModuleType(f"pipeline_expr_{digest}")
            module.__file__ = str(path)
            sys.modules[module.__name__] = module  # numba's cache finds the module's globals by name
            exec(compile(text, str(path), "exec"), module.__dict__)  # noqa: S102 - generated from templates only
        except OSError:  # no private writable cache folder: compile in memory, uncached
            fn = _in_memory(text, digest)
        else:
            fn = module.evaluate
        _loaded[digest] = fn
        return fn


def _call(text: str, *args: np.ndarray) -> None:
    """Run the compiled loop; an entry of numba's cache that fails to load (a corrupt or
    truncated ``.nbi``/``.nbc``: UnpicklingError, EOFError, ...) is ignored and the loop compiled
    again in memory."""
    fn = _load(text)
    try:
        fn(*args)
    except Exception:
        digest = hashlib.sha256(text.encode()).hexdigest()[:20]
        with _lock:
            _loaded.pop(digest, None)
        fresh = _load(text, cached=False)
        if fresh is fn:
            raise
        fresh(*args)


def pointwise(expression: Expr) -> Evaluator | None:
    """A compiled evaluator for ``expression`` (same values and dtype as
    :meth:`~pipeline.expr.Expr.evaluate` on inputs of one shape), or None where numba is
    missing or the expression has a float node."""
    if not fastsum.AVAILABLE or expression.dtype.kind not in "biu" or expression.dtype == np.uint64:
        return None
    with _lock:  # generated once per parsed expression, not once per block
        known = _sources.get(id(expression.root))
    if known is None:
        known = (expression.root, source(expression))  # the tree is kept: its id stays unique
        with _lock:
            if len(_sources) >= 256:  # a long-lived process parsing many expressions
                _sources.clear()
            _sources[id(expression.root)] = known
    text = known[1]
    if text is None:
        return None
    names = expression.names
    dtype = expression.dtype

    def run(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        xs = [np.ascontiguousarray(arrays[n]) for n in names]
        out = np.empty(xs[0].shape, dtype=dtype)
        if out.size:
            _call(text, out.reshape(-1), *(x.reshape(-1) for x in xs))
        return out

    return run
