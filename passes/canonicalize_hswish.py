"""canonicalize_hswish: every spelling of h-swish becomes the single op ``HardSwish(x)``.

One op is the canonical form because every later stage treats h-swish as one unit: the quantizer
gives it one output scale, TVM imports it as one fused elementwise tail of the conv.
Spellings (operands of Mul/Add in either order):

- onnxscript's kept rules: ``x * HardSigmoid(x)`` (1/6, 1/2) and ``(x * Clip(x+3,0,6)) / 6``
  (Paddle's). Its third rule of the set, ``Clip(x+3,0,6) / 6 -> HardSigmoid``, is left out: our
  canonical h-sigmoid is the ReLU6 form (``hardsigmoid_to_relu6``);
- ours, which the library lacks: ``x * (Clip(x+3,0,6) * 1/6)`` (the form hardsigmoid_to_relu6
  leaves), ``(x * Clip(x+3,0,6)) * 1/6`` and ``x * (Clip(x+3,0,6) / 6)``.
"""

from __future__ import annotations

from onnxscript.rewriter import RewriteRuleSet
from onnxscript.rewriter.rules.common import fuse_hardswish_rules

from mnv3compile.passes.base import rule_pass
from mnv3compile.passes.canonical import SIXTH, is_relu6_of_x_plus_3, relu6_of_x_plus_3
from mnv3compile.passes.graph_edit import scalar_close
from mnv3compile.passes.rules import SKIP, Rule

LIBRARY_RULES = RewriteRuleSet([rule for rule in fuse_hardswish_rules() if rule.name != "HardSigmoidFusion"])
# What the library's rules are called where we name spellings (the optimize report's census).
SPELLINGS = {"HardSwishFusionFromHardSigmoid": "x*HardSigmoid(x)", "HardSwishFusion": "(x*relu6(x+3))/6"}


class Relu6HSwish(Rule):
    """``x * relu6(x + 3)`` scaled by 1/6 in one of three places (``spelling``)."""

    def pattern(self, op, x, three, zero, six, c):
        relu6 = relu6_of_x_plus_3(op, x, three, zero, six)
        if self.spelling == "x*(relu6*c)":
            return op.Mul(x, op.Mul(relu6, c))
        if self.spelling == "(x*relu6)*c":
            return op.Mul(op.Mul(x, relu6), c)
        return op.Mul(x, op.Div(relu6, c))  # x*(relu6/c)

    def refusal(self, x, three, zero, six, c):
        scale = 6.0 if self.spelling == "x*(relu6/c)" else float(SIXTH)
        return None if is_relu6_of_x_plus_3(three, zero, six) and scalar_close(c, scale) else SKIP

    def rewrite(self, op, x, three, zero, six, c):
        return op.HardSwish(x, _name=self.node_name("hardswish"))


OUR_RULES = [
    Relu6HSwish.sweep("x*(relu6(x+3)*1/6)", "x*(relu6*c)"),
    Relu6HSwish.sweep("(x*relu6(x+3))*1/6", "(x*relu6)*c"),
    Relu6HSwish.sweep("x*(relu6(x+3)/6)", "x*(relu6/c)"),
]
RULES = [LIBRARY_RULES, *OUR_RULES]
PASS = rule_pass("canonicalize_hswish", "rewrite every spelling of h-swish as HardSwish(x)", RULES)
