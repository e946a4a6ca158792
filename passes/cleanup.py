"""cleanup: constants as initializers, fold weight-only subgraphs, drop Identity/Dropout, Reshapes
to the shape their input already has (tf2onnx's squeeze-excite once its own transpose optimizer
has run) and dead nodes, sort topologically, give every node a unique name, infer shapes.

Runs before the fusions (so e.g. Paddle's ``Add(conv, Reshape(bias, [1,C,1,1]))`` shows a constant
bias) and again at the end. Folding evaluates each all-constant node with onnx's reference
implementation, so no op needs a hand-written folder.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
from onnx.reference import ReferenceEvaluator
from onnx_ir.passes import common as ir_passes

from mnv3compile.passes.base import GraphPass
from mnv3compile.passes.graph_edit import add_initializer, constant_array, replace_subgraph
from mnv3compile.passes.rules import PassStats

# Ops whose value changes from run to run: never fold them.
_NONDETERMINISTIC = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"}
_MAX_FOLDED_ELEMENTS = 1 << 24  # do not materialise huge tensors (e.g. an Expand to a feature map)


def _evaluate(node: ir.Node, opset: int) -> list[np.ndarray]:
    """Run one node on its constant inputs with onnx's reference evaluator."""
    inputs = [constant_array(v) for v in node.inputs]
    names = [f"in{i}" if v is not None else "" for i, v in enumerate(node.inputs)]
    proto = ir.serde.serialize_node(node)
    del proto.input[:]
    proto.input.extend(names)
    del proto.output[:]
    proto.output.extend(f"out{i}" for i in range(len(node.outputs)))
    graph = onnx.helper.make_graph(
        [proto], "fold",
        [onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
         for n, a in zip(names, inputs) if n],
        [onnx.helper.make_empty_tensor_value_info(o) for o in proto.output])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
    return ReferenceEvaluator(model).run(None, {n: a for n, a in zip(names, inputs) if n})


def fold_constants(graph: ir.Graph, opset: int) -> int:
    """Replace every node whose inputs are all constant by initializers; returns how many."""
    folded = 0
    for node in list(graph):
        if (node.domain not in ("", "ai.onnx") or node.op_type in _NONDETERMINISTIC or not node.inputs
                or any(v is not None and constant_array(v) is None for v in node.inputs)
                or any(a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for a in node.attributes.values())
                or any(v.is_graph_output() for v in node.outputs)):
            continue
        try:
            results = _evaluate(node, opset)
        except (NotImplementedError, RuntimeError, TypeError, ValueError):
            # An op (or an attribute of one) onnx's reference evaluator does not implement, or
            # rejects: the node stays as it is, computed at run time.
            continue
        if any(np.asarray(r).size > _MAX_FOLDED_ELEMENTS for r in results):
            continue
        for output, result in zip(node.outputs, results):
            const = add_initializer(graph, np.asarray(result), output.name or f"{node.name}_folded")
            output.replace_all_uses_with(const)
        graph.remove(node, safe=True)
        folded += 1
    return folded


def fold_static_shapes(graph: ir.Graph) -> int:
    """``Shape(x)`` of a tensor whose shape is fully known becomes a constant (and with it the
    Shape -> Slice -> Concat -> Reshape chains exporters write for a flatten)."""
    folded = 0
    for node in list(graph):
        if node.op_type != "Shape" or node.domain not in ("", "ai.onnx") or node.outputs[0].is_graph_output():
            continue
        shape = node.inputs[0].shape
        if shape is None or not all(isinstance(d, int) for d in shape):
            continue
        dims = np.array(list(shape), np.int64)
        start, end = node.attributes.get_int("start", 0), node.attributes.get_int("end", len(dims))
        const = add_initializer(graph, dims[start:end], node.outputs[0].name or f"{node.name}_shape")
        node.outputs[0].replace_all_uses_with(const)
        graph.remove(node, safe=True)
        folded += 1
    return folded


def _infer_shapes(model: ir.Model) -> None:
    # Shapes help (static Shape folding, later stages) but are not required: the pass itself
    # leaves the model unchanged (and logs why) when onnx's inference fails.
    ir_passes.ShapeInferencePass(strict_mode=False)(model)


def remove_inference_dropout(graph: ir.Graph) -> int:
    """Dropout is the identity at inference unless training_mode is set or its mask is read."""
    removed = 0
    for node in list(graph):
        if node.op_type != "Dropout" or node.domain not in ("", "ai.onnx"):
            continue
        training = constant_array(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None else False
        if training is None or bool(np.asarray(training)):
            continue
        if len(node.outputs) > 1 and (node.outputs[1].uses() or node.outputs[1].is_graph_output()):
            continue
        replace_subgraph(graph, [node], [], node.outputs[0], node.inputs[0])
        removed += 1
    return removed


def remove_identity_reshapes(graph: ir.Graph) -> int:
    """A Reshape to a constant shape equal to its input's (static) shape moves nothing."""
    removed = 0
    for node in list(graph):
        if node.op_type != "Reshape" or node.domain not in ("", "ai.onnx") or len(node.inputs) < 2:
            continue
        shape, target = node.inputs[0].shape, constant_array(node.inputs[1])
        if shape is None or target is None or not all(isinstance(d, int) for d in shape):
            continue
        if [int(d) for d in target.reshape(-1)] != list(shape):
            continue
        if node.outputs[0].is_graph_output() and (node.inputs[0].is_graph_input() or node.inputs[0].is_graph_output()):
            continue  # replace_subgraph would put an Identity back in its place
        replace_subgraph(graph, [node], [], node.outputs[0], node.inputs[0])
        removed += 1
    return removed


def _run(model: ir.Model) -> tuple[ir.Model, PassStats]:
    before = model.graph.num_nodes()
    ir_passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(model)
    changed = remove_inference_dropout(model.graph)
    ir_passes.IdentityEliminationPass()(model)
    _infer_shapes(model)
    changed += fold_static_shapes(model.graph)
    changed += fold_constants(model.graph, model.opset_imports.get("", 17))
    changed += remove_identity_reshapes(model.graph)
    ir_passes.RemoveUnusedNodesPass()(model)
    ir_passes.TopologicalSortPass()(model)
    ir_passes.NameFixPass()(model)  # every node and value named, uniquely: later stages key on names
    _infer_shapes(model)
    removed = before - model.graph.num_nodes()
    return model, PassStats(matched=max(removed, changed), rewritten=max(removed, changed))


PASS = GraphPass("cleanup", "constants to initializers, fold weight-only subgraphs, drop Identity/"
                 "Dropout/identity Reshapes/dead nodes, topological sort, shape inference", _run)
