import numpy as np

from mnv3compile.passes import div_by_constant_to_mul
from pass_helpers import apply, assert_same_outputs, graph_model, node, ops, scalar


def test_division_by_a_constant_is_a_multiplication():
    model = graph_model([node("Div", ["x", "c"], "y")], {"x": [1, 4, 5, 5]}, ["y"],
                        {"c": np.array([[[[2.0]], [[3.0]], [[-4.0]], [[0.5]]]], np.float32)})
    after, stats = apply(div_by_constant_to_mul.PASS, model)
    assert ops(after) == ["Mul"] and stats.rewritten == 1
    assert_same_outputs(model, after)


def test_a_zero_divisor_and_a_tensor_divisor_are_left_alone():
    zero = graph_model([node("Div", ["x", "c"], "y")], {"x": [1, 4, 5, 5]}, ["y"], {"c": scalar(0.0)})
    after, stats = apply(div_by_constant_to_mul.PASS, zero)
    assert ops(after) == ["Div"] and stats.refused == {"Div(x,c): the divisor has a zero": 1}
    tensor = graph_model([node("Div", ["x", "x"], "y")], {"x": [1, 4, 5, 5]}, ["y"], {})
    after, stats = apply(div_by_constant_to_mul.PASS, tensor)
    assert ops(after) == ["Div"] and stats.matched == 0
