"""transposed_conv_to_depth_to_space: a ConvTranspose whose kernel equals its stride (s x s, no
padding, no overlap: PaddleOCR's DB head upsamples 2x this way) is a 1x1 Conv to C_out * s * s
channels followed by ``DepthToSpace(s, mode="CRD")``.

Each input pixel then writes its own s x s output block, y[f, s*i + a, s*j + b] = sum_c x[c, i, j]
W[c, f, a, b] + bias[f]: channel f*s*s + a*s + b of the 1x1 conv, rearranged by DepthToSpace. The
1x1 conv is the network's most optimized kernel (pointwise templates, int8 dot products with the
zero point in the bias), where TVM's transposed conv is a dilate + pad + conv it schedules poorly
(most of the detector's fp32 inference at 640x640). onnxscript has no such rule.
"""

from __future__ import annotations

import numpy as np

from mnv3compile.passes.base import rule_pass
from mnv3compile.passes.conv import conv_weight_and_bias
from mnv3compile.passes.rules import Rule


class TransposedConvToDepthToSpace(Rule):
    def pattern(self, op, x):
        return op.ConvTranspose(x, _allow_other_inputs=True)

    def refusal(self, x):
        conv = self.root
        parts = conv_weight_and_bias(conv)
        if parts is None:
            return "weights are not constant (or the conv is grouped)"
        attrs = conv.attributes
        kernel = tuple(parts[0].shape[2:])
        strides = tuple(attrs.get_ints("strides", (1,) * len(kernel)))
        if len(kernel) != 2 or kernel != strides or kernel[0] != kernel[1] or kernel[0] < 2:
            return "its kernel is not its stride (square): output blocks would overlap or be gapped"
        if any(attrs.get_ints("pads", (0, 0, 0, 0))) or any(attrs.get_ints("output_padding", (0, 0))):
            return "it is padded"
        if any(d != 1 for d in attrs.get_ints("dilations", (1, 1))) or attrs.get_string("auto_pad", "NOTSET") != "NOTSET" \
                or attrs.get_ints("output_shape", None) is not None:
            return "dilated, auto-padded or with an output shape"
        return None

    def rewrite(self, op, x):
        weight, bias = (a.astype(np.float32) for a in conv_weight_and_bias(self.root))
        inputs, outputs, block = weight.shape[0], weight.shape[1], weight.shape[2]
        # Output channel f*s*s + a*s + b of the 1x1 conv holds W[:, f, a, b] (DepthToSpace's CRD order).
        pointwise = weight.transpose(1, 2, 3, 0).reshape(outputs * block * block, inputs, 1, 1)
        w = self.initializer(op, np.ascontiguousarray(pointwise), self.node_name("pointwise.weight"))
        b = self.initializer(op, np.repeat(bias, block * block), self.node_name("pointwise.bias"))
        blocks = op.Conv(x, w, b, kernel_shape=[1, 1], _name=self.node_name("pointwise"))
        return op.DepthToSpace(blocks, blocksize=block, mode="CRD", _name=self.node_name("depth_to_space"))


RULES = [TransposedConvToDepthToSpace.sweep("convtranspose")]
PASS = rule_pass("transposed_conv_to_depth_to_space",
                 "a ConvTranspose with kernel = stride becomes a 1x1 Conv + DepthToSpace", RULES)
