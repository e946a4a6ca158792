"""fold_conv_add: ``Add(Conv(x, W[, b]), c)`` with a per-channel constant ``c`` becomes the Conv's bias.

Paddle2ONNX writes every convolution bias this way (``Add(conv, Reshape(b, [1,C,1,1]))``); after
cleanup folds the Reshape, this makes them ordinary biased Convs the later fusions recognise.
"""

from __future__ import annotations

from mnv3compile.passes.base import rule_pass
from mnv3compile.passes.conv import conv_weight_and_bias, per_channel, rebuild_conv
from mnv3compile.passes.matcher import Const, Match, RewriteBuilder, Rule, Var, op


def _check(m: Match) -> str | None:
    conv = m.nodes["conv"]
    parts = conv_weight_and_bias(conv)
    if parts is None:
        return "conv weights are not constant"
    if per_channel(m.const("c"), parts[0].shape[0]) is None:
        return "added constant is not per output channel"
    return None


def _rewrite(m: Match, b: RewriteBuilder):
    conv = m.nodes["conv"]
    weight, bias = conv_weight_and_bias(conv)
    added = per_channel(m.const("c"), weight.shape[0])
    return rebuild_conv(b, conv.graph, conv, weight, bias + added, conv.name or "conv")


RULES = [
    Rule("conv+add", op.Add(op.Conv(Var("x"), Const("w"), name="conv"), Const("c")), _rewrite, _check),
    Rule("conv(bias)+add", op.Add(op.Conv(Var("x"), Const("w"), Const("b"), name="conv"), Const("c")), _rewrite, _check),
]
PASS = rule_pass("fold_conv_add", "fold a per-channel constant Add after a Conv into its bias", RULES)
