"""fold_conv_add: ``Add(Conv(x, W[, b]), c)`` with a per-channel constant ``c`` becomes the Conv's bias
(the same for an ungrouped ConvTranspose).

Paddle2ONNX writes every convolution bias this way (``Add(conv, Reshape(b, [1,C,1,1]))``); after
cleanup folds the Reshape, this makes them ordinary biased Convs the later fusions recognise.
The ``+ 3`` of a hard-sigmoid (``Clip(conv + 3, 0, 6)``) is left alone: it is part of that form.
onnxscript's ``conv_affine_fusion_rule`` needs both a scale and an offset (``Conv * a + b``) and
leaves this spelling alone.
"""

from __future__ import annotations

from mnv3compile.passes.base import rule_pass
from mnv3compile.passes.conv import ConvThenConstant, conv_weight_and_bias, per_channel, rebuild_conv
from mnv3compile.passes.graph_edit import constant_array, scalar_close
from mnv3compile.passes.rules import SKIP


class FoldConvAdd(ConvThenConstant):
    op_type, constant_role = "Add", "added constant"

    def refusal(self, x, c, conv_out):
        users = self.root.outputs[0].uses()
        if scalar_close(c, 3.0) and users and all(u.op_type == "Clip" for u, _ in users):
            return SKIP  # Clip(conv + 3, 0, 6) starts a hard-sigmoid: its +3 stays where the later passes look
        return super().refusal(x, c, conv_out)

    def rewrite(self, op, x, c, conv_out):
        conv = conv_out.producer()
        weight, bias = conv_weight_and_bias(conv)
        return rebuild_conv(self, op, conv, weight, bias + per_channel(constant_array(c), bias.size), conv.name or "conv")


RULES = [FoldConvAdd.sweep("conv+add", "Conv"), FoldConvAdd.sweep("convtranspose+add", "ConvTranspose")]
PASS = rule_pass("fold_conv_add", "fold a per-channel constant Add after a Conv into its bias", RULES)
