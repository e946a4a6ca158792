import numpy as np

from mnv3compile.passes import fold_conv_add
from pass_helpers import apply, assert_same_outputs, graph_model, node, ops, weights


def test_paddle_style_bias_add_folds_into_conv():
    model = graph_model([node("Conv", ["x", "w"], "c"), node("Add", ["c", "bias"], "y")],
                        {"x": [1, 3, 4, 4]}, ["y"], {"w": weights(6, 3, 1, 1), "bias": weights(1, 6, 1, 1)})
    after, stats = apply(fold_conv_add.PASS, model)
    assert ops(after) == ["Conv"] and stats.rewritten == 1
    assert_same_outputs(model, after)


def test_existing_bias_and_operand_order():
    model = graph_model([node("Conv", ["x", "w", "b"], "c"), node("Add", ["bias", "c"], "y")],
                        {"x": [1, 3, 4, 4]}, ["y"], {"w": weights(6, 3, 1, 1), "b": weights(6), "bias": weights(6, 1, 1)})
    after, _ = apply(fold_conv_add.PASS, model)
    assert ops(after) == ["Conv"]
    assert_same_outputs(model, after)


def test_refuses_constant_that_varies_over_space():
    model = graph_model([node("Conv", ["x", "w"], "c"), node("Add", ["c", "bias"], "y")],
                        {"x": [1, 3, 4, 4]}, ["y"], {"w": weights(6, 3, 1, 1), "bias": weights(1, 6, 4, 4)})
    after, stats = apply(fold_conv_add.PASS, model)
    assert ops(after) == ["Conv", "Add"]
    assert stats.refused == {"conv+add: added constant is not per output channel": 1}


def test_scalar_add_folds():
    model = graph_model([node("Conv", ["x", "w"], "c"), node("Add", ["c", "k"], "y")],
                        {"x": [1, 3, 4, 4]}, ["y"], {"w": weights(6, 3, 1, 1), "k": np.array(0.5, np.float32)})
    after, _ = apply(fold_conv_add.PASS, model)
    assert ops(after) == ["Conv"]
    assert_same_outputs(model, after)


def test_keeps_the_plus_three_of_a_hard_sigmoid():
    model = graph_model([node("Conv", ["x", "w"], "c"), node("Add", ["c", "three"], "a"),
                         node("Clip", ["a", "zero", "six"], "y")],
                        {"x": [1, 3, 4, 4]}, ["y"], {"w": weights(6, 3, 1, 1), "three": np.array(3.0, np.float32),
                                                      "zero": np.array(0.0, np.float32), "six": np.array(6.0, np.float32)})
    after, stats = apply(fold_conv_add.PASS, model)
    assert ops(after) == ["Conv", "Add", "Clip"] and stats.matched == 0


def test_per_channel_add_after_a_transposed_conv_folds_into_its_bias():
    model = graph_model([node("ConvTranspose", ["x", "w"], "c", strides=[2, 2], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                              output_padding=[1, 1]),
                         node("Add", ["c", "bias"], "y")],
                        {"x": [1, 4, 3, 5]}, ["y"], {"w": weights(4, 6, 3, 3), "bias": weights(1, 6, 1, 1)})
    after, stats = apply(fold_conv_add.PASS, model)
    assert ops(after) == ["ConvTranspose"] and stats.rewritten == 1
    assert_same_outputs(model, after)
