"""The shared matcher: variable binding, commutative operands, private interiors."""

import onnx_ir as ir

from mnv3compile.passes.matcher import Const, Var, find_match, op
from pass_helpers import graph_model, node, scalar


def _graph(nodes, outputs=("y",), inits=None):
    return ir.from_proto(graph_model(nodes, {"x": [1, 2], "z": [1, 2]}, list(outputs), inits or {"k": scalar(2)})).graph


def _root(graph, name):
    return next(n for n in graph if n.name == name)


def test_a_variable_binds_one_value():
    pattern = op.Mul(Var("a"), op.Add(Var("a"), Const("k")))
    same = _graph([node("Add", ["x", "k"], "s"), node("Mul", ["x", "s"], "y")])
    other = _graph([node("Add", ["z", "k"], "s"), node("Mul", ["x", "s"], "y")])
    assert find_match(pattern, _root(same, "y")) is not None
    assert find_match(pattern, _root(other, "y")) is None


def test_add_and_mul_match_either_operand_order_and_constants_by_value():
    graph = _graph([node("Add", ["k", "x"], "y")])
    assert find_match(op.Add(Var("v"), Const("c", 2.0)), _root(graph, "y")) is not None
    assert find_match(op.Add(Var("v"), Const("c", 3.0)), _root(graph, "y")) is None


def test_interior_nodes_must_not_be_read_outside_the_match():
    pattern = op.Relu(op.Add(Var("v"), Const("k")))
    private = _graph([node("Add", ["x", "k"], "s"), node("Relu", ["s"], "y")])
    shared = _graph([node("Add", ["x", "k"], "s"), node("Relu", ["s"], "y"), node("Neg", ["s"], "w")], ("y", "w"))
    assert find_match(pattern, _root(private, "y")) is not None
    assert find_match(pattern, _root(shared, "y")) is None
