"""The ``conv`` family: pointwise 1x1, depthwise KxK, the stem's 3x3 and any other direct NHWC conv
(TVM's legalized ``conv2d_nhwc``/``group_conv2d_nhwc``, and the float-accumulated int8 convs whose
compute is here); one-pixel convs (squeeze-excite's FCs) as GEMVs.

An output tile of ``pixels`` outputs along a row times ``channels`` output channels (a whole number
of vector registers) accumulates in registers over the reduction (taps, input channels), then the
fused epilogue runs on the tile while it is still in registers and stores it once. For pointwise
convs this is a GEMM micro-kernel (one broadcast input value times the weight row, as many
accumulators as registers allow); for depthwise convs one vector of channels per tap. On AVX2,
int8 pointwise convs take input channels in pairs (``vpmaddwd``), and float ones a tile chosen by
an FMA throughput model.

``float_accumulated_conv`` is the compute of int8 window convs accumulated in float32 FMAs,
exactly (mnv3compile/relax/float_accumulation.py chooses it).
"""

from __future__ import annotations

from mnv3compile.schedules.kernels.family import ReductionFamily, Variant, rule
from mnv3compile.schedules.kernels.intrinsics import FMLA_DEPTH, INT8_PAIRS_X8_AVX2, fmla_by_lane_name
from mnv3compile.schedules.kernels.isa import Isa
from mnv3compile.schedules.kernels.knobs import SPLIT_ROWS
from mnv3compile.schedules.kernels.loops import (L1_WEIGHT_BYTES, bytes_of, extents, fitting_lanes, largest_divisor,
                                                 tile_shape, vector_tile)
from mnv3compile.schedules.kernels.pad import padding_epilogue, schedule_padding
from mnv3compile.schedules.kernels.requantize import epilogue_lanes
from mnv3compile.schedules.kernels.parallel import goes_parallel, parallel_enabled, run_in_parallel

TVM_CONV_BLOCKS = ("conv2d_nhwc", "group_conv2d_nhwc")  # what TVM's legalization names its NHWC convs


def float_accumulated_conv(x, weight, strides=(1, 1)):
    """TE: out[n, y, i, f] = sum over the window (and the input channels of f's group) of
    float32(x) * weight (float32 HWIO; depthwise when it has one input channel per group and x
    has more), accumulated in float32: the int32 conv's integers, as float32."""
    from tvm import te

    kh, kw, per_group, outputs = (int(d) for d in weight.shape)
    n, height, width, channels = (int(d) for d in x.shape)
    depthwise = per_group == 1 and channels == outputs and channels > 1
    sh, sw = strides
    ry, rx, rc = te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, kw), "rx"), te.reduce_axis((0, per_group), "rc")
    shape = (n, (height - kh) // sh + 1, (width - kw) // sw + 1, outputs)

    def tap(b, y, i, f):
        channel = f + rc if depthwise else rc
        return x[b, y * sh + ry, i * sw + rx, channel].astype("float32") * weight[ry, rx, rc, f]

    return te.compute(shape, lambda *index: te.sum(tap(*index), axis=[ry, rx, rc]),
                      name="float_acc_depthwise_conv2d_nhwc" if depthwise else "float_acc_conv2d_nhwc",
                      attrs=rule("conv"))


def conv_kind(sch, block) -> tuple[str, int, int]:
    """("pointwise" | "depthwise" | "conv", kernel height, kernel width) of a legalized NHWC conv."""
    node = sch.get(block)
    weight = node.reads[1].source  # HWIO
    kh, kw, cin_per_group, _ = (int(d) for d in weight.shape)
    channels = int(node.reads[0].source.shape[-1])
    if cin_per_group == 1 and channels > 1:  # one input channel per group, of several: depthwise
        return "depthwise", kh, kw
    if kh == kw == 1:
        return "pointwise", kh, kw
    return "conv", kh, kw


def _wanted_tile(knobs, kind: str, dtype: str) -> tuple[int, int]:
    """The knob's (pixels, vector registers) for this kind of conv (int8 pointwise convs have their
    own where the ISA gives one)."""
    if kind == "pointwise":
        return (dtype == "int8" and knobs.pointwise_int8) or knobs.pointwise
    return knobs.depthwise if kind == "depthwise" else knobs.conv


# A throughput model of the float pointwise tile's inner step (one input channel): pixels x vectors
# FMAs, vectors weight loads and pixels broadcasts, each accumulator waiting FMA_LATENCY cycles for
# its previous FMA (Zen 3/4, Haswell on: 2 FMA and 2 vector load ports, FMA latency 4-5).
FMA_LATENCY, FMA_PORTS, LOAD_PORTS = 4, 2, 2
MODEL_MARGIN = 1.05  # the model's tile replaces the knob's only where it predicts more than this


def _fma_efficiency(pixels: int, vectors: int) -> float:
    """The fraction of FMA issue slots the tile fills, by the model."""
    accumulators = pixels * vectors
    cycles = max(FMA_LATENCY, accumulators / FMA_PORTS, (pixels + vectors) / LOAD_PORTS)
    return accumulators / FMA_PORTS / cycles


def _fma_tile(width: int, registers: int, budget: int) -> tuple[int, int]:
    """(pixels, vectors) of the float pointwise tile the model ranks first among those whose
    accumulators, weight vectors and broadcast fit ``budget`` vector registers (pixels divide the
    row's ``width``, vectors the ``registers`` of channels); the larger tile among equals. AVX2's
    budget is 14 of its 16: tiles that need all 16 ran slower (spills, presumably); within it the
    model's tiles beat the 7x1 default on Large fp32 (docs/experiments.md)."""
    tiles = [(pixels, vectors)
             for pixels in range(1, min(width, 16) + 1) if width % pixels == 0
             for vectors in range(1, min(registers, 12) + 1) if registers % vectors == 0
             if pixels * vectors + vectors + 1 <= budget]
    return max(tiles, key=lambda tile: (_fma_efficiency(*tile), tile[0] * tile[1]))


def schedule_conv(sch, block, isa: Isa, knobs) -> Variant:
    """The conv tile (module docstring) on ``block``, a legalized or float-accumulated NHWC conv."""
    dtype = str(sch.get(block).reads[0].source.dtype)
    kind, kh, kw = conv_kind(sch, block)
    n, y, x, f, ry, rx, rc = sch.get_loops(block)
    _, out_h, out_w, channels = extents(sch, [n, y, x, f])
    lanes = fitting_lanes(channels, isa.lanes(dtype))
    if out_h * out_w == 1:  # squeeze-excite's FCs are GEMVs
        pixels_want, vectors_want = 1, knobs.gemv
    else:
        pixels_want, vectors_want = _wanted_tile(knobs, kind, dtype)
    if channels >= lanes:
        pixels, vectors = tile_shape(out_w, channels // lanes, pixels_want, vectors_want, knobs.wide_rows)
        # read only where it applies, so tuning's space for other kernels has no idle decision
        gemm = kind == "pointwise" and dtype == "float32" and out_h * out_w > 1
        budget = (knobs.fma_registers or 0) if gemm else 0
        if budget:
            modeled = _fma_tile(out_w, channels // lanes, budget)
            if _fma_efficiency(*modeled) > MODEL_MARGIN * _fma_efficiency(pixels, vectors):
                pixels, vectors = modeled
    else:
        pixels, vectors = largest_divisor(out_w, pixels_want), 0
    tile_channels = vectors * lanes if vectors else channels
    fo, fi = sch.split(f, [None, tile_channels])
    # Channel blocks outermost keep a block's weights in L1 while every pixel passes by. When the
    # whole weight fits in L1 anyway (depthwise convs, pointwise ones of few channels), pixels
    # outermost read each input pixel's channels once and in order, not once per channel block.
    pixel_major = bytes_of(sch.get(block).reads[1].source) <= L1_WEIGHT_BYTES
    if pixels > 1:
        xo, xi = sch.split(x, [None, pixels])
        tile, inner = [xo], [xi]
    else:
        tile, inner = [x], []
    # In parallel, rows outermost unless tune chose otherwise (knobs.split): each thread then reads
    # the rows its core wrote in the kernel before (every template splits rows first), where
    # splitting channel blocks moved every pixel between the cores' caches (Large fp32 at 2 threads
    # 3.03 -> 2.83 ms, with the pads in parallel). Channels where the weights outweigh the
    # activations (7x7 layers) measured no different here: a knob, for other memory systems.
    split = SPLIT_ROWS if pixel_major or not goes_parallel(sch, lanes) else knobs.split  # read where it splits
    outer = [y, *tile, fo] if pixel_major or (parallel_enabled() and split == SPLIT_ROWS) else [fo, y, *tile]
    sch.reorder(n, *outer, ry, rx, rc, *inner, fi)
    tile_loop = outer[-1]
    epilogue = sch.get_consumers(block)
    padded = padding_epilogue(sch, epilogue)
    if epilogue and not padded:
        sch.set_scope(block, 0, "local")  # the accumulator tile: registers once unrolled
    else:  # a bare conv (no bias, no activation: PaddleOCR's FPN) writes the kernel's output itself,
        # and one whose epilogue pads writes its accumulators out for the pad template:
        sch.cache_write(block, 0, "local")  # its tile goes to registers and a copy is its epilogue
        epilogue = sch.get_consumers(block)
    if len(epilogue) == 1:
        sch.reverse_compute_at(epilogue[0], tile_loop)
    run_in_parallel(sch, [n, *outer], per_step=lanes)
    cin = int(sch.get(rc).extent)
    pairs = (knobs.int8_pairs and dtype == "int8" and kind == "pointwise" and cin % 2 == 0
             and tile_channels % 8 == 0 and lanes == 8)
    by_lane = (isa.float_pointwise_by_lane and kind == "pointwise" and dtype == "float32" and lanes == 4
               and cin % FMLA_DEPTH == 0 and vectors and out_h * out_w > 1)
    if pairs:  # AVX2's int8 pairs into vpmaddwd
        _input_rows_tile(sch, block, rc, pixels > 1, ry, 8, 2, INT8_PAIRS_X8_AVX2)
    elif by_lane:  # arm64's float32 fmla by element
        _input_rows_tile(sch, block, rc, pixels > 1, ry, lanes, FMLA_DEPTH, fmla_by_lane_name(lanes))
    else:
        step = isa.depthwise_int8_lanes if (kind == "depthwise" and dtype == "int8" and isa.depthwise_int8_lanes
                                            and tile_channels % isa.depthwise_int8_lanes == 0) else lanes
        vector_tile(sch, sch.get_loops(block)[-1], step, sch.get_loops(block)[-2] if pixels > 1 else None)
        sch.decompose_reduction(block, ry)  # the init copies the tile's loops, vector and unroll included
    if kind != "pointwise":
        sch.unroll(rx)
    if len(epilogue) == 1:
        loops = sch.get_loops(epilogue[0])
        vector_tile(sch, loops[-1], epilogue_lanes(sch, epilogue[0], lanes, isa),
                    loops[-2] if pixels > 1 else None)
    if padded:
        schedule_padding(sch, padded, isa)
    return Variant("conv", _conv_name(kind, kh, kw), dtype, isa.name, layout="nhwc",
                   instruction="vpmaddwd" if pairs else "fmla-lane" if by_lane else "", tile=f"p{pixels}x{tile_channels}")


def _input_rows_tile(sch, block, rc, has_pixel_loop: bool, first_reduction, lanes: int, steps: int,
                     name: str) -> None:
    """A pointwise tile whose inner step takes ``steps`` input channels at once, tensorized with the
    input-rows intrinsic ``name`` (kernels/intrinsics.py): AVX2's int8 pairs into ``vpmaddwd``
    (8 lanes, 2 channels), arm64's float32 fmla by element (4 lanes, 4 channels from one load)."""
    from mnv3compile.schedules.kernels.intrinsics import intrinsic

    loops = sch.get_loops(block)
    channel_loop, pixel_loop = loops[-1], (loops[-2] if has_pixel_loop else None)
    outer, inner = sch.split(channel_loop, [None, lanes])
    rc_outer, rc_inner = sch.split(rc, [None, steps])
    tile = [outer, pixel_loop] if pixel_loop is not None else [outer]
    sch.reorder(rc_outer, *tile, inner, rc_inner)
    for loop in tile:
        sch.unroll(loop)
    init = sch.decompose_reduction(block, first_reduction)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.tensorize(inner, intrinsic(name))


def _conv_name(kind: str, kh: int, kw: int) -> str:
    return {"pointwise": "conv1x1", "depthwise": f"dwconv{kh}x{kw}"}.get(kind, f"conv{kh}x{kw}")


class ConvFamily(ReductionFamily):
    name = "conv"
    tvm_blocks = TVM_CONV_BLOCKS

    def knobs(self, isa: Isa):
        return isa.knobs.conv

    def schedule_block(self, sch, block, isa: Isa, knobs) -> Variant:
        return schedule_conv(sch, block, isa, knobs)
