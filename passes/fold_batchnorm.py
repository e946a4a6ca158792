"""fold_batchnorm: ``BatchNormalization(Conv(x, W[, b]))`` -> ``Conv(x, W', b')``, and the same
for an ungrouped ConvTranspose (PaddleOCR's DB head).

With k = scale / sqrt(var + eps) per output channel: W' = W * k along the output channels (a
Conv's first axis, any group count, depthwise included; a ConvTranspose's second) and
b' = (b - mean) * k + shift.
Only a Conv whose output nothing else reads is folded; an Identity or Dropout in between is gone
after cleanup, any other op (Relu, Reshape...) makes the fold inexact and is left alone.
"""

from __future__ import annotations

import numpy as np

from mnv3compile.passes.base import rule_pass
from mnv3compile.passes.conv import conv_weight_and_bias, rebuild_conv, scale_outputs
from mnv3compile.passes.matcher import Const, Match, RewriteBuilder, Rule, Var, op


def training_mode_reason(bn) -> str | None:
    """Why a BatchNormalization cannot be treated as an inference affine map, or None."""
    if len(bn.outputs) > 1 and any(v.uses() or v.is_graph_output() for v in bn.outputs[1:]):
        return "BatchNormalization in training mode (running statistics are read)"
    return None


def batchnorm_affine(m: Match) -> tuple[np.ndarray, np.ndarray]:
    """(k, t) with BN(x) = k * x + t per channel, in float64."""
    bn = m.nodes["bn"]
    eps = bn.attributes.get_float("epsilon", 1e-5)
    scale, shift, mean, var = (m.const(key).astype(np.float64) for key in ("scale", "shift", "mean", "var"))
    k = scale / np.sqrt(var + eps)
    return k, shift - mean * k


def _check(m: Match) -> str | None:
    reason = training_mode_reason(m.nodes["bn"])
    if reason is not None:
        return reason
    if conv_weight_and_bias(m.nodes["conv"]) is None:
        return "conv weights are not constant (or a grouped ConvTranspose)"
    return None


def _rewrite(m: Match, b: RewriteBuilder):
    conv = m.nodes["conv"]
    weight, bias = (a.astype(np.float64) for a in conv_weight_and_bias(conv))
    k, t = batchnorm_affine(m)
    return rebuild_conv(b, conv.graph, conv, scale_outputs(conv, weight, k), bias * k + t, conv.name or "conv")


def _bn(conv):
    return op.BatchNormalization(conv, Const("scale"), Const("shift"), Const("mean"), Const("var"), name="bn")


RULES = [
    Rule("conv+bn", _bn(op.Conv(Var("x"), Const("w"), name="conv")), _rewrite, _check),
    Rule("conv(bias)+bn", _bn(op.Conv(Var("x"), Const("w"), Const("b"), name="conv")), _rewrite, _check),
    Rule("convtranspose+bn", _bn(op.ConvTranspose(Var("x"), Const("w"), name="conv")), _rewrite, _check),
    Rule("convtranspose(bias)+bn", _bn(op.ConvTranspose(Var("x"), Const("w"), Const("b"), name="conv")), _rewrite,
         _check),
]
PASS = rule_pass("fold_batchnorm", "fold BatchNormalization into the Conv (or ConvTranspose) before it", RULES)
