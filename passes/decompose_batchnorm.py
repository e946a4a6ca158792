"""decompose_batchnorm: a BatchNormalization that no Conv precedes becomes ``Add(Mul(x, k), t)``.

k = scale / sqrt(var + eps), t = shift - mean * k, shaped to broadcast over the channel axis.
Runs after fold_batchnorm so that only BNs that could not be folded reach it; later stages then
never see BatchNormalization.
"""

from __future__ import annotations

import numpy as np

from mnv3compile.passes.base import rule_pass
from mnv3compile.passes.fold_batchnorm import batchnorm_affine, training_mode_reason
from mnv3compile.passes.matcher import Const, Match, RewriteBuilder, Rule, Var, op


def _rank(m: Match) -> int | None:
    shape = m.values["x"].shape
    return None if shape is None else len(shape)


def _check(m: Match) -> str | None:
    reason = training_mode_reason(m.nodes["bn"])
    if reason is not None:
        return reason
    if _rank(m) is None:
        return "input rank unknown"
    return None


def _rewrite(m: Match, b: RewriteBuilder):
    graph = m.nodes["bn"].graph
    k, t = batchnorm_affine(m)
    broadcast = (-1,) + (1,) * (_rank(m) - 2)
    k_value = b.initializer(graph, k.reshape(broadcast).astype(np.float32), "scale")
    t_value = b.initializer(graph, t.reshape(broadcast).astype(np.float32), "shift")
    return b.op("Add", [b.op("Mul", [m.values["x"], k_value], "mul"), t_value], "add")


RULES = [Rule("bn", op.BatchNormalization(Var("x"), Const("scale"), Const("shift"), Const("mean"),
                                          Const("var"), name="bn"), _rewrite, _check)]
PASS = rule_pass("decompose_batchnorm", "turn BatchNormalization not after a Conv into Mul+Add", RULES)
