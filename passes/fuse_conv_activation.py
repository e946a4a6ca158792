"""fuse_conv_activation: mark each Conv with its bias and activation as one fused unit.

Representation (chosen so the model still runs in onnxruntime and still imports into TVM): the
nodes stay standard ONNX ops and carry node metadata (``NodeProto.metadata_props``, IR >= 10)

    mnv3compile.unit        = the unit's name (the Conv's node name)   on every node of the unit
    mnv3compile.role        = "conv" | "activation"
    mnv3compile.activation  = none | relu | relu6 | hswish | hsigmoid | sigmoid   (on the Conv)

A unit is a Conv (weights and bias constant) followed by at most one activation that alone reads
the Conv's output: Relu, Clip(0, 6), HardSwish, the canonical h-sigmoid
``Mul(Clip(Add(conv,3),0,6),1/6)`` or Sigmoid. ``read_units`` recovers the units from a model and
``check_units`` proves the annotation still describes the graph (the quantizer and the TVM backend
call it before trusting it).
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
import onnx_ir as ir

from mnv3compile.passes.base import GraphPass
from mnv3compile.passes.hardsigmoid_to_relu6 import relu6_hsigmoid_pattern
from mnv3compile.passes.matcher import Const, PassStats, Var, find_match, op

UNIT, ROLE, ACTIVATION = "mnv3compile.unit", "mnv3compile.role", "mnv3compile.activation"
MIN_IR_VERSION = 10  # node metadata_props

_y = Var("y")
ACTIVATIONS = [  # (kind, pattern rooted at the activation's last node, reading the conv output y)
    ("relu", op.Relu(_y)),
    ("relu6", op.Clip(_y, Const("lo", 0.0), Const("hi", 6.0))),
    ("hswish", op.HardSwish(_y)),
    ("hsigmoid", relu6_hsigmoid_pattern(_y)),
    ("sigmoid", op.Sigmoid(_y)),
]


def _activation_of(conv: ir.Node) -> tuple[str, list[ir.Node]]:
    y = conv.outputs[0]
    if y.is_graph_output():
        return "none", []
    users = {id(u): u for u, _ in y.uses()}
    for kind, pattern in ACTIVATIONS:
        for root in _roots_near(list(users.values())):
            m = find_match(pattern, root)
            if m is not None and m.values["y"] is y and set(users) <= set(map(id, m.matched_nodes)):
                return kind, m.matched_nodes
    return "none", []


def _roots_near(users: list[ir.Node]) -> list[ir.Node]:
    """Candidate last nodes of an activation: the users and (for the 3-node h-sigmoid) 2 hops on."""
    found, frontier = [], users
    for _ in range(3):
        found += frontier
        frontier = [u for n in frontier for out in n.outputs for u, _ in out.uses()]
    return found


def _run(model: ir.Model) -> tuple[ir.Model, PassStats]:
    stats = PassStats()
    for index, conv in enumerate(n for n in model.graph if n.op_type == "Conv"):
        stats.matched += 1
        if ir.convenience.get_const_tensor(conv.inputs[1]) is None:
            stats.refused["conv weights are not constant"] = stats.refused.get("conv weights are not constant", 0) + 1
            continue
        kind, activation_nodes = _activation_of(conv)
        unit = conv.name or f"conv_{index}"
        conv.metadata_props.update({UNIT: unit, ROLE: "conv", ACTIVATION: kind})
        for node in activation_nodes:
            node.metadata_props.update({UNIT: unit, ROLE: "activation"})
        stats.rewritten += 1
    model.ir_version = max(model.ir_version, MIN_IR_VERSION)
    return model, stats


PASS = GraphPass("fuse_conv_activation", "mark Conv + bias + activation as one fused unit (node metadata)", _run)


@dataclass(frozen=True)
class FusedUnit:
    name: str
    conv: str  # node name of the Conv
    activation: str
    nodes: tuple[str, ...]  # node names, Conv first
    output: str  # the unit's output tensor


def _metadata(node: onnx.NodeProto) -> dict[str, str]:
    return {p.key: p.value for p in node.metadata_props}


def read_units(model: onnx.ModelProto) -> list[FusedUnit]:
    """The fused units recorded in ``model``, in graph order."""
    members: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        unit = _metadata(node).get(UNIT)
        if unit is not None:
            members.setdefault(unit, []).append(node)
    units = []
    for name, nodes in members.items():
        conv = next(n for n in nodes if _metadata(n).get(ROLE) == "conv")
        units.append(FusedUnit(name, conv.name, _metadata(conv)[ACTIVATION],
                               tuple(n.name for n in nodes), nodes[-1].output[0]))
    return units


def check_units(model: onnx.ModelProto) -> list[str]:
    """Problems with the annotation (empty when it describes the graph); every Conv must be in a unit."""
    problems = []
    by_unit: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        unit = _metadata(node).get(UNIT)
        if node.op_type == "Conv" and unit is None:
            problems.append(f"Conv {node.name!r} is in no fused unit")
        if unit is not None:
            by_unit.setdefault(unit, []).append(node)
    outputs = {o.name for o in model.graph.output}
    for unit, nodes in by_unit.items():
        convs = [n for n in nodes if _metadata(n).get(ROLE) == "conv"]
        if len(convs) != 1 or convs[0] is not nodes[0]:
            problems.append(f"unit {unit!r} does not start with exactly one Conv")
            continue
        inside = {o for n in nodes for o in n.output}
        last = nodes[-1].output[0]
        member_ids = {id(n) for n in nodes}
        for other in model.graph.node:
            if id(other) in member_ids:
                continue
            leaked = [i for i in other.input if i in inside and i != last]
            if leaked:
                problems.append(f"unit {unit!r}: {other.name!r} reads its internal tensor {leaked[0]!r}")
        if (inside - {last}) & outputs:
            problems.append(f"unit {unit!r}: an internal tensor is a graph output")
    return problems
