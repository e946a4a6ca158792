import numpy as np

from mnv3compile.passes import fold_batchnorm
from pass_helpers import apply, assert_same_outputs, graph_model, node, ops, weights

C = 4


def _bn_inits(prefix: str = "") -> dict:
    rng = np.random.default_rng(1)
    return {f"{prefix}s": rng.uniform(0.5, 1.5, C).astype(np.float32), f"{prefix}b": rng.normal(0, 1, C).astype(np.float32),
            f"{prefix}m": rng.normal(0, 1, C).astype(np.float32), f"{prefix}v": rng.uniform(0.5, 2, C).astype(np.float32)}


def test_folds_conv_without_bias():
    model = graph_model([node("Conv", ["x", "w"], "c", pads=[1, 1, 1, 1]),
                         node("BatchNormalization", ["c", "s", "b", "m", "v"], "y", epsilon=1e-3)],
                        {"x": [1, 3, 8, 8]}, ["y"], {"w": weights(C, 3, 3, 3), **_bn_inits()})
    after, stats = apply(fold_batchnorm.PASS, model)
    assert ops(after) == ["Conv"] and (stats.matched, stats.rewritten) == (1, 1)
    assert len(after.graph.node[0].input) == 3  # the fold gives the Conv a bias
    assert_same_outputs(model, after)


def test_folds_depthwise_conv_with_bias():
    model = graph_model([node("Conv", ["x", "w", "cb"], "c", group=C, pads=[2, 2, 2, 2], strides=[2, 2]),
                         node("BatchNormalization", ["c", "s", "b", "m", "v"], "y")],
                        {"x": [1, C, 9, 9]}, ["y"], {"w": weights(C, 1, 5, 5), "cb": weights(C), **_bn_inits()})
    after, _ = apply(fold_batchnorm.PASS, model)
    assert ops(after) == ["Conv"]
    assert_same_outputs(model, after)


def test_leaves_batchnorm_whose_input_is_not_a_conv():
    model = graph_model([node("BatchNormalization", ["x", "s", "b", "m", "v"], "y")],
                        {"x": [1, C, 4, 4]}, ["y"], _bn_inits())
    after, stats = apply(fold_batchnorm.PASS, model)
    assert ops(after) == ["BatchNormalization"] and stats.matched == 0


def test_leaves_conv_whose_output_is_used_twice():
    model = graph_model([node("Conv", ["x", "w"], "c"),
                         node("BatchNormalization", ["c", "s", "b", "m", "v"], "y"),
                         node("Relu", ["c"], "z")],
                        {"x": [1, 3, 4, 4]}, ["y", "z"], {"w": weights(C, 3, 1, 1), **_bn_inits()})
    after, stats = apply(fold_batchnorm.PASS, model)
    assert ops(after) == ["Conv", "BatchNormalization", "Relu"] and stats.rewritten == 0


def test_leaves_batchnorm_after_conv_and_relu():
    model = graph_model([node("Conv", ["x", "w"], "c"), node("Relu", ["c"], "r"),
                         node("BatchNormalization", ["r", "s", "b", "m", "v"], "y")],
                        {"x": [1, 3, 4, 4]}, ["y"], {"w": weights(C, 3, 1, 1), **_bn_inits()})
    after, _ = apply(fold_batchnorm.PASS, model)
    assert ops(after) == ["Conv", "Relu", "BatchNormalization"]


def test_leaves_conv_with_runtime_weights():
    model = graph_model([node("Conv", ["x", "w"], "c"), node("BatchNormalization", ["c", "s", "b", "m", "v"], "y")],
                        {"x": [1, 3, 4, 4], "w": [C, 3, 1, 1]}, ["y"], _bn_inits())
    after, stats = apply(fold_batchnorm.PASS, model)
    assert ops(after) == ["Conv", "BatchNormalization"] and stats.matched == 0


def test_batchnorm_after_a_transposed_conv_folds_along_its_output_axis():
    """PaddleOCR's DB head: ConvTranspose (weight C_in x C_out x kh x kw) then BN over C_out."""
    model = graph_model([node("ConvTranspose", ["x", "w", "b"], "c", strides=[2, 2], kernel_shape=[2, 2]),
                         node("BatchNormalization", ["c", "s", "t", "m", "v"], "y")],
                        {"x": [1, 4, 3, 5]}, ["y"],
                        {"w": weights(4, 6, 2, 2), "b": weights(6), "s": weights(6), "t": weights(6), "m": weights(6),
                         "v": np.abs(weights(6)) + 0.5})
    after, stats = apply(fold_batchnorm.PASS, model)
    assert ops(after) == ["ConvTranspose"] and stats.rewritten == 1
    assert_same_outputs(model, after)


def test_grouped_transposed_conv_folds_per_group():
    """onnxscript's rule scales each group's slice of the C_in/g x C_out/g weight blocks."""
    model = graph_model([node("ConvTranspose", ["x", "w"], "c", strides=[2, 2], kernel_shape=[2, 2], group=2),
                         node("BatchNormalization", ["c", "s", "t", "m", "v"], "y")],
                        {"x": [1, 4, 3, 5]}, ["y"],
                        {"w": weights(4, 3, 2, 2), "s": weights(6), "t": weights(6), "m": weights(6),
                         "v": np.abs(weights(6)) + 0.5})
    after, stats = apply(fold_batchnorm.PASS, model)
    assert ops(after) == ["ConvTranspose"] and stats.rewritten == 1
    assert_same_outputs(model, after)
