"""Which tensors the quantizer gives int8 parameters, and how each gets its range.

The model is first in canonical form (``mnv3compile.passes``). Every op then belongs to exactly one
*group* whose output is quantized: a fused Conv unit (Conv + bias + activation, activation in its
epilogue), a canonical h-sigmoid chain ``Mul(Clip(Add(x,3),0,6),1/6)``, or a single op. Inside a
group nothing is quantized: the integer kernel computes the whole group. Every op consumes int8
(dequantized) tensors and produces an int8 tensor: there are no float islands.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx_ir as ir

from mnv3compile.errors import NotCanonicalError, UserError
from mnv3compile.passes.canonical import ACTIVATION, ROLE, UNIT, hsigmoid_nodes

CALIBRATED, UNIT_INTERVAL, SAME_AS_INPUT = "calibrated", "unit-interval", "same-as-input"

# How the output range of each single op is found. Anything else is refused by name.
OP_RANGES = {
    "Gemm": CALIBRATED, "MatMul": CALIBRATED, "ConvTranspose": CALIBRATED, "HardSwish": CALIBRATED, "Relu": CALIBRATED,
    "Clip": CALIBRATED, "Add": CALIBRATED, "Mul": CALIBRATED, "GlobalAveragePool": CALIBRATED,
    "AveragePool": CALIBRATED, "Concat": CALIBRATED, "Sub": CALIBRATED, "Min": CALIBRATED, "Exp": CALIBRATED,
    "ReduceMean": CALIBRATED, "LayerNormalization": CALIBRATED,
    # [0, 1] outputs get the fixed 1/256 scale (see qparams).
    "Sigmoid": UNIT_INTERVAL, "Softmax": UNIT_INTERVAL,
    # Data movement and max: the output takes its input's parameters, so no requantization.
    "MaxPool": SAME_AS_INPUT, "Flatten": SAME_AS_INPUT, "Reshape": SAME_AS_INPUT, "Resize": SAME_AS_INPUT,
    "Squeeze": SAME_AS_INPUT, "Unsqueeze": SAME_AS_INPUT, "Transpose": SAME_AS_INPUT, "DepthToSpace": SAME_AS_INPUT,
    "Slice": SAME_AS_INPUT,
}
# Inputs that are shapes/indices/bounds, never quantized, per op (by position).
NON_DATA_INPUTS = {"Reshape": {1}, "Resize": {1, 2, 3}, "Clip": {1, 2}, "Squeeze": {1}, "Unsqueeze": {1},
                   "Slice": {1, 2, 3, 4}, "ReduceMean": {1},
                   # LayerNormalization's scale and bias stay float: applied in its kernel's epilogue.
                   "LayerNormalization": {1, 2}}
# Inputs that carry weights quantized per output channel: op -> (input index, channel axis).
# ConvTranspose's weight is C_in x C_out/group x kh x kw: its output channels are axis 1.
WEIGHT_INPUTS = {"Conv": (1, 0), "MatMul": (1, 1), "ConvTranspose": (1, 1)}


# What --keep-float-output leaves in float when it produces a model output: the last op of a
# classifier or a detector, whose int8 output (steps of 1/256) rounds small probabilities to 0.
FLOAT_OUTPUT_OPS = ("Softmax", "Sigmoid")


@dataclass
class Group:
    kind: str  # "conv:<activation>", "hsigmoid" or the op type
    nodes: list[ir.Node]
    output: ir.Value
    range_rule: str

    @property
    def name(self) -> str:
        return self.nodes[0].name or self.output.name

    @property
    def head(self) -> ir.Node:
        return self.nodes[0]


def _unit_groups(graph: ir.Graph) -> tuple[list[Group], set[int]]:
    members: dict[str, list[ir.Node]] = {}
    for node in graph:
        unit = node.metadata_props.get(UNIT)
        if unit is not None:
            members.setdefault(unit, []).append(node)
    groups, covered = [], set()
    for nodes in members.values():
        conv = nodes[0]
        if conv.metadata_props.get(ROLE) != "conv":
            raise NotCanonicalError(f"fused unit of node {conv.name!r} does not start with its Conv")
        activation = conv.metadata_props.get(ACTIVATION, "none")
        rule = UNIT_INTERVAL if activation in ("hsigmoid", "sigmoid") else CALIBRATED
        groups.append(Group(f"conv:{activation}", nodes, nodes[-1].outputs[0], rule))
        covered |= {id(n) for n in nodes}
    return groups, covered


def plan_groups(model: ir.Model) -> list[Group]:
    """All groups in graph order. Raises UserError for an op the quantizer does not know."""
    graph = model.graph
    groups, covered = _unit_groups(graph)
    for node in graph:
        if id(node) in covered:
            continue
        found = hsigmoid_nodes(model, node)
        if found is not None and not any(id(n) in covered for n in found[1]):
            groups.append(Group("hsigmoid", found[1], node.outputs[0], UNIT_INTERVAL))
            covered |= {id(n) for n in found[1]}
    for node in graph:
        if id(node) in covered:
            continue
        if node.op_type == "Conv":
            raise NotCanonicalError(f"Conv {node.name!r} is in no fused unit")
        rule = OP_RANGES.get(node.op_type)
        if rule is None or node.domain not in ("", "ai.onnx"):
            raise UserError(f"the quantizer does not know op {node.op_type!r} (node {node.name!r}); "
                            f"it handles Conv units and {', '.join(sorted(OP_RANGES))}")
        groups.append(Group(node.op_type, [node], node.outputs[0], rule))
    order = {id(n): i for i, n in enumerate(graph)}
    return sorted(groups, key=lambda g: order[id(g.nodes[-1])])


def split_float_outputs(groups: list[Group]) -> tuple[list[Group], list[Group]]:
    """(groups still quantized, groups left float): a single Softmax or Sigmoid whose output is a
    model output runs in float on its dequantized int8 input."""
    kept = [g for g in groups if len(g.nodes) == 1 and g.head.op_type in FLOAT_OUTPUT_OPS and g.output.is_graph_output()]
    kept_ids = {id(g) for g in kept}
    return [g for g in groups if id(g) not in kept_ids], kept


def data_inputs(node: ir.Node) -> list[tuple[int, ir.Value]]:
    """(position, value) of the inputs that carry data (not weights, biases, shapes or bounds)."""
    skip = NON_DATA_INPUTS.get(node.op_type, set())
    if node.op_type in ("Conv", "Gemm", "ConvTranspose"):
        skip = {1, 2}
    elif node.op_type in WEIGHT_INPUTS:
        skip = {WEIGHT_INPUTS[node.op_type][0]}
    # A MatMul of two activations (attention's Q.K^T) reads both as data.
    skip = {i for i in skip if node.op_type != "MatMul" or node.inputs[i].const_value is not None}
    return [(i, v) for i, v in enumerate(node.inputs) if v is not None and i not in skip]
