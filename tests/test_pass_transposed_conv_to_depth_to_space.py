import pytest

from mnv3compile.passes import transposed_conv_to_depth_to_space
from pass_helpers import apply, assert_same_outputs, graph_model, node, ops, weights


@pytest.mark.parametrize("block, bias", [(2, True), (2, False), (3, True)])
def test_non_overlapping_transposed_conv_is_a_pointwise_conv_and_depth_to_space(block, bias):
    inputs = ["x", "w", "b"] if bias else ["x", "w"]
    inits = {"w": weights(6, 5, block, block), **({"b": weights(5)} if bias else {})}
    model = graph_model([node("ConvTranspose", inputs, "y", strides=[block, block], kernel_shape=[block, block])],
                        {"x": [1, 6, 4, 7]}, ["y"], inits)
    after, stats = apply(transposed_conv_to_depth_to_space.PASS, model)
    assert ops(after) == ["Conv", "DepthToSpace"] and stats.rewritten == 1
    assert_same_outputs(model, after)


@pytest.mark.parametrize("attrs, reason", [
    (dict(strides=[2, 2], kernel_shape=[3, 3]), "its kernel is not its stride (square): output blocks would overlap or be gapped"),
    (dict(strides=[2, 2], kernel_shape=[2, 2], pads=[1, 1, 1, 1]), "it is padded"),
    (dict(strides=[2, 2], kernel_shape=[2, 2], group=2), "weights are not constant (or the conv is grouped)"),
], ids=["overlapping", "padded", "grouped"])
def test_other_transposed_convs_are_left_alone(attrs, reason):
    kernel = attrs["kernel_shape"][0]
    model = graph_model([node("ConvTranspose", ["x", "w"], "y", **attrs)], {"x": [1, 6, 4, 7]}, ["y"],
                        {"w": weights(6, 5, kernel, kernel)})
    after, stats = apply(transposed_conv_to_depth_to_space.PASS, model)
    assert ops(after) == ["ConvTranspose"] and stats.refused == {f"convtranspose: {reason}": 1}
