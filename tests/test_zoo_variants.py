"""Every variant x width x resolution is a valid ONNX model that runs with the right output shape."""

import numpy as np
import onnx
import pytest

from conftest import random_input, run_onnx
from mnv3compile.zoo import MODEL_NAMES, build_model, build_spec

WIDTHS = (0.35, 0.5, 0.75, 1.0, 1.25)
RESOLUTIONS = (96, 160, 224)


@pytest.mark.slow
@pytest.mark.parametrize("resolution", RESOLUTIONS)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("model", MODEL_NAMES)
def test_variant_is_valid_and_runs(model, width, resolution):
    spec = build_spec(model, width, resolution)
    onnx_model = build_model(spec)
    onnx.checker.check_model(onnx_model, full_check=True)
    outputs = run_onnx(onnx_model, {"input": random_input(spec.input_shape)})
    if model.startswith("ssdlite"):  # boxes and class probabilities per anchor
        anchors = outputs[0].shape[1]
        assert [o.shape for o in outputs] == [(1, anchors, 4), (1, anchors, 91)]
        assert outputs[1].sum(axis=-1) == pytest.approx(1.0, abs=1e-5)
        assert 0 <= outputs[0].min() and outputs[0].max() <= 1
    else:
        expected = (1, 19, resolution, resolution) if model.startswith("lraspp") else (1, 1000)
        assert [o.shape for o in outputs] == [expected]
    assert all(np.isfinite(o).all() for o in outputs)


def test_graph_is_spelled_like_a_pytorch_export():
    model = build_model(build_spec("large"))
    ops = {n.op_type for n in model.graph.node}
    assert ops == {"Conv", "BatchNormalization", "HardSwish", "HardSigmoid", "Relu", "GlobalAveragePool",
                   "Mul", "Add", "Flatten", "Gemm"}
    names = {n.name for n in model.graph.node}
    assert {"features.0.0", "features.0.1", "features.0.2", "features.4.block.2.fc1",
            "features.4.block.2.scale_activation", "classifier.0", "classifier.3"} <= names
    bn = next(n for n in model.graph.node if n.op_type == "BatchNormalization")
    assert onnx.helper.get_attribute_value(bn.attribute[0]) == pytest.approx(1e-3)
    assert model.opset_import[0].version == 17


@pytest.mark.parametrize("model", ["large", "small"])
def test_activations_neither_vanish_nor_explode(model):
    """With random weights every block's output keeps a std between 0.3 and 10."""
    spec = build_spec(model)
    onnx_model = build_model(spec)
    # Nodes are emitted in order, so a block's output is its last node.
    last_node = {}
    for node in onnx_model.graph.node:
        if node.name.startswith("features."):
            last_node[int(node.name.split(".")[1])] = node.output[0]
    del onnx_model.graph.output[:]
    for name in last_node.values():
        onnx_model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    outputs = run_onnx(onnx_model, {"input": random_input(spec.input_shape, seed=5)})
    stds = [round(float(o.std()), 2) for o in outputs]
    assert len(stds) == len(spec.blocks) + 2
    assert min(stds) > 0.3 and max(stds) < 10.0, stds


def test_same_seed_same_weights_across_resolutions_and_different_seed_differs():
    a = build_model(build_spec("small", 0.5, 96), seed=1)
    b = build_model(build_spec("small", 0.5, 224), seed=1)
    c = build_model(build_spec("small", 0.5, 96), seed=2)
    weights = lambda m: {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer if i.name.endswith("weight")}
    wa, wb, wc = weights(a), weights(b), weights(c)
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert not np.array_equal(wa["features.0.0.weight"], wc["features.0.0.weight"])
