"""Tiny hand-built graphs for the pass tests, and the before/after numeric check."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper

from mnv3compile.passes import verify
from mnv3compile.passes.base import GraphPass

RNG = np.random.default_rng(0)


def weights(*shape, scale: float = 0.5) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def scalar(value: float) -> np.ndarray:
    return np.array(value, np.float32)


def graph_model(nodes: list[onnx.NodeProto], inputs: dict[str, list[int]], outputs: list[str],
                initializers: dict[str, np.ndarray], opset: int = 17) -> onnx.ModelProto:
    """A float model from nodes; outputs get their shapes by inference."""
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        [numpy_helper.from_array(a, n) for n, a in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    graph_info = onnx.shape_inference.infer_shapes(model).graph
    inferred = {v.name: v for v in [*graph_info.value_info, *graph_info.output]}
    for output in model.graph.output:
        if output.name in inferred:
            output.CopyFrom(inferred[output.name])
    onnx.checker.check_model(model)
    return model


def node(op_type: str, inputs: list[str], output: str, **attrs) -> onnx.NodeProto:
    return helper.make_node(op_type, inputs, [output], name=output, **attrs)


def apply(graph_pass: GraphPass, model: onnx.ModelProto):
    """Run one pass; returns (new model proto, stats). The result must pass the checker."""
    result, stats = graph_pass.run(ir.from_proto(model))
    proto = ir.to_proto(result)
    onnx.checker.check_model(proto)
    return proto, stats


def ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def assert_same_outputs(before: onnx.ModelProto, after: onnx.ModelProto, rtol: float = 1e-5, seed: int = 0) -> None:
    feeds = verify.random_feeds(before, seed)
    # Spread inputs over the interesting range of the activations (-6..6).
    feeds = {k: v * 3 for k, v in feeds.items()}
    errors = verify.compare(verify.run(before, feeds), verify.run(after, feeds))
    assert all(e.max_rel <= rtol for e in errors), errors
