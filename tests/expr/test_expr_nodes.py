"""Tests of pipeline.expr.nodes: the typed tree and its public Visitor."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.expr import Node, Visitor, nodes, parse_expression


class _Count(Visitor[int]):
    """Counts the nodes of a tree, by walking every child."""

    def visit_name(self, node):
        return 1

    def visit_const(self, node):
        return 1

    def visit_zeros(self, node):
        return 1

    def visit_ufunc(self, node):
        return 1 + sum(c.accept(self) for c in node.children)

    def visit_clip(self, node):
        return 1 + sum(c.accept(self) for c in node.children)

    def visit_pow(self, node):
        return 1 + node.base.accept(self)

    def visit_where(self, node):
        return 1 + sum(c.accept(self) for c in (node.cond, node.x, node.y))

    def visit_chain(self, node):
        return 1 + sum(c.accept(self) for c in node.operands)


def test_visitor_reaches_every_node_class():
    inputs = {"a": np.dtype("int16"), "b": np.dtype("float32")}
    expr = parse_expression("where(a < b < 3, clip(a, 0, 9) ** 2, abs(b)) + isnan(a)", inputs)
    assert isinstance(expr.root, Node)
    # where, chain(a, b, 3), pow(clip(a, 0, 9)), abs(b), isnan(a) as zeros, the sum (+ casts)
    assert _Count().visit(expr.root) >= 12


def test_a_visitor_refuses_the_nodes_it_does_not_handle():
    class OnlyNames(Visitor[str]):
        def visit_name(self, node):
            return node.name

    expr = parse_expression("a + 1", {"a": np.dtype("uint8")})
    assert OnlyNames().visit(expr.root.children[0]) == "a"
    with pytest.raises(NotImplementedError, match="OnlyNames does not handle Ufunc"):
        OnlyNames().visit(expr.root)


def test_nodes_carry_kind_dtype_bounds_and_names():
    expr = parse_expression("a * 2 > b", {"a": np.dtype("uint8"), "b": np.dtype("int8")})
    root = expr.root
    assert isinstance(root, nodes.Ufunc) and root.kind == "b" and root.bounds == (0, 1)
    product = root.children[0]
    assert product.kind == "i" and product.bounds == (0, 510) and product.dtype == np.dtype("int16")
    assert root.names == frozenset({"a", "b"})
