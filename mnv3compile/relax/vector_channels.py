"""Convs whose output channels fill no vector (a segmentation head's 19 or 21 classes) compute a
whole number of vectors and drop the extra channels after.

The conv templates vectorize over output channels (NHWC: channels innermost); 19 channels have no
power-of-two divisor but 1, so no template took LR-ASPP's class convs and TVM's default schedule
ran them as scalar loops (one 1x1 conv of 128 -> 19 channels at 32x32 took a quarter of LR-ASPP
Small's fp32 time). Padded with zero weights to 24 channels, the conv is an ordinary
templated one and a slice keeps the first 19 (a copy of the small class map).

This pass runs on NHWC Relax (mnv3compile/relax/channels_last.py) after FoldConstant (the weight is a constant)
and before the passes that pick int8 kernels (which then take the padded conv, a multiple of 8
channels, as a dot product): an ungrouped ``conv2d`` (float32, or int8 into int32) with a
constant HWIO weight whose output channel count is not a multiple of 4. The zero channels add
nothing: its result is the same numbers.
"""

from __future__ import annotations

import numpy as np

from mnv3compile.relax.helpers import OPERAND_DTYPE, constant_value, dtype_of, is_nhwc_conv, rewrite_calls

VECTOR = 8  # channels are padded to a multiple of this (a ymm of float32, two NEON registers)


def padded_outputs(weight: np.ndarray, multiple: int = VECTOR) -> np.ndarray:
    """HWIO ``weight`` with zero output channels appended up to a multiple of ``multiple``."""
    extra = -weight.shape[-1] % multiple
    return np.concatenate([weight, np.zeros((*weight.shape[:-1], extra), weight.dtype)], axis=-1)


def to_vector_channels(module):
    """``module`` with every conv of a channel count no vector divides computed on padded output
    channels, then sliced."""
    from tvm import relax
    from tvm.relax import op

    def vector_channels(call, builder):
        if dtype_of(call) not in OPERAND_DTYPE:
            return None
        attrs = call.attrs
        weight = constant_value(call.args[1])
        if weight is None or weight.ndim != 4 or int(attrs.groups) != 1 or weight.shape[-1] % 4 == 0:
            return None
        if weight.dtype != OPERAND_DTYPE[dtype_of(call)]:
            return None
        if not is_nhwc_conv(attrs):
            return None
        channels = weight.shape[-1]
        wide = builder.emit(op.nn.conv2d(
            call.args[0], relax.const(padded_outputs(weight), str(weight.dtype)), strides=attrs.strides,
            padding=attrs.padding, dilation=attrs.dilation, groups=1, data_layout="NHWC", kernel_layout="HWIO",
            out_layout="NHWC", out_dtype=attrs.out_dtype))
        return op.strided_slice(wide, axes=[3], begin=[0], end=[channels])

    return rewrite_calls(module, ("relax.nn.conv2d",), vector_channels)
