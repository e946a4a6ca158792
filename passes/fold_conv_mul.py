"""fold_conv_mul: ``Mul(Conv(x, W[, b]), c)`` with a per-channel (or scalar) constant ``c``
becomes a Conv with ``W * c`` and ``b * c`` (the same for an ungrouped ConvTranspose).

PP-LCNetV3 (the backbone of PaddleOCR's PP-OCRv4 recognizer and detector) scales every conv
output by a learnable scalar before its activation (``x * a + b``); folded here and the ``+ b``
by ``fold_conv_add`` next, the conv, its bias and the h-swish become one fused unit instead of a
unit and two int8 table passes over the tensor.
"""

from __future__ import annotations

import numpy as np

from mnv3compile.passes.base import rule_pass
from mnv3compile.passes.conv import conv_weight_and_bias, per_channel, rebuild_conv, scale_outputs
from mnv3compile.passes.matcher import Const, Match, RewriteBuilder, Rule, Var, op


def _check(m: Match) -> str | None:
    parts = conv_weight_and_bias(m.nodes["conv"])
    if parts is None:
        return "conv weights are not constant (or a grouped ConvTranspose)"
    if per_channel(m.const("c"), parts[1].size) is None:
        return "multiplier is not per output channel"
    return None


def _rewrite(m: Match, b: RewriteBuilder):
    conv = m.nodes["conv"]
    weight, bias = conv_weight_and_bias(conv)
    # In float64, rounded once to float32 when the conv is rebuilt.
    k = per_channel(m.const("c"), bias.size).astype(np.float64)
    return rebuild_conv(b, conv.graph, conv, scale_outputs(conv, weight.astype(np.float64), k), bias * k,
                        conv.name or "conv")


RULES = [
    Rule(f"{name}*constant", op.Mul(getattr(op, kind)(*inputs, name="conv"), Const("c")), _rewrite, _check)
    for kind, name in (("Conv", "conv"), ("ConvTranspose", "convtranspose"))
    for inputs in ((Var("x"), Const("w")), (Var("x"), Const("w"), Const("b")))
]
PASS = rule_pass("fold_conv_mul", "fold a per-channel constant Mul after a Conv into its weights and bias", RULES)
