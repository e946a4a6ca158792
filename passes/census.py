"""What is left to canonicalize: counts of non-canonical spellings a model still contains.

It asks the rewrite rules themselves (their patterns and checks, without rewriting), so the
census and the passes can never disagree about what "canonical" means.
"""

from __future__ import annotations

import onnx
import onnx_ir as ir
from onnx_ir.passes import common as ir_passes

from mnv3compile.passes import canonicalize_hswish, hardsigmoid_to_relu6
from mnv3compile.passes.cleanup import fold_constants
from mnv3compile.passes.rules import sweep_rules


def non_canonical(model: onnx.ModelProto) -> dict[str, int]:
    """{spelling: count} of BatchNormalization and h-sigmoid/h-swish forms other than the canonical."""
    ir_model = ir.from_proto(model)
    # Exporters hold constants in Constant (and Cast-of-Constant) nodes; the rules see initializers.
    ir_passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(ir_model)
    graph = ir_model.graph
    fold_constants(graph, ir_model.opset_imports.get("", 17))
    found: dict[str, int] = {}
    batchnorms = sum(1 for n in graph if n.op_type == "BatchNormalization")
    if batchnorms:
        found["BatchNormalization"] = batchnorms
    # A spelling's commuted variants can match at the same node: each node counts once.
    roots: dict[str, set[int]] = {}
    for sweep in [*hardsigmoid_to_relu6.RULES, *canonicalize_hswish.RULES]:
        for rule in sweep_rules(sweep):
            name = canonicalize_hswish.SPELLINGS.get(rule.name, rule.name)
            roots.setdefault(name, set()).update(id(node) for node in graph if rule.match(ir_model, graph, node))
    return found | {name: len(ids) for name, ids in roots.items() if ids}
