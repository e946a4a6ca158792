"""canonicalize_hswish: every spelling of h-swish becomes the single op ``HardSwish(x)``.

Spellings recognised (operands of Mul/Add in either order): ``x * HardSigmoid(x)`` (1/6, 1/2),
``x * (Clip(x+3,0,6) * 1/6)`` (the form hardsigmoid_to_relu6 leaves), ``(x * Clip(x+3,0,6)) * 1/6``,
``(x * Clip(x+3,0,6)) / 6`` (Paddle's) and ``x * (Clip(x+3,0,6) / 6)``. One op is the canonical
form because every later stage treats h-swish as one unit: the quantizer gives it one output scale,
TVM imports it as one fused elementwise tail of the conv.
"""

from __future__ import annotations

import numpy as np

from mnv3compile.passes.base import rule_pass
from mnv3compile.passes.matcher import Const, Match, RewriteBuilder, Rule, Var, op

SIXTH = float(np.float32(1.0 / 6.0))


def _to_hardswish(m: Match, b: RewriteBuilder):
    return b.op("HardSwish", [m.values["x"]], "hardswish")


def _is_mobilenet_hardsigmoid(m: Match) -> str | None:
    node = m.nodes["hs"]
    alpha, beta = node.attributes.get_float("alpha", 0.2), node.attributes.get_float("beta", 0.5)
    if abs(alpha - 1 / 6) > 1e-6 or abs(beta - 0.5) > 1e-6:
        return f"HardSigmoid(alpha={alpha:g}, beta={beta:g}) is not h-swish's"
    return None


x = Var("x")
RELU6 = op.Clip(op.Add(x, Const("three", 3.0)), Const("zero", 0.0), Const("six", 6.0))
RULES = [
    Rule("x*HardSigmoid(x)", op.Mul(x, op.HardSigmoid(x, name="hs")), _to_hardswish, _is_mobilenet_hardsigmoid),
    Rule("x*(relu6(x+3)*1/6)", op.Mul(x, op.Mul(RELU6, Const("c", SIXTH))), _to_hardswish),
    Rule("(x*relu6(x+3))*1/6", op.Mul(op.Mul(x, RELU6), Const("c", SIXTH)), _to_hardswish),
    Rule("(x*relu6(x+3))/6", op.Div(op.Mul(x, RELU6), Const("c", 6.0)), _to_hardswish),
    Rule("x*(relu6(x+3)/6)", op.Mul(x, op.Div(RELU6, Const("c", 6.0))), _to_hardswish),
]
PASS = rule_pass("canonicalize_hswish", "rewrite every spelling of h-swish as HardSwish(x)", RULES)
