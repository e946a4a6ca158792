import numpy as np
import pytest

from mnv3compile.passes import reduce_mean_to_global_pool
from pass_helpers import apply, assert_same_outputs, graph_model, node, ops


@pytest.mark.parametrize("keepdims, expected", [(1, ["GlobalAveragePool"]), (0, ["GlobalAveragePool", "Flatten"])])
def test_spatial_mean_of_nchw_is_global_pool(keepdims, expected):
    model = graph_model([node("ReduceMean", ["x"], "y", axes=[2, 3], keepdims=keepdims)], {"x": [2, 5, 4, 3]}, ["y"], {})
    after, stats = apply(reduce_mean_to_global_pool.PASS, model)
    assert ops(after) == expected and stats.rewritten == 1
    assert_same_outputs(model, after)


def test_axes_as_an_input_and_negative_axes_opset18():
    model = graph_model([node("ReduceMean", ["x", "axes"], "y", keepdims=1)], {"x": [1, 8, 5, 5]}, ["y"],
                        {"axes": np.array([-1, -2], np.int64)}, opset=18)
    after, _ = apply(reduce_mean_to_global_pool.PASS, model)
    assert ops(after) == ["GlobalAveragePool"]
    assert_same_outputs(model, after)


@pytest.mark.parametrize("keepdims, expected", [(1, ["Transpose", "GlobalAveragePool", "Transpose", "Relu"]),
                                                (0, ["Transpose", "GlobalAveragePool", "Flatten", "Relu"])])
def test_channels_last_mean_pools_the_nchw_tensor_and_leaves_the_transpose_to_its_readers(keepdims, expected):
    """tf2onnx's squeeze-excite: ReduceMean(axes 1, 2) of Transpose(x, 0 2 3 1), whose transpose
    the main path reads too."""
    model = graph_model([node("Transpose", ["x"], "nhwc", perm=[0, 2, 3, 1]),
                         node("ReduceMean", ["nhwc"], "pooled", axes=[1, 2], keepdims=keepdims),
                         node("Relu", ["nhwc"], "y")], {"x": [1, 6, 4, 4]}, ["pooled", "y"], {})
    after, stats = apply(reduce_mean_to_global_pool.PASS, model)
    assert sorted(ops(after)) == sorted(expected) and stats.rewritten == 1
    assert_same_outputs(model, after)


@pytest.mark.parametrize("axes, perm", [([1], None), ([2], None), ([1, 2], None), ([1, 2, 3], None), ([1, 2], [0, 3, 1, 2])],
                         ids=["channels", "height", "nchw-axes-1-2", "with-channels", "other-transpose"])
def test_other_means_are_left_alone(axes, perm):
    nodes = [node("Transpose", ["x"], "t", perm=perm)] if perm else []
    nodes.append(node("ReduceMean", ["t" if perm else "x"], "y", axes=axes, keepdims=1))
    model = graph_model(nodes, {"x": [1, 6, 4, 4]}, ["y"], {})
    after, stats = apply(reduce_mean_to_global_pool.PASS, model)
    assert "GlobalAveragePool" not in ops(after) and stats.rewritten == 0
