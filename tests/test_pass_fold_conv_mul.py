import pytest

from mnv3compile.passes import fold_conv_mul
from pass_helpers import apply, assert_same_outputs, graph_model, node, ops, scalar, weights


@pytest.mark.parametrize("group", [1, 4], ids=["dense", "depthwise"])
@pytest.mark.parametrize("multiplier", [scalar(1.7), weights(1, 4, 1, 1), weights(4, 1, 1)], ids=["scalar", "1C11", "C11"])
@pytest.mark.parametrize("with_bias", [True, False])
def test_a_constant_mul_after_a_conv_is_folded(group, multiplier, with_bias):
    """PP-LCNetV3's learnable scale (x * a) after each conv, in either operand order."""
    conv_inputs = ["x", "w", "b"] if with_bias else ["x", "w"]
    model = graph_model([node("Conv", conv_inputs, "c", group=group, pads=[1, 1, 1, 1]), node("Mul", ["k", "c"], "y")],
                        {"x": [1, 4, 6, 6]}, ["y"], {"w": weights(4, 4 // group, 3, 3), "b": weights(4), "k": multiplier})
    after, stats = apply(fold_conv_mul.PASS, model)
    assert ops(after) == ["Conv"] and stats.rewritten == 1
    assert_same_outputs(model, after)


def test_a_multiplier_over_space_or_a_conv_read_twice_is_left():
    model = graph_model([node("Conv", ["x", "w"], "c"), node("Mul", ["c", "k"], "y"), node("Relu", ["c"], "r")],
                        {"x": [1, 4, 6, 6]}, ["y", "r"], {"w": weights(4, 4, 1, 1), "k": scalar(2.0)})
    after, stats = apply(fold_conv_mul.PASS, model)
    assert ops(after) == ["Conv", "Mul", "Relu"] and stats.rewritten == 0
    spatial = graph_model([node("Conv", ["x", "w"], "c"), node("Mul", ["c", "k"], "y")], {"x": [1, 4, 6, 6]}, ["y"],
                          {"w": weights(4, 4, 1, 1), "k": weights(1, 1, 6, 6)})
    after, stats = apply(fold_conv_mul.PASS, spatial)
    assert ops(after) == ["Conv", "Mul"] and stats.refused == {"conv*constant: multiplier is not per output channel": 1}
