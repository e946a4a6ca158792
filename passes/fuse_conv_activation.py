"""fuse_conv_activation: mark each Conv with its bias and activation as one fused unit.

A unit is a Conv (weights and bias constant) followed by at most one activation that alone reads
the Conv's output: Relu, Clip(0, 6), HardSwish, the canonical h-sigmoid
``Mul(Clip(Add(conv,3),0,6),1/6)`` or Sigmoid. The nodes stay standard ONNX ops (so the model
still runs in onnxruntime and imports into TVM) and carry the unit in node metadata; the keys,
``read_units`` and ``check_units`` are the canonical form's (``passes/canonical.py``). Nothing is
rewritten, so this is a walk over the Convs, not a rewrite rule.
"""

from __future__ import annotations

import onnx_ir as ir

from mnv3compile.passes.base import GraphPass
from mnv3compile.passes.canonical import ACTIVATION, MIN_IR_VERSION, ROLE, UNIT, hsigmoid_nodes
from mnv3compile.passes.graph_edit import scalar_close
from mnv3compile.passes.rules import PassStats

SINGLE_OP_ACTIVATIONS = {"Relu": "relu", "HardSwish": "hswish", "Sigmoid": "sigmoid"}


def _single_op_activation(node: ir.Node, y: ir.Value) -> str | None:
    if node.domain not in ("", "ai.onnx") or not node.inputs or node.inputs[0] is not y:
        return None
    if node.op_type in SINGLE_OP_ACTIVATIONS and len(node.inputs) == 1:
        return SINGLE_OP_ACTIVATIONS[node.op_type]
    if (node.op_type == "Clip" and len(node.inputs) == 3 and scalar_close(node.inputs[1], 0.0)
            and scalar_close(node.inputs[2], 6.0)):
        return "relu6"
    return None


def _activation_of(model: ir.Model, conv: ir.Node) -> tuple[str, list[ir.Node]]:
    y = conv.outputs[0]
    if y.is_graph_output():
        return "none", []
    users = [u for u, _ in y.uses()]
    if len(users) == 1:
        kind = _single_op_activation(users[0], y)
        if kind is not None:
            return kind, users
    # The canonical h-sigmoid ends two nodes after the Add that reads y.
    for mul in {last for add in users for clip in _readers(add) for last in _readers(clip)}:
        found = hsigmoid_nodes(model, mul)
        if found is not None and found[0] is y and set(users) <= set(found[1]):
            return "hsigmoid", found[1]
    return "none", []


def _readers(node: ir.Node) -> set[ir.Node]:
    return {user for output in node.outputs for user, _ in output.uses()}


def _run(model: ir.Model) -> tuple[ir.Model, PassStats]:
    stats = PassStats()
    for index, conv in enumerate(n for n in model.graph if n.op_type == "Conv"):
        stats.matched += 1
        if ir.convenience.get_const_tensor(conv.inputs[1]) is None:
            stats.refuse("conv weights are not constant")
            continue
        kind, activation_nodes = _activation_of(model, conv)
        unit = conv.name or f"conv_{index}"
        conv.metadata_props.update({UNIT: unit, ROLE: "conv", ACTIVATION: kind})
        for node in activation_nodes:
            node.metadata_props.update({UNIT: unit, ROLE: "activation"})
        stats.rewritten += 1
    model.ir_version = max(model.ir_version, MIN_IR_VERSION)
    return model, stats


PASS = GraphPass("fuse_conv_activation", "mark Conv + bias + activation as one fused unit (node metadata)", _run)

