import numpy as np
import onnx
import pytest

from mnv3compile.passes import unwrap_softmax
from pass_helpers import apply, assert_same_outputs, graph_model, node, ops


def _wrapped(shape: list[int], flatten_axis: int, softmax_axis: int = -1):
    """What onnx's version converter writes for an opset-12 Softmax whose input rank it cannot infer
    (seen in Paddle2ONNX's PP-OCRv4 recognizer): Flatten, a 2-D Softmax, Reshape back."""
    return onnx.shape_inference.infer_shapes(graph_model([node("Relu", ["x"], "r"), node("Flatten", ["r"], "f", axis=flatten_axis),
                        node("Softmax", ["f"], "s", axis=softmax_axis), node("Reshape", ["s", "shape"], "y")],
                       {"x": shape}, ["y"], {"shape": np.array(shape, np.int64)}))  # shapes known, as cleanup leaves them


@pytest.mark.parametrize("shape, softmax_axis", [([1, 6, 40], -1), ([1, 2, 5, 7], 1)])
def test_the_wrapping_of_a_last_axis_softmax_is_dropped(shape, softmax_axis):
    model = _wrapped(shape, len(shape) - 1, softmax_axis)
    after, stats = apply(unwrap_softmax.PASS, model)
    assert ops(after) == ["Relu", "Softmax"] and stats.rewritten == 1
    assert_same_outputs(model, after)


def test_a_softmax_over_more_than_the_last_axis_keeps_its_wrapping():
    model = _wrapped([1, 6, 40], 1)
    after, stats = apply(unwrap_softmax.PASS, model)
    assert ops(after) == ["Relu", "Flatten", "Softmax", "Reshape"]
    assert stats.refused == {"reshape(softmax(flatten)): the flatten keeps more than the last axis apart": 1}
    assert_same_outputs(model, after)
