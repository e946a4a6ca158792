import numpy as np

from mnv3compile.passes import fold_pad_into_conv
from pass_helpers import apply, assert_same_outputs, graph_model, node, ops, weights


def _model(pads, mode="constant", value=None):
    inputs = ["x", "pads"] + (["value"] if value is not None else [])
    inits = {"pads": np.array(pads, np.int64), "w": weights(4, 3, 3, 3), "b": weights(4)}
    if value is not None:
        inits["value"] = np.array(value, np.float32)
    return graph_model([node("Pad", inputs, "p", mode=mode), node("Conv", ["p", "w", "b"], "y", strides=[2, 2])],
                       {"x": [1, 3, 9, 9]}, ["y"], inits)


def test_tf_same_padding_folds_into_the_conv():
    model = _model([0, 0, 0, 0, 0, 0, 1, 1])
    after, stats = apply(fold_pad_into_conv.PASS, model)
    assert ops(after) == ["Conv"] and stats.rewritten == 1
    assert list(after.graph.node[0].attribute[-1].ints) == [0, 0, 1, 1]
    assert_same_outputs(model, after)


def test_explicit_zero_value_folds_too():
    model = _model([0, 0, 1, 1, 0, 0, 1, 1], value=0.0)
    after, _ = apply(fold_pad_into_conv.PASS, model)
    assert ops(after) == ["Conv"]
    assert_same_outputs(model, after)


def test_reflect_or_nonzero_or_channel_padding_is_left_alone():
    for model in (_model([0, 0, 1, 1, 0, 0, 1, 1], mode="reflect"), _model([0, 0, 1, 1, 0, 0, 1, 1], value=1.0),
                  _model([0, 1, 0, 0, 0, 1, 0, 0])):
        after, stats = apply(fold_pad_into_conv.PASS, model)
        assert ops(after) == ["Pad", "Conv"] and stats.rewritten == 0
