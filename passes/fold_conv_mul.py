"""fold_conv_mul: ``Mul(Conv(x, W[, b]), c)`` with a per-channel (or scalar) constant ``c``
becomes a Conv with ``W * c`` and ``b * c`` (the same for an ungrouped ConvTranspose).

PP-LCNetV3 (the backbone of PaddleOCR's PP-OCRv4 recognizer and detector) scales every conv
output by a learnable scalar before its activation (``x * a + b``); folded here and the ``+ b``
by ``fold_conv_add`` next, the conv, its bias and the h-swish become one fused unit instead of a
unit and two int8 table passes over the tensor. onnxscript's ``conv_affine_fusion_rule`` matches
``Conv * a + b`` only with scalar a and b and a bias-less Conv; this covers per-channel constants,
biased Convs and a Mul without an Add.
"""

from __future__ import annotations

import numpy as np

from mnv3compile.passes.base import rule_pass
from mnv3compile.passes.conv import ConvThenConstant, conv_weight_and_bias, per_channel, rebuild_conv, scale_outputs
from mnv3compile.passes.graph_edit import constant_array


class FoldConvMul(ConvThenConstant):
    op_type, constant_role = "Mul", "multiplier"

    def rewrite(self, op, x, c, conv_out):
        conv = conv_out.producer()
        weight, bias = conv_weight_and_bias(conv)
        # In float64, rounded once to float32 when the conv is rebuilt.
        k = per_channel(constant_array(c), bias.size).astype(np.float64)
        return rebuild_conv(self, op, conv, scale_outputs(conv, weight.astype(np.float64), k), bias * k,
                            conv.name or "conv")


RULES = [FoldConvMul.sweep("conv*constant", "Conv"), FoldConvMul.sweep("convtranspose*constant", "ConvTranspose")]
PASS = rule_pass("fold_conv_mul", "fold a per-channel constant Mul after a Conv into its weights and bias", RULES)
