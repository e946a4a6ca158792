"""fold_conv_add: ``Add(Conv(x, W[, b]), c)`` with a per-channel constant ``c`` becomes the Conv's bias
(the same for an ungrouped ConvTranspose).

Paddle2ONNX writes every convolution bias this way (``Add(conv, Reshape(b, [1,C,1,1]))``); after
cleanup folds the Reshape, this makes them ordinary biased Convs the later fusions recognise.
The ``+ 3`` of a hard-sigmoid (``Clip(conv + 3, 0, 6)``) is left alone: it is part of that form.
"""

from __future__ import annotations

from mnv3compile.passes.base import rule_pass
from mnv3compile.passes.conv import conv_weight_and_bias, per_channel, rebuild_conv
from mnv3compile.passes.matcher import Const, Match, RewriteBuilder, Rule, Var, is_scalar_like, op


def _check(m: Match) -> str | None:
    conv = m.nodes["conv"]
    parts = conv_weight_and_bias(conv)
    if parts is None:
        return "conv weights are not constant (or a grouped ConvTranspose)"
    if per_channel(m.const("c"), parts[1].size) is None:
        return "added constant is not per output channel"
    return None


def _is_hard_sigmoid_offset(m: Match) -> bool:
    """``Clip(conv + 3, 0, 6)`` is the start of a hard-sigmoid: keep its +3 where the later passes
    and the quantizer look for it (folding it would hide the canonical form)."""
    users = m.root.outputs[0].uses()
    return is_scalar_like(m.const("c"), 3.0) and bool(users) and all(u.op_type == "Clip" for u, _ in users)


def _rewrite(m: Match, b: RewriteBuilder):
    conv = m.nodes["conv"]
    weight, bias = conv_weight_and_bias(conv)
    added = per_channel(m.const("c"), bias.size)
    return rebuild_conv(b, conv.graph, conv, weight, bias + added, conv.name or "conv")


RULES = [
    Rule(f"{name}+add", op.Add(getattr(op, kind)(Var("x"), Const("w"), name="conv"), Const("c")), _rewrite, _check,
         when=lambda m: not _is_hard_sigmoid_offset(m))
    for kind, name in (("Conv", "conv"), ("ConvTranspose", "convtranspose"))
] + [
    Rule(f"{name}(bias)+add", op.Add(getattr(op, kind)(Var("x"), Const("w"), Const("b"), name="conv"), Const("c")),
         _rewrite, _check, when=lambda m: not _is_hard_sigmoid_offset(m))
    for kind, name in (("Conv", "conv"), ("ConvTranspose", "convtranspose"))
]
PASS = rule_pass("fold_conv_add", "fold a per-channel constant Add after a Conv into its bias", RULES)
