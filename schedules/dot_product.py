"""Int8 pointwise convs and matmuls on 4-deep dot-product instructions: x86 AVX-512 VNNI
``vpdpbusd`` and arm64 ``sdot``; and their stand-ins where the ISA has none: AVX2's ``vpmaddubsw``
(4 deep too, for weights in -64..63) and, on arm64 without dotprod, ``smlal`` by element (8 input
channels per step, weights packed ``[F/8, C/8, 8 inputs, 8 outputs]``; XNNPACK's mlal-lane kernels).

Both instructions multiply 4 adjacent bytes of one operand by 4 of the other and add the four
products into one int32 lane. In NHWC the 4 adjacent int8s of a pixel are 4 input channels;
broadcast to every lane, they meet a weight vector that holds, for each of L output channels,
the same 4 input channels. So the weights are packed ``[F/L, C/4, L, 4]`` here, at build time, as
a constant (never per inference): one vector load feeds L output channels x 4 input channels
(L = 16 in a zmm, 8 in a ymm, 4 in a NEON q register), and each vector of outputs reads its
weights as one sequential stream. (Packed ``[C/4, F, 4]``, a tile read L x 4 bytes every F x 4:
the classifier's 1 MB at a 4000-byte stride, which no prefetcher follows; it ran 12 us with its
weights in cache and 55-90 us inside an inference, on Zen 4.)

``vpdpbusd`` multiplies *unsigned* by signed bytes. The input is made unsigned with x ^ 0x80
(= x + 128) on the broadcast register, and the excess, 128 x the weights' sum per output channel,
is added back once per output as a constant (``compensation``), which the kernel's epilogue
absorbs. ``sdot`` is signed x signed and needs neither.

This pass runs on NHWC Relax (schedules/layout.py) after FoldConstant and before LegalizeOps: an
ungrouped ``conv2d`` (pointwise, and the stem's 3x3 stride 2, whose 3 input channels are padded
to 4 with zeros, the 4th weighing 0), or a ``matmul`` of rows with input channels a multiple of 4,
with an int8 constant weight, int32 accumulation and output channels a multiple of the narrowest
vector, becomes a call to the ``dot4`` kernel below; everything else (depthwise convs) is left
for TVM's legalization. The kernel template is ``schedule_dot4`` in templates.py.
"""

from __future__ import annotations

import numpy as np

from mnv3compile.schedules.intrinsics import DOT4_INSTRUCTIONS, SMLAL_DEPTH, depth
from mnv3compile.schedules.isa import Isa
from mnv3compile.schedules.relax_rewrite import constant_value, dtype_of, is_nhwc_conv, rewrite_calls

# ISA -> (instruction, vector lanes of int32 it can use, widest first)
DOT4_ISAS = {"avx512-vnni": ("vnni", (16, 8)), "neon-dotprod": ("sdot", (4,)), "avx2": ("pmaddubsw", (8,)),
             "neon": ("smlal", (8,))}
# instruction -> the int8 weights it multiplies exactly (AVX2's vpmaddubsw saturates its int16 pair
# sums beyond them): a conv whose constant weights leave the range is left to the other kernels.
EXACT_WEIGHTS = {"pmaddubsw": (-64, 63)}
DOT4_BLOCK = "dot4"  # the name of the kernel's reduction block (templates.py dispatches on it)


def dot4_lanes(isa: Isa, outputs: int) -> int | None:
    """The widest vector of int32 lanes this ISA's dot product has that divides ``outputs``."""
    if isa.name not in DOT4_ISAS:
        return None
    return next((lanes for lanes in DOT4_ISAS[isa.name][1] if outputs % lanes == 0), None)


def pack_weights(weight: np.ndarray, lanes: int, instruction: str = "vnni") -> np.ndarray:
    """(..., C, F) int8 (a matrix, or HWIO) -> for each vector of ``lanes`` output channels and each
    group of D input channels (D = the instruction's depth), the group's weights as one block:
    (..., F/lanes, ceil(C/D), lanes, D) for the dot products, whose lane reads its D weights at once;
    (..., F/lanes, C/8, 8, lanes) for smlal, which reads the lanes' weights of one input channel at
    once. Missing input channels weigh 0."""
    *window, channels, outputs = weight.shape
    step = depth(instruction)
    groups = -(-channels // step)
    padded = np.zeros((*window, groups * step, outputs), np.int8)
    padded[..., :channels, :] = weight
    blocked = padded.reshape(*window, groups, step, outputs // lanes, lanes)
    base = len(window)
    inner = (base + 3, base + 1) if inputs_innermost(instruction) else (base + 1, base + 3)
    return np.ascontiguousarray(blocked.transpose((*range(base), base + 2, base, *inner)))


def inputs_innermost(instruction: str) -> bool:
    return instruction != "smlal"


def compensation(weight: np.ndarray) -> np.ndarray:
    """What (x + 128) . w exceeds x . w by, per output channel, negated: -128 x sum(w)."""
    return (-128 * weight.astype(np.int64).reshape(-1, weight.shape[-1]).sum(axis=0)).astype(np.int32)


def dot4_compute(x, packed, offsets=None, strides=(1, 1), instruction: str = "vnni"):
    """TE: out[..., f] = sum (x (+128)) * w (+ offsets[f]) over the input channels, split into the
    groups the instruction consumes (4 channels, 8 for smlal), and for a conv (NHWC input, packed
    HWIO weight) over its window too."""
    from tvm import te

    *window, vectors, groups, lanes, step = (int(d) for d in packed.shape)
    if not inputs_innermost(instruction):
        lanes, step = step, lanes
    outputs = vectors * lanes
    group = te.reduce_axis((0, groups), "group")
    lane = te.reduce_axis((0, step), "lane")

    def weight(*index):  # index: (..., vector, group, output lane, input lane)
        *outer, out_lane, in_lane = index
        return packed[(*outer, out_lane, in_lane) if inputs_innermost(instruction) else (*outer, in_lane, out_lane)]

    def product(value, weight):
        value = value.astype("int32") + 128 if offsets is not None else value.astype("int32")
        return value * weight.astype("int32")

    if window:  # conv2d NHWC: out[n, y, x, f]
        n, height, width, _ = (int(d) for d in x.shape)
        (kh, kw), (sh, sw) = window, strides
        ry, rx = te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, kw), "rx")
        shape = (n, (height - kh) // sh + 1, (width - kw) // sw + 1, outputs)
        acc = te.compute(shape, lambda b, y, i, f: te.sum(
            product(x[b, y * sh + ry, i * sw + rx, group * step + lane],
                    weight(ry, rx, f // lanes, group, f % lanes, lane)),
            axis=[ry, rx, group, lane]), name=DOT4_BLOCK)
    else:  # matmul of rows: out[i, f]
        acc = te.compute((int(x.shape[0]), outputs), lambda i, f: te.sum(
            product(x[i, group * step + lane], weight(f // lanes, group, f % lanes, lane)), axis=[group, lane]),
            name=DOT4_BLOCK)
    if offsets is None:
        return acc
    return te.compute(acc.shape, lambda *index: acc(*index) + offsets[index[-1]], name="dot4_compensation")


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
    import tvm
    from tvm import relax

    from mnv3compile.schedules.isa import isa_of

    target = tvm.target.Target.current(allow_none=True)
    isa = isa_of(target) if target is not None else None
    if isa is None or isa.name not in DOT4_ISAS:
        return module
    instruction = DOT4_ISAS[isa.name][0]
    unsigned_input = instruction in DOT4_INSTRUCTIONS and DOT4_INSTRUCTIONS[instruction][1] != 0
    low, high = EXACT_WEIGHTS.get(instruction, (-128, 127))

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
