"""Int8 window convs (depthwise, and the stem where no dot product takes it) accumulated in
float32 FMAs, exactly.

A depthwise conv has no 4-deep reduction over channels for vpdpbusd/sdot to take, and the stem has
only 3 input channels: per tap each is a vector multiply-add. In int32 that is a widening multiply
and an add (x86 has no int32 multiply-add; ``vpmulld`` issues at a half or a quarter of an FMA's
rate), while a float32 FMA does both in one instruction at full rate. Both are
exact here: every product of two int8s is an integer of magnitude at most 2^14, and a sum of at
most ``MAX_EXACT_TAPS`` of them stays within 2^24, where float32 holds every integer -- so the
float32 accumulator, converted back to int32, is the int32 accumulator bit for bit, whatever the
order of the additions.

On arm64 the int32 path is already one instruction per tap and 4 lanes (LLVM widens to int16
and multiply-accumulates with ``smlal``), while the float path converts each input with three
(two widenings and ``scvtf``): depthwise convs stay int32 there (fewer instructions under qemu);
the stem, a 27-tap reduction over 3 channels that vectorizes badly as int32, is faster as float32
everywhere (docs/experiments.md, "Relax rewrites").
 This pass runs on NHWC Relax (mnv3compile/relax/channels_last.py) after DotProducts (which takes
the convs a dot product fits) and before LegalizeOps: a ``conv2d`` with a window (not 1x1) that is
ungrouped, or depthwise (one input channel per group) where the ISA table says so (x86), of int8
data with an int8 constant HWIO weight and int32 output, becomes the ``float_accumulated_conv``
kernel (schedules/kernels/conv.py); its weight is converted to float32 once, at build time. Its
float32 sums are cast to int32, the conv's type, except where the float requantization epilogue
would cast them straight back to float32: that epilogue reads them as
they are (faster depthwise convs on the AVX2 path).
Tensors between kernels stay int8: only registers hold floats, as in the float requantization
epilogue (mnv3compile/relax/int8_lowering.py). The kernel names the ``conv`` template as its
schedule rule. The fixed-point int8 lowering (integer arithmetic only) leaves this pass out
(mnv3compile/relax/pipeline.py).
"""

from __future__ import annotations

import numpy as np

from mnv3compile.relax.helpers import constant_value, dtype_of, is_nhwc_conv, rewrite_calls, without_aliases
from mnv3compile.schedules.kernels.conv import float_accumulated_conv
from mnv3compile.schedules.kernels.isa import current_isa

# |int8 x int8| <= 128 * 128 = 2^14, and float32 holds every integer up to 2^24.
MAX_EXACT_TAPS = 2**24 // 2**14


def taken_weight(call, depthwise_too: bool = True) -> np.ndarray | None:
    """The HWIO int8 weight of an undilated int8 NHWC window conv to int32, ungrouped or (with
    ``depthwise_too``) depthwise, whose sums are exact in float32; else None."""
    attrs = call.attrs
    weight = constant_value(call.args[1])
    if weight is None or weight.dtype != np.int8 or dtype_of(call.args[0]) != "int8":
        return None
    if not is_nhwc_conv(attrs):
        return None
    kh, kw, per_group, outputs = weight.shape
    groups = int(attrs.groups)
    if not (groups == 1 or (depthwise_too and per_group == 1 and groups == outputs)) or kh * kw == 1:
        return None
    if str(attrs.out_dtype) != "int32" or any(int(v) != 1 for v in attrs.dilation):
        return None
    return weight if kh * kw * per_group <= MAX_EXACT_TAPS else None


def to_float_accumulation(module):
    """``module`` with every int8 conv ``taken_weight`` accepts for the current target computed
    by ``float_accumulated_conv``."""
    from tvm import relax
    from tvm.relax import op

    isa = current_isa()
    depthwise_too = isa is not None and isa.float_depthwise

    accumulators = []  # the float32 results of the convs taken

    def float_accumulation(call, builder):
        if call.op.name == "relax.astype":
            return _without_round_trip(call, builder, accumulators)
        weight = taken_weight(call, depthwise_too)
        if weight is None:
            return None
        data = call.args[0]
        top, left, bottom, right = (int(p) for p in call.attrs.padding)
        if top or left or bottom or right:  # conv2d pads with 0, as the lowering asked
            data = builder.emit(op.nn.pad(data, [0, 0, top, bottom, left, right, 0, 0], pad_value=0.0))
        accumulator = builder.emit(builder.call_te(
            float_accumulated_conv, data, relax.const(weight.astype(np.float32)),
            strides=tuple(int(s) for s in call.attrs.strides), primfunc_name_hint="conv_float_acc"))
        accumulators.append(accumulator)
        return op.astype(accumulator, "int32")  # the conv's own result type

    # the accumulator answers its own cast back: bound to a second name until without_aliases
    return without_aliases(rewrite_calls(module, ("relax.nn.conv2d", "relax.astype"), float_accumulation))


def _without_round_trip(call, builder, accumulators: list):
    """``astype(astype(acc, int32), float32)`` of a float accumulator as ``acc`` itself: the
    integers it holds (|sum| < 2^24) convert exactly both ways, and the float requantization
    epilogue, which casts every accumulator to float32, then spends no conversion on it
    (two per output vector before: ``vcvttps2dq`` and ``vcvtdq2ps`` on x86)."""
    if str(call.attrs.dtype) != "float32":
        return None
    inner = builder.lookup_binding(call.args[0])
    if getattr(getattr(inner, "op", None), "name", None) != "relax.astype" or str(inner.attrs.dtype) != "int32":
        return None
    source = inner.args[0]
    return source if any(source.same_as(acc) for acc in accumulators) else None
