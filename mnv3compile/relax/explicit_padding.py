"""A float32 conv over fewer channels than a vector holds (the stem: RGB) padded by a ``pad`` of its
own instead of inside the conv.

TVM legalizes a padded conv with the padding inside it: every tap reads its input through an
``if_then_else`` on the row and column. For the stem's 27 taps over 3 channels that condition
costs more than the multiply-add it guards: Small fp32's stem executed 3.97 M arm64 instructions
for 1.35 M fmla, its addresses and branches the rest. As a separate op, the padding fuses with the
input's NCHW -> NHWC transpose into one kernel (the padding template's), and the conv reads a
padded tensor with no condition. Wider convs keep their padding inside: there the condition is a
small share and a separate pad would be one more pass over a large tensor.

Runs on NHWC Relax (mnv3compile/relax/channels_last.py), before LegalizeOps. int8 convs are padded
by the int8 lowering already (with their zero point).
"""

from __future__ import annotations

from mnv3compile.relax.helpers import dtype_of, is_nhwc_conv, rewrite_calls, shape_of

NARROW_CHANNELS = 4  # input channels below a float32 vector of NEON/SSE


def to_explicit_padding(module):
    """``module`` with each padded float32 NHWC conv over fewer than ``NARROW_CHANNELS`` input
    channels computed on an explicitly padded input."""
    from tvm.relax import op

    def explicit_padding(call, builder):
        attrs = call.attrs
        data = call.args[0]
        if dtype_of(data) != "float32" or not is_nhwc_conv(attrs) or shape_of(data)[-1] >= NARROW_CHANNELS:
            return None
        top, left, bottom, right = (int(p) for p in attrs.padding)
        if not (top or left or bottom or right):
            return None
        padded = builder.emit(op.nn.pad(data, [0, 0, top, bottom, left, right, 0, 0], pad_value=0.0))
        return op.nn.conv2d(padded, call.args[1], strides=attrs.strides, padding=[0, 0, 0, 0],
                            dilation=attrs.dilation, groups=attrs.groups, data_layout="NHWC", kernel_layout="HWIO",
                            out_layout="NHWC", out_dtype=attrs.out_dtype)

    return rewrite_calls(module, ("relax.nn.conv2d",), explicit_padding)
