import numpy as np
from onnx import helper, numpy_helper

from mnv3compile.passes import cleanup
from pass_helpers import apply, assert_same_outputs, graph_model, node, ops, weights


def test_folds_weight_only_subgraphs_and_drops_identity_dropout_dead_nodes():
    shape = helper.make_node("Constant", [], ["shape"], value=numpy_helper.from_array(np.array([1, 4, 1, 1], np.int64)))
    model = graph_model([
        shape,
        node("Reshape", ["bias", "shape"], "bias4"),           # weight-only: folded
        node("Conv", ["x", "w"], "c"),
        node("Add", ["c", "bias4"], "a"),
        node("Identity", ["a"], "i"),
        node("Dropout", ["i"], "d"),
        node("Relu", ["d"], "y"),
        node("Sigmoid", ["x"], "dead"),                         # read by no one
    ], {"x": [1, 3, 4, 4]}, ["y"], {"w": weights(4, 3, 1, 1), "bias": weights(4)})
    after, stats = apply(cleanup.PASS, model)
    assert ops(after) == ["Conv", "Add", "Relu"]
    assert stats.rewritten > 0
    assert_same_outputs(model, after)


def test_shape_of_a_static_tensor_is_folded():
    model = graph_model([
        node("GlobalAveragePool", ["x"], "p"),
        node("Shape", ["p"], "s"),
        node("Gather", ["s", "zero"], "n"),
        node("Unsqueeze", ["n", "axes"], "n1"),
        node("Concat", ["n1", "minus1"], "target", axis=0),
        node("Reshape", ["p", "target"], "y"),
    ], {"x": [1, 8, 3, 3]}, ["y"], {"zero": np.array(0, np.int64), "axes": np.array([0], np.int64),
                                    "minus1": np.array([-1], np.int64)})
    after, _ = apply(cleanup.PASS, model)
    assert ops(after) == ["GlobalAveragePool", "Reshape"]
    assert_same_outputs(model, after)


def test_graph_output_produced_by_identity_keeps_its_name():
    model = graph_model([node("Relu", ["x"], "r"), node("Identity", ["r"], "y")], {"x": [1, 2]}, ["y"], {})
    after, _ = apply(cleanup.PASS, model)
    assert [o.name for o in after.graph.output] == ["y"]
    assert_same_outputs(model, after)


def test_a_reshape_to_the_shape_its_input_has_is_dropped():
    """tf2onnx's squeeze-excite after its own transpose optimizer: GlobalAveragePool [1,C,1,1] ->
    Reshape([1,C,1,1]) -> Conv."""
    model = graph_model([node("GlobalAveragePool", ["x"], "p"), node("Reshape", ["p", "same"], "r"),
                         node("Reshape", ["r", "other"], "y")], {"x": [1, 6, 4, 4]}, ["y"],
                        {"same": np.array([1, 6, 1, 1], np.int64), "other": np.array([1, 6], np.int64)})
    after, _ = apply(cleanup.PASS, model)
    assert ops(after) == ["GlobalAveragePool", "Reshape"]
    assert_same_outputs(model, after)


def test_a_dropped_reshape_that_was_the_output_leaves_the_output_its_name():
    model = graph_model([node("Relu", ["x"], "r"), node("Reshape", ["r", "same"], "y")], {"x": [1, 6]}, ["y"],
                        {"same": np.array([1, 6], np.int64)})
    after, _ = apply(cleanup.PASS, model)
    assert ops(after) == ["Relu"] and [o.name for o in after.graph.output] == ["y"]
    assert_same_outputs(model, after)
