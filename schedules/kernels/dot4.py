"""The int8 dot-product kernel family (``dot4``): 4-deep dot-product instructions (AVX-512 VNNI
``vpdpbusd``, arm64 ``sdot``) and their stand-ins where the ISA has none (AVX2's ``vpmaddubsw``,
4 deep for weights in -64..63; arm64 ``smlal`` by element, 8 input channels per step, XNNPACK's
mlal-lane kernels): the weights' packing, the compute (TE), and which lanes an ISA offers. The
Relax rewrite that chooses this kernel is mnv3compile/relax/dot_products.py; its schedule is
``schedule_dot4`` below.

Both instructions multiply 4 adjacent bytes of one operand by 4 of the other and add the four
products into one int32 lane. In NHWC the 4 adjacent int8s of a pixel are 4 input channels;
broadcast to every lane, they meet a weight vector that holds, for each of L output channels,
the same 4 input channels. So the weights are packed ``[F/L, C/4, L, 4]``, at build time, as a
constant (never per inference): one vector load feeds L output channels x 4 input channels
(L = 16 in a zmm, 8 in a ymm, 4 in a NEON q register), and each vector of outputs reads its
weights as one sequential stream (packed ``[C/4, F, 4]``, the classifier's weights were read at a
4000-byte stride, which no prefetcher follows). smlal's are ``[F/8, C/8, 8 inputs, 8 outputs]``.

``vpdpbusd`` multiplies *unsigned* by signed bytes. The input is made unsigned with x ^ 0x80
(= x + 128) on the broadcast register, and the excess, 128 x the weights' sum per output channel,
is added back once per output as a constant (``compensation``), which the kernel's epilogue
absorbs. ``sdot`` is signed x signed and needs neither.
"""

from __future__ import annotations

import numpy as np

from mnv3compile.schedules.kernels.family import NoTemplate, ReductionFamily, Variant, rule
from mnv3compile.schedules.kernels.intrinsics import LANE_GROUPS, depth, dot4_by_lane_name, dot4_name, intrinsic
from mnv3compile.schedules.kernels.isa import Isa
from mnv3compile.schedules.kernels.knobs import SPLIT_ROWS
from mnv3compile.schedules.kernels.parallel import goes_parallel, parallel_enabled, run_in_parallel
from mnv3compile.schedules.kernels.loops import extents, reduce_iters, split_vectorize, tile_shape, vector_tile
from mnv3compile.schedules.kernels.pad import padding_epilogue, schedule_padding
from mnv3compile.schedules.kernels.requantize import epilogue_lanes

DOT4_BLOCK = "dot4"  # the name of the kernel's reduction block


def dot4_lanes(isa: Isa, outputs: int) -> int | None:
    """The widest vector of int32 lanes this ISA's dot product has that divides ``outputs``."""
    if isa.dot is None:
        return None
    return next((lanes for lanes in isa.dot.lanes if outputs % lanes == 0), None)


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
            axis=[ry, rx, group, lane]), name=DOT4_BLOCK, attrs=rule("dot4"))
    else:  # matmul of rows: out[i, f]
        acc = te.compute((int(x.shape[0]), outputs), lambda i, f: te.sum(
            product(x[i, group * step + lane], weight(f // lanes, group, f % lanes, lane)), axis=[group, lane]),
            name=DOT4_BLOCK, attrs=rule("dot4"))
    if offsets is None:
        return acc
    return te.compute(acc.shape, lambda *index: acc(*index) + offsets[index[-1]], name="dot4_compensation")


def schedule_dot4(sch, block, isa: Isa, knobs) -> Variant:
    """The dot4 kernel: a tile of ``pixels`` outputs along a row times
    ``vectors`` vectors of output channels accumulates over the groups of input channels, one
    vpdpbusd/sdot/vpmaddubsw step per (pixel, vector) and group of 4 (smlal: 16 smlal per group of
    8); the epilogue runs on the tile in registers."""
    loops = sch.get_loops(block)
    reductions = len(reduce_iters(sch, block))  # [ry, rx,] group, lane
    *spatial, f = loops[:len(loops) - reductions]
    window = loops[len(loops) - reductions:-2]
    group = loops[-2]
    outputs = int(sch.get(f).extent)
    kh, kw = (int(d) for d in sch.get(block).reads[1].source.shape[:2]) if window else (1, 1)
    lanes = dot4_lanes(isa, outputs)
    if lanes is None:
        raise NoTemplate
    epilogue = sch.get_consumers(block)
    if len(epilogue) != 1:
        raise NoTemplate  # the accumulator tile lives in registers only if something consumes it
    padded = padding_epilogue(sch, epilogue)
    is_conv = len(spatial) == 3  # n, y, x (a matmul of a row has one spatial loop)
    # A conv over one pixel (squeeze-excite's FCs) is a GEMV as much as the classifier is.
    gemv = not is_conv or extents(sch, spatial) == [1, 1, 1]
    pixels_want, vectors_want = (1, knobs.gemv) if gemv else knobs.dot4
    # Knobs count vector registers; smlal's 8 int32 lanes take two of NEON's.
    vectors_want = max(1, vectors_want // max(1, lanes * 4 // isa.vector_bytes))
    width = int(sch.get(spatial[-1]).extent) if is_conv else 1
    instruction = isa.dot.name
    # smlal reads each weight vector once per tile, widened by its own sxtl: a 7-wide row is better
    # one 7x1 tile than seven 1x2 ones.
    wide_rows = knobs.wide_rows or instruction == "smlal"
    pixels, vectors = tile_shape(width, outputs // lanes, pixels_want, vectors_want, wide_rows)
    # A GEMV reads a new weight vector for every instruction (nothing to reuse: memory-bound, the
    # classifier's 1 MB of int8 weights took 20 us for 16k steps): count its steps as lanes, not
    # lanes x depth, so that one goes parallel and squeeze-excite's small FCs stay serial.
    step_macs = lanes if gemv else lanes * depth(instruction)
    fo, fi = sch.split(f, [None, vectors * lanes])
    fv, fl = sch.split(fi, [None, lanes])
    # sdot by element: groups of 4 input channels taken 4 (or 2) at a time from one load.
    by_lane = next((g for g in LANE_GROUPS if int(sch.get(group).extent) % g == 0), None) if instruction == "sdot" else None
    group, group_in = sch.split(group, [None, by_lane]) if by_lane else (group, None)
    inner = [group_in, fl] if by_lane else [fl]
    if is_conv:
        n, y, x = spatial
        xo, xi = sch.split(x, [None, pixels])
        # In parallel, rows outermost unless tune chose otherwise (knobs.split): a channel block is
        # 16-48 int8 channels, so two threads splitting them wrote the same cache lines of every
        # pixel, each invalidating the other's (28x28x24 -> 88: 29.9 -> 43.6 us); and each thread
        # reads the rows its core wrote in the kernel before (every template splits rows first).
        split = knobs.split if goes_parallel(sch, step_macs) else SPLIT_ROWS  # a decision only where it splits
        outer = [n, y, fo, xo] if parallel_enabled() and split == SPLIT_ROWS else [n, fo, y, xo]
        sch.reorder(*outer, *window, group, xi, fv, *inner)
        tile_loop, tile = xo, [xi, fv]
    else:
        sch.reorder(*spatial, fo, group, fv, *inner)
        tile_loop, tile, outer = fo, [fv], [*spatial, fo]
    # Squeeze-excite's excite FC with its scale fused: a GEMV whose epilogue multiplies the whole
    # feature map by the GEMV's outputs. Computed at the GEMV's tile it ran with it, serial (or over
    # channel blocks); in a parallel build the GEMV goes first, whole, and the epilogue's rows run
    # in parallel (a serial build keeps the serial libraries' code).
    scaled = _elements(sch, epilogue[0])
    broadcast = parallel_enabled() and gemv and not padded and scaled > outputs
    if padded:  # the tile goes to registers and a copy to memory; the pad reads it from there
        epilogue = [sch.cache_write(block, 0, "local")]
    else:
        sch.set_scope(block, 0, "local")
    if not broadcast:
        sch.reverse_compute_at(epilogue[0], tile_loop)
    run_in_parallel(sch, outer, per_step=step_macs)
    init = sch.decompose_reduction(block, (window or [group])[0])
    split_vectorize(sch, sch.get_loops(init)[-1], lanes)
    for loop in tile:
        sch.unroll(loop)
    if by_lane:
        sch.tensorize(group_in, intrinsic(dot4_by_lane_name(lanes, by_lane)))
    else:
        sch.tensorize(fl, intrinsic(dot4_name(lanes, instruction)))
    loops = sch.get_loops(epilogue[0])
    vector_tile(sch, loops[-1], epilogue_lanes(sch, epilogue[0], lanes, isa),
                loops[-2] if is_conv and pixels > 1 else None)
    if broadcast:  # each element is a chain of a dozen vector operations: count them as elements
        run_in_parallel(sch, loops[:-1], steps=scaled)
    if padded:
        schedule_padding(sch, padded, isa)
    if window:
        sch.unroll(window[-1])
    if is_conv:
        return Variant("dot4", f"conv{kh}x{kw}", "int8", isa.name, layout="nhwc", instruction=isa.dot.mnemonic,
                       tile=f"p{pixels}x{vectors * lanes}")
    return Variant("dot4", "gemv", "int8", isa.name, instruction=isa.dot.mnemonic, tile=f"n{vectors * lanes}")


def _elements(sch, block) -> int:
    """Points of the block's iteration space."""
    count = 1
    for iter_var in sch.get(block).iter_vars:
        count *= int(iter_var.dom.extent)
    return count


class Dot4Family(ReductionFamily):
    name = "dot4"  # only computes of ours: TVM has none like it

    def knobs(self, isa: Isa):
        return isa.knobs.dot4

    def schedule_block(self, sch, block, isa: Isa, knobs) -> Variant:
        return schedule_dot4(sch, block, isa, knobs)
