"""DotProducts: int8 pointwise convs and row matmuls onto the ``dot4`` kernel
(mnv3compile/schedules/kernels/dot4.py: VNNI ``vpdpbusd``, arm64 ``sdot``, AVX2 ``vpmaddubsw``
for weights in -64..63, arm64 ``smlal`` without dotprod), weights packed once at build time.

This pass runs on NHWC Relax (channels_last.py) after FoldConstant and before LegalizeOps: an
ungrouped ``conv2d`` (pointwise, and the stem's 3x3 stride 2, whose 3 input channels are padded
to 4 with zeros, the 4th weighing 0), or a ``matmul`` of rows with input channels a multiple of 4,
with an int8 constant weight, int32 accumulation and output channels a multiple of the narrowest
vector, becomes a call to the ``dot4`` kernel; everything else (depthwise convs) is left for TVM's
legalization.
"""

from __future__ import annotations

import numpy as np

from mnv3compile.relax.helpers import constant_value, dtype_of, is_nhwc_conv, rewrite_calls
from mnv3compile.schedules.kernels.dot4 import compensation, dot4_compute, dot4_lanes, pack_weights
from mnv3compile.schedules.kernels.isa import current_isa
from mnv3compile.schedules.kernels.intrinsics import DOT4_INSTRUCTIONS, SMLAL_DEPTH


def _int32_out(attrs) -> bool:
    return str(attrs.out_dtype) == "int32"


def _conv_weight(call) -> np.ndarray | None:
    """The HWIO weight of an ungrouped, undilated int8 NHWC conv this kernel computes, else None."""
    attrs = call.attrs
    weight = constant_value(call.args[1])
    if weight is None or not is_nhwc_conv(attrs):
        return None
    if int(attrs.groups) != 1 or any(int(v) != 1 for v in attrs.dilation) or not _int32_out(attrs):
        return None
    return weight


def _matmul_weight(call) -> np.ndarray | None:
    weight = constant_value(call.args[1])
    if weight is None or weight.ndim != 2 or len(call.args[0].ty.shape.values) != 2 or not _int32_out(call.attrs):
        return None
    return weight


def _conv_data(call, emit):
    """The conv's input as dot4 reads it: its padding made explicit (conv2d pads with 0) and its
    channels padded with 0 to a multiple of 4 (the stem's 3), in one pad that FuseOps puts into
    the producer (the network input's quantize)."""
    from tvm.relax import op

    data = call.args[0]
    channels = int(data.ty.shape.values[3])
    top, left, bottom, right = (int(p) for p in call.attrs.padding)
    extra = -channels % 4
    if not (top or left or bottom or right or extra):
        return data
    return emit(op.nn.pad(data, [0, 0, top, bottom, left, right, 0, extra], pad_value=0.0))


WEIGHT_OF = {"relax.nn.conv2d": _conv_weight, "relax.matmul": _matmul_weight}


def to_dot_products(module):
    """``module`` with every int8 pointwise conv and row matmul that the current target's dot
    product fits computed by the ``dot4`` kernel (unchanged on targets without one)."""
    from tvm import relax

    isa = current_isa()
    if isa is None or isa.dot is None:
        return module
    instruction = isa.dot.name
    unsigned_input = instruction in DOT4_INSTRUCTIONS and DOT4_INSTRUCTIONS[instruction][1] != 0
    low, high = isa.dot.exact_weights

    def dot_product(call, builder):
        weight = WEIGHT_OF[call.op.name](call)
        if weight is None or dtype_of(call.args[0]) != "int8" or weight.dtype != np.int8:
            return None
        is_conv = weight.ndim == 4
        channels, outputs = weight.shape[-2:]
        if dot4_lanes(isa, outputs) is None or (not is_conv and channels % 4) or \
                weight.min() < low or weight.max() > high:
            return None
        if instruction == "smlal" and (weight.shape[:-2] not in ((), (1, 1)) or channels % SMLAL_DEPTH):
            return None  # smlal: pointwise and matmuls over whole groups of 8 channels only
        data = _conv_data(call, builder.emit) if is_conv else call.args[0]
        offsets = relax.const(compensation(weight), "int32") if unsigned_input else None
        strides = tuple(int(s) for s in call.attrs.strides) if is_conv else (1, 1)
        packed = relax.const(pack_weights(weight, dot4_lanes(isa, outputs), instruction), "int8")
        return builder.call_te(dot4_compute, data, packed, offsets, strides=strides, instruction=instruction,
                               primfunc_name_hint="dot4")

    return rewrite_calls(module, tuple(WEIGHT_OF), dot_product)
