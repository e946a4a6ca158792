"""inspect's counting rules on hand-built graphs that are not MobileNetV3."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from mnv3compile.analysis import analyze
from mnv3compile.errors import UserError


def _model(nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_grouped_conv_gemm_and_batchnorm_counts():
    w = numpy_helper.from_array(np.zeros((8, 2, 3, 3), np.float32), "w")
    bn = [numpy_helper.from_array(np.ones(8, np.float32), n) for n in ("s", "b", "m", "v")]
    fc = numpy_helper.from_array(np.zeros((5, 8 * 4 * 4), np.float32), "fc")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", group=2, pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"], name="bn"),
        helper.make_node("Flatten", ["n"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "fc"], ["y"], name="fc", transB=1),
    ]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 8, 8])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5])], [w, *bn, fc])
    stats = analyze(model)
    by_name = {layer.name: layer for layer in stats.layers}
    assert by_name["conv"].output_shape == (1, 8, 4, 4)
    assert by_name["conv"].madds == 8 * 4 * 4 * 2 * 9
    assert by_name["conv"].params == 8 * 2 * 9
    assert by_name["bn"].params == 16  # scale and shift; running statistics are not parameters
    assert by_name["fc"].madds == 5 * 128 and by_name["fc"].params == 5 * 128
    assert stats.notes == ("input 'x' axis 0 is dynamic (batch); counted as 1 (give its shape to override)",)


def test_constant_nodes_are_parameters_not_layers_and_shapes_can_be_given():
    weight = numpy_helper.from_array(np.zeros((4, 3, 1, 1), np.float32), "w")
    nodes = [helper.make_node("Constant", [], ["w"], value=weight),
             helper.make_node("Conv", ["x", "w"], ["y"], name="conv")]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, None, None])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    stats = analyze(model, {"x": [1, 3, 48, 192]})
    assert [layer.op for layer in stats.layers] == ["Conv"]
    assert stats.layers[0].madds == 4 * 48 * 192 * 3 and stats.total_params == 12
    with pytest.raises(UserError, match="model has no input named 'z' \\(inputs: x\\)"):
        analyze(model, {"z": [1, 3, 8, 8]})
    with pytest.raises(UserError, match="input 'x' has rank 4, the given shape \\(1, 3\\) has rank 2"):
        analyze(model, {"x": [1, 3]})
