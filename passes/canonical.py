"""The canonical form: what ``optimize`` produces and the quantizer and the TVM backend consume.

One module so the producer and both consumers read the same definition:

- h-sigmoid is spelled ``Mul(Clip(Add(x, 3), 0, 6), 1/6)`` with 1/6 rounded to float32 (``SIXTH``);
  ``hsigmoid_nodes`` finds one rooted at a node;
- h-swish is the single op ``HardSwish``;
- each Conv with its bias and at most one activation is a *fused unit*, recorded in node metadata
  (``NodeProto.metadata_props``, IR >= 10) on every node of the unit:

      mnv3compile.unit        = the unit's name (the Conv's node name)
      mnv3compile.role        = "conv" | "activation"
      mnv3compile.activation  = none | relu | relu6 | hswish | hsigmoid | sigmoid   (on the Conv)

  ``read_units`` recovers them and ``check_units`` proves the annotation still describes the graph
  (the quantizer and the backend call it before trusting it: ``require_units``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ir as ir
from onnxscript.rewriter import pattern as rewriter_pattern

from mnv3compile.errors import NotCanonicalError
from mnv3compile.passes.graph_edit import scalar_close

UNIT, ROLE, ACTIVATION = "mnv3compile.unit", "mnv3compile.role", "mnv3compile.activation"
MIN_IR_VERSION = 10  # node metadata_props
SIXTH = np.float32(1.0 / 6.0)
ACTIVATION_KINDS = ("none", "relu", "relu6", "hswish", "hsigmoid", "sigmoid")


def relu6_of_x_plus_3(op, x, three, zero, six):
    """The pattern ``Clip(Add(x, three), zero, six)``; ``is_relu6_of_x_plus_3`` checks its constants."""
    return op.Clip(op.Add(x, three), zero, six)


def is_relu6_of_x_plus_3(three, zero, six) -> bool:
    return scalar_close(three, 3.0) and scalar_close(zero, 0.0) and scalar_close(six, 6.0)


class HSigmoidPattern(rewriter_pattern.PatternBase):
    """``Mul(Clip(Add(x, 3), 0, 6), 1/6)``, either operand order of Add and Mul."""

    def pattern(self, op, x, three, zero, six, sixth):
        return op.Mul(relu6_of_x_plus_3(op, x, three, zero, six), sixth)

    def check(self, context, x, three, zero, six, sixth):
        result = rewriter_pattern.MatchResult()
        constants_ok = is_relu6_of_x_plus_3(three, zero, six) and scalar_close(sixth, float(SIXTH))
        return result if constants_ok else result.fail("not the constants 3, 0, 6 and 1/6")


_HSIGMOID = HSigmoidPattern()
# The library commutes operands of rules, not of bare patterns: a rule that never rewrites, for matching.
_HSIGMOID_SPELLINGS = rewriter_pattern.RewriteRule(_HSIGMOID.pattern, lambda op, **_: None, _HSIGMOID.check,
                                                   name="hsigmoid").commute()


def hsigmoid_nodes(model: ir.Model, root: ir.Node) -> tuple[ir.Value, list[ir.Node]] | None:
    """(x, the three nodes in graph order) when ``root`` ends a canonical h-sigmoid whose interior
    nothing else reads, else None."""
    if root.op_type != "Mul":
        return None
    for spelling in _HSIGMOID_SPELLINGS:
        match = spelling.match(model, root.graph, root)
        if match:
            nodes = set(match.nodes)
            return match.bindings["x"], [n for n in root.graph if n in nodes]
    return None


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
        if _metadata(convs[0]).get(ACTIVATION) not in ACTIVATION_KINDS:
            problems.append(f"unit {unit!r}: unknown activation {_metadata(convs[0]).get(ACTIVATION)!r}")
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


def require_units(model: onnx.ModelProto, consumer: str) -> None:
    """Raise NotCanonicalError (naming ``consumer``) when the unit annotation does not describe
    ``model``: the consumer would otherwise trust a stale annotation."""
    problems = check_units(model)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise NotCanonicalError(f"{consumer} needs the canonical form: {problems[0]}{more}")
