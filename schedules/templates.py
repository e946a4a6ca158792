"""Kernel templates: one schedule per MobileNetV3 op class, applied to the fused kernels of an NHWC
network (schedules/layout.py).

A template never computes anything itself: it reorders, tiles, vectorizes and places the loops of a
kernel that TVM legalized and fused (conv + bias + activation + requantize, ...), so the
arithmetic -- and bit-exactness of the integer kernels -- is the kernel's own. What each one does:

- ``conv`` (pointwise 1x1, depthwise KxK, the stem's 3x3 and any other direct conv): an output tile
  of ``pixels`` outputs along a row times ``channels`` output channels (a whole number of vector
  registers) accumulates in registers over the reduction (taps, input channels), then the fused
  epilogue runs on the tile while it is still in registers and stores it once. For the pointwise
  convs this is a GEMM micro-kernel (one broadcast input value times the weight row, as many
  accumulators as registers allow); for depthwise convs one vector of channels per tap.
- ``dot4`` (int8 convs and the classifier where the ISA has vpdpbusd or sdot, on weights packed by
  schedules/dot_product.py): the conv tile, one dot-product instruction per pixel and register.
- ``gemv`` (the classifier at batch 1): the output vectorized, the reduction outside it; ``gemm``:
  the same over a few rows at once (a transformer's tokens), each weight vector feeding each row.
- ``pool`` (squeeze-excite and global average pooling, in NHWC a sum of pixel rows of channel
  vectors): channels innermost and vectorized, pixels outside.
- ``pad`` (a depthwise conv's padding, and the int8 network input's quantize + NCHW -> NHWC + pad):
  border and interior loops apart, so the interior is a plain copy (or conversion) LLVM vectorizes.
- ``elementwise`` (what is left unfused: the SE scale, lookup tables): one vectorized pass.

Each template's knobs have ISA-specific defaults (``DEFAULT_KNOBS``), which an untuned build uses,
and choices (``KNOB_CHOICES``) read as MetaSchedule decisions: fixed to each choice in turn by
'tune' (``FixedKnobs`` in schedules/tune.py), or sampled at random (``SampledKnobs``) for
MetaSchedule's own search. The name of what was applied says op, dtype, instruction where it
matters, ISA and tile, e.g. ``conv1x1_nhwc_int8_vpmaddwd_avx2_p4x24``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mnv3compile.schedules.isa import Isa


@dataclass(frozen=True)
class Applied:
    kernel: str  # the fused kernel's name
    template: str  # what was applied, e.g. "conv1x1_nhwc_float32_avx2_p7x16"


class NoTemplate(Exception):
    """The kernel is not of a shape any template covers (it keeps TVM's default schedule)."""


def _reduce_iters(sch, block) -> list:
    from tvm import tirx

    return [iv for iv in sch.get(block).iter_vars if iv.iter_type == tirx.IterVar.CommReduce]


def _extents(sch, loops) -> list[int]:
    return [int(sch.get(loop).extent) for loop in loops]


L1_WEIGHT_BYTES = 16 * 1024  # half the smallest L1 data cache of the CPUs we target (32 KiB)


def _bytes(buffer) -> int:
    count = buffer.dtype.bits // 8
    for extent in buffer.shape:
        count *= int(extent)
    return count


def _largest_divisor(n: int, limit: int) -> int:
    return max(d for d in range(1, max(1, min(n, limit)) + 1) if n % d == 0)


def _fitting_lanes(extent: int, lanes: int) -> int:
    """The widest vector of at most ``lanes`` (a power of two) whose lanes divide ``extent``: with
    AVX-512's 16 fp32 lanes, MobileNetV3's 24/40/72/88/120 channels run in 8-lane vectors."""
    while lanes > 1 and extent % lanes:
        lanes //= 2
    return lanes


def _tile(width: int, registers: int, pixels_want: int, vectors_want: int, wide_rows: bool) -> tuple[int, int]:
    """(pixels, vectors) of an output tile: pixels divides the row's ``width``, vectors divides the
    ``registers`` of channels, each at most what is wanted. With ``wide_rows``, when the width has
    no divisor near the wanted pixels (7 or 14 against 4), the tile's accumulators go to more
    pixels rather than idling: 7x1 instead of 1x3 (AVX2 int8 pointwise 7x7x576 -> 96: 155 -> 112 us
    on Zen 4). Not on NEON, where it cost instructions (Small int8 for Cortex-A76: 12.0 -> 13.7 M in
    the sdot kernels; 7 broadcasts per weight load)."""
    pixels = _largest_divisor(width, pixels_want)
    vectors = _largest_divisor(registers, vectors_want)
    if wide_rows and pixels < pixels_want:
        accumulators = pixels_want * vectors
        wider = _largest_divisor(width, accumulators)
        if wider > pixels:
            pixels, vectors = wider, _largest_divisor(registers, max(1, accumulators // wider))
    if wide_rows and pixels * vectors == 1 < pixels_want * vectors_want:
        # A 1x1 tile shares nothing (a broadcast per weight vector): a channel count with no
        # divisor near the wanted vectors (184 = 23 x 8) gives its accumulators to pixels instead:
        # AVX2 int8 14x14x80 -> 184: 1x8 61 -> 7x8 48 us.
        pixels = _largest_divisor(width, pixels_want * vectors_want)
    return pixels, vectors


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
    budget is 14 of its 16: tiles that need all 16 (4x3, 2x5, 14x1) ran up to 1.7x slower (spills,
    presumably), where 2x4 (14x14x112 -> 672: 374 -> 309 us a call) and 4x2 (112x112x16
    -> 64: 289 -> 241 us) beat the 7x1 default (Large fp32 on Zen 4 as znver3)."""
    tiles = [(pixels, vectors)
             for pixels in range(1, min(width, 16) + 1) if width % pixels == 0
             for vectors in range(1, min(registers, 12) + 1) if registers % vectors == 0
             if pixels * vectors + vectors + 1 <= budget]
    return max(tiles, key=lambda tile: (_fma_efficiency(*tile), tile[0] * tile[1]))


def _vectorize_innermost(sch, block, lanes: int) -> None:
    """Unroll-free vectorization of a spatial block's innermost loop (in chunks of ``lanes``)."""
    loops = sch.get_loops(block)
    if not loops:
        return
    inner = loops[-1]
    extent = int(sch.get(inner).extent)
    lanes = _fitting_lanes(extent, lanes) if extent > lanes else lanes
    if extent % lanes == 0 and extent > lanes:
        _, inner = sch.split(inner, [None, lanes])
    if extent % lanes == 0 or extent < lanes:
        sch.vectorize(inner)


# ----------------------------------------------------------------------------------------------
# conv: pointwise, depthwise, stem
# ----------------------------------------------------------------------------------------------

def conv_kind(sch, block) -> tuple[str, int, int]:
    """("pointwise" | "depthwise" | "conv", kernel height, kernel width) of a legalized NHWC conv."""
    node = sch.get(block)
    weight = node.reads[1].source  # HWIO
    kh, kw, cin_per_group, _ = (int(d) for d in weight.shape)
    if node.name_hint.startswith("group_conv2d_nhwc") and cin_per_group == 1:
        return "depthwise", kh, kw
    if kh == kw == 1:
        return "pointwise", kh, kw
    return "conv", kh, kw


def schedule_conv(sch, block, isa: Isa, knobs: dict) -> str:
    dtype = str(sch.get(block).reads[0].source.dtype)
    kind, kh, kw = conv_kind(sch, block)
    n, y, x, f, ry, rx, rc = sch.get_loops(block)
    _, out_h, out_w, channels = _extents(sch, [n, y, x, f])
    lanes = _fitting_lanes(channels, isa.lanes(dtype))
    if out_h * out_w == 1:  # squeeze-excite's FCs are GEMVs
        pixels_want, vectors_want = 1, knobs["gemv"]
    else:
        pixels_want, vectors_want = knobs[f"{kind}_{dtype}"] if f"{kind}_{dtype}" in knobs else knobs[kind]
    if channels >= lanes:
        pixels, vectors = _tile(out_w, channels // lanes, pixels_want, vectors_want, knobs.get("wide_rows", False))
        # read only where it applies, so tuning's space for other kernels has no idle decision
        gemm = kind == "pointwise" and dtype == "float32" and out_h * out_w > 1
        budget = knobs.get("fma_registers", 0) if gemm else 0
        if budget:
            modeled = _fma_tile(out_w, channels // lanes, budget)
            if _fma_efficiency(*modeled) > MODEL_MARGIN * _fma_efficiency(pixels, vectors):
                pixels, vectors = modeled
    else:
        pixels, vectors = _largest_divisor(out_w, pixels_want), 0
    tile_channels = vectors * lanes if vectors else channels
    fo, fi = sch.split(f, [None, tile_channels])
    # Channel blocks outermost keep a block's weights in L1 while every pixel passes by. When the
    # whole weight fits in L1 anyway (depthwise convs, pointwise ones of few channels), pixels
    # outermost read each input pixel's channels once and in order, not once per channel block:
    # Large's 3x3 stride-2 depthwise conv over 112x112x64, fp32 AVX2 on Zen 4, 259 -> 103 us.
    pixel_major = _bytes(sch.get(block).reads[1].source) <= L1_WEIGHT_BYTES
    if pixels > 1:
        xo, xi = sch.split(x, [None, pixels])
        tile, inner = [xo], [xi]
    else:
        tile, inner = [x], []
    outer = [y, *tile, fo] if pixel_major else [fo, y, *tile]
    sch.reorder(n, *outer, ry, rx, rc, *inner, fi)
    tile_loop = outer[-1]
    epilogue = sch.get_consumers(block)
    padded = _padding_epilogue(sch, epilogue)
    if epilogue and not padded:
        sch.set_scope(block, 0, "local")  # the accumulator tile: registers once unrolled
    else:  # a bare conv (no bias, no activation: PaddleOCR's FPN) writes the kernel's output itself,
        # and one whose epilogue pads writes its accumulators out for the pad template:
        sch.cache_write(block, 0, "local")  # its tile goes to registers and a copy is its epilogue
        epilogue = sch.get_consumers(block)
    if len(epilogue) == 1:
        sch.reverse_compute_at(epilogue[0], tile_loop)
    cin = int(sch.get(rc).extent)
    pairs = (knobs.get("int8_pairs") and dtype == "int8" and kind == "pointwise" and cin % 2 == 0
             and tile_channels % 8 == 0 and lanes == 8)
    if pairs:
        _int8_pairs_tile(sch, block, rc, pixels > 1, ry)
    else:
        _vector_tile(sch, sch.get_loops(block)[-1], lanes, sch.get_loops(block)[-2] if pixels > 1 else None)
        sch.decompose_reduction(block, ry)  # the init copies the tile's loops, vector and unroll included
    if kind != "pointwise":
        sch.unroll(rx)
    if len(epilogue) == 1:
        loops = sch.get_loops(epilogue[0])
        _vector_tile(sch, loops[-1], lanes, loops[-2] if pixels > 1 else None)
    if padded:
        schedule_padding(sch, padded, isa)
    technique = "_vpmaddwd" if pairs else ""
    return f"{_conv_name(kind, kh, kw)}_nhwc_{dtype}{technique}_{isa.name}_p{pixels}x{tile_channels}"


def _int8_pairs_tile(sch, block, rc, has_pixel_loop: bool, first_reduction) -> None:
    """The int8 pointwise tile on AVX2: input channels two at a time into ``vpmaddwd``."""
    from mnv3compile.schedules.intrinsics import INT8_PAIRS_X8_AVX2, intrinsic

    loops = sch.get_loops(block)
    channel_loop, pixel_loop = loops[-1], (loops[-2] if has_pixel_loop else None)
    outer, inner = sch.split(channel_loop, [None, 8])
    rc_outer, rc_inner = sch.split(rc, [None, 2])
    tile = [outer, pixel_loop] if pixel_loop is not None else [outer]
    sch.reorder(rc_outer, *tile, inner, rc_inner)
    for loop in tile:
        sch.unroll(loop)
    init = sch.decompose_reduction(block, first_reduction)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.tensorize(inner, intrinsic(INT8_PAIRS_X8_AVX2))


def _vector_tile(sch, channel_loop, lanes: int, pixel_loop=None) -> None:
    """A tile's loops: whole vectors of channels innermost, every register of the tile unrolled."""
    extent = int(sch.get(channel_loop).extent)
    if extent % lanes == 0:
        outer, inner = sch.split(channel_loop, [None, lanes])
        if pixel_loop is not None:
            sch.reorder(outer, pixel_loop)  # one vector per (register column, pixel)
        sch.vectorize(inner)
        sch.unroll(outer)
    if pixel_loop is not None:
        sch.unroll(pixel_loop)


def schedule_dot4(sch, block, isa: Isa, knobs: dict) -> str:
    """schedules/dot_product.py's kernel: a tile of ``pixels`` outputs along a row times
    ``vectors`` vectors of output channels accumulates over the groups of input channels, one
    vpdpbusd/sdot/vpmaddubsw step per (pixel, vector) and group of 4 (smlal: 16 smlal per group of
    8); the epilogue runs on the tile in registers."""
    from mnv3compile.schedules.dot_product import DOT4_ISAS, dot4_lanes
    from mnv3compile.schedules.intrinsics import dot4_name, intrinsic

    loops = sch.get_loops(block)
    reductions = len(_reduce_iters(sch, block))  # [ry, rx,] group, lane
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
    padded = _padding_epilogue(sch, epilogue)
    is_conv = len(spatial) == 3  # n, y, x (a matmul of a row has one spatial loop)
    # A conv over one pixel (squeeze-excite's FCs) is a GEMV as much as the classifier is.
    gemv = not is_conv or _extents(sch, spatial) == [1, 1, 1]
    pixels_want, vectors_want = (1, knobs["gemv"]) if gemv else knobs["dot4"]
    # Knobs count vector registers; smlal's 8 int32 lanes take two of NEON's.
    vectors_want = max(1, vectors_want // max(1, lanes * 4 // isa.vector_bytes))
    width = int(sch.get(spatial[-1]).extent) if is_conv else 1
    instruction = DOT4_ISAS[isa.name][0]
    # smlal reads each weight vector once per tile, widened by its own sxtl: a 7-wide row as one
    # 7x1 tile instead of seven 1x2 ones cut Small's instructions on Cortex-A53 35.1 -> 31.9 M.
    wide_rows = knobs.get("wide_rows", False) or instruction == "smlal"
    pixels, vectors = _tile(width, outputs // lanes, pixels_want, vectors_want, wide_rows)
    fo, fi = sch.split(f, [None, vectors * lanes])
    fv, fl = sch.split(fi, [None, lanes])
    if is_conv:
        n, y, x = spatial
        xo, xi = sch.split(x, [None, pixels])
        sch.reorder(n, fo, y, xo, *window, group, xi, fv, fl)
        tile_loop, tile = xo, [xi, fv]
    else:
        sch.reorder(*spatial, fo, group, fv, fl)
        tile_loop, tile = fo, [fv]
    if padded:  # the tile goes to registers and a copy to memory; the pad reads it from there
        epilogue = [sch.cache_write(block, 0, "local")]
    else:
        sch.set_scope(block, 0, "local")
    sch.reverse_compute_at(epilogue[0], tile_loop)
    init = sch.decompose_reduction(block, (window or [group])[0])
    _split_vectorize(sch, sch.get_loops(init)[-1], lanes)
    for loop in tile:
        sch.unroll(loop)
    sch.tensorize(fl, intrinsic(dot4_name(lanes, instruction)))
    loops = sch.get_loops(epilogue[0])
    _vector_tile(sch, loops[-1], lanes, loops[-2] if is_conv and pixels > 1 else None)
    if padded:
        schedule_padding(sch, padded, isa)
    llvm_instruction = {"vnni": "vpdpbusd", "sdot": "sdot", "pmaddubsw": "vpmaddubsw", "smlal": "smlal"}[instruction]
    if window:
        sch.unroll(window[-1])
    if is_conv:
        return f"conv{kh}x{kw}_nhwc_int8_{llvm_instruction}_{isa.name}_p{pixels}x{vectors * lanes}"
    return f"gemv_int8_{llvm_instruction}_{isa.name}_n{vectors * lanes}"


def _conv_name(kind: str, kh: int, kw: int) -> str:
    return {"pointwise": "conv1x1", "depthwise": f"dwconv{kh}x{kw}"}.get(kind, f"conv{kh}x{kw}")


# ----------------------------------------------------------------------------------------------
# gemv (classifier), pool (SE / global average), elementwise
# ----------------------------------------------------------------------------------------------

GEMM_ROWS = 4  # rows of a GEMM tile: each weight vector loaded feeds this many accumulators


def schedule_gemv(sch, block, isa: Isa, knobs: dict) -> str:
    """A GEMV: a tile of output vectors in registers over the whole reduction. A GEMM of M rows
    (tokens) runs GEMM_ROWS rows per tile, each weight vector read once for all of them."""
    dtype = str(sch.get(block).reads[0].source.dtype)
    loops = sch.get_loops(block)
    *spatial, j, k = loops
    rows = [e for e in _extents(sch, spatial) if e != 1]
    if len(rows) > 1 or (rows and len(spatial) != 1):
        raise NoTemplate
    (outputs,) = _extents(sch, [j])
    lanes = _fitting_lanes(outputs, isa.lanes(dtype))
    if lanes < 4:
        raise NoTemplate
    row_tile = _largest_divisor(rows[0], GEMM_ROWS) if rows else 1
    vectors = max(1, knobs["gemv"] // row_tile)
    tile = lanes * _largest_divisor(outputs // lanes, vectors)
    jo, ji = sch.split(j, [None, tile])
    if row_tile > 1:
        io, ii = sch.split(spatial[0], [None, row_tile])
        sch.reorder(io, jo, k, ii, ji)
        sch.unroll(ii)
    else:
        sch.reorder(jo, k, ji)
    epilogue = sch.get_consumers(block)
    if len(epilogue) == 1:
        sch.reverse_compute_at(epilogue[0], jo)
    sch.set_scope(block, 0, "local")
    _split_vectorize(sch, sch.get_loops(block)[-1], lanes)
    sch.decompose_reduction(block, k)
    if len(epilogue) == 1:
        _split_vectorize(sch, sch.get_loops(epilogue[0])[-1], lanes)
    if row_tile > 1:
        return f"gemm_{dtype}_{isa.name}_m{row_tile}n{tile}"
    return f"gemv_{dtype}_{isa.name}_n{tile}"


def _split_vectorize(sch, loop, lanes: int) -> None:
    extent = int(sch.get(loop).extent)
    if extent % lanes:
        return
    outer, inner = sch.split(loop, [None, lanes])
    sch.unroll(outer)
    sch.vectorize(inner)


def schedule_pool(sch, block, isa: Isa, knobs: dict) -> str:
    """A reduction over pixels of an NHWC tensor: channels last in the loop nest and vectorized."""
    dtype = str(sch.get(block).reads[0].source.dtype)
    loops = sch.get_loops(block)
    reduce = _reduce_iters(sch, block)
    spatial_loops = loops[:len(loops) - len(reduce)]
    reduce_loops = loops[len(loops) - len(reduce):]
    channels = int(sch.get(spatial_loops[-1]).extent)
    lanes = _fitting_lanes(channels, isa.lanes(dtype))
    if lanes < 4:
        raise NoTemplate
    sch.reorder(*spatial_loops[:-1], *reduce_loops, spatial_loops[-1])
    _split_vectorize(sch, sch.get_loops(block)[-1], lanes)
    sch.decompose_reduction(block, reduce_loops[0])
    for consumer in sch.get_consumers(block):
        _vectorize_innermost(sch, consumer, lanes)
    return f"pool_nhwc_{dtype}_{isa.name}_c{lanes}"


def _index_var(index):
    """The variable of an index ``v``, ``v + c`` or ``v - c``, else None."""
    from tvm import tirx

    while isinstance(index, (tirx.Add, tirx.Sub)) and isinstance(index.b, tirx.IntImm):
        index = index.a
    return index if isinstance(index, tirx.Var) else None


def _transposes(sch, block) -> bool:
    """Whether the block reads along another axis than it writes (a layout change: NCHW -> NHWC)."""
    node = sch.get(block)
    written = _index_var(node.writes[0].region[-1].min)
    for read in node.reads:
        inner = _index_var(read.region[-1].min) if len(read.region) else None
        if inner is None or written is None or inner.same_as(written):
            continue
        if any(iter_var.var.same_as(inner) for iter_var in node.iter_vars):
            return True
    return False


def _padding_epilogue(sch, epilogue: list):
    """The conv's one epilogue when it also pads the output for the next conv (FuseOps joins such
    a pad to its producer when the pad is uneven, as TF's stride-2 "same" padding is), else None.
    Computed at the conv's tile, it would write only the tile's positions and never the borders:
    the conv then writes its accumulators out and the pad template runs over the whole output."""
    return epilogue[0] if len(epilogue) == 1 and _box_guard(sch, epilogue[0]) is not None else None


def _box_guard(sch, block) -> dict[int, tuple[int, int]] | None:
    """{axis: (low, high)} when the block writes ``if_then_else(low <= v < high and ..., value,
    constant)`` over its iteration axes (a pad, with or without a fused quantize and layout
    change; composed pads nest such guards, their boxes intersect), else None."""
    import tvm
    from tvm import tirx

    node = sch.get(block)
    axes = [iv.var for iv in node.iter_vars]
    extents = [int(iv.dom.extent) for iv in node.iter_vars]
    bounds = {axis: [0, extent] for axis, extent in enumerate(extents)}
    guard = tvm.ir.Op.get("prim.if_then_else")

    def bound(var, low=None, high=None) -> bool:
        axis = next((k for k, candidate in enumerate(axes) if candidate.same_as(var)), None)
        if axis is None:
            return False
        if low is not None:
            bounds[axis][0] = max(bounds[axis][0], low)
        if high is not None:
            bounds[axis][1] = min(bounds[axis][1], high)
        return True

    def box(term) -> bool:
        if isinstance(term, tirx.And):
            return box(term.a) and box(term.b)
        if isinstance(term, tirx.LE) and isinstance(term.a, tirx.IntImm) and isinstance(term.b, tirx.Var):
            return bound(term.b, low=int(term.a))
        if isinstance(term, tirx.LT) and isinstance(term.a, tirx.Var) and isinstance(term.b, tirx.IntImm):
            return bound(term.a, high=int(term.b))
        return False

    def constant(term) -> bool:  # a pad's fill; a concat's other branch is another load
        while isinstance(term, tirx.Cast):
            term = term.value
        return isinstance(term, (tirx.IntImm, tirx.FloatImm))

    value, guards = getattr(node.body, "value", None), 0
    while isinstance(value, tvm.ir.Call) and value.op.same_as(guard):
        if not box(value.args[0]) or not constant(value.args[2]):
            return None
        value, guards = value.args[1], guards + 1
    if not guards:
        return None
    return {axis: (low, high) for axis, (low, high) in bounds.items() if (low, high) != (0, extents[axis])}


def schedule_padding(sch, block, isa: Isa) -> str:
    """A pad (and the network input's quantize + NCHW -> NHWC + pad): the loops of every padded axis
    but the innermost are partitioned into border, interior and border, so the interior loop nest
    has no guard and copies (or converts) plain rows that LLVM vectorizes, the borders store the
    constant. The innermost axis keeps its guard: the input's 3 -> 4 channel pad then folds into a
    select per lane. Small int8's input kernel on Zen 4: 108 -> 18 us; its pads 8.5 -> 4.2 us."""
    bounds = _box_guard(sch, block)
    if bounds is None:
        raise NoTemplate("a guarded load that is not a pad")
    axes = len(sch.get(block).iter_vars)
    layout_change = "_transpose" if _transposes(sch, block) else ""
    outer = sorted(axis for axis in bounds if axis != axes - 1)
    if not outer:  # a pad of the innermost axis alone: nothing to partition
        raise NoTemplate("a guarded load (padding) of the innermost axis only")
    interior = block
    for axis in outer:
        loop = sch.get_loops(interior)[axis - axes]  # loops above a partition's block are not its own
        low, high = bounds[axis]
        extent = int(sch.get(loop).extent)
        # border before, interior, border after; loop_partition wants the last part as None
        factors = ([low] if low else []) + [high - low] + ([extent - high] if high < extent else [])
        factors[-1] = None
        interior = sch.get_child_blocks(sch.loop_partition(loop, factors)[1 if low else 0])[0]
    dtype = str(sch.get(interior).writes[0].source.dtype)
    return f"pad{layout_change}_{dtype}_{isa.name}"


def schedule_elementwise(sch, blocks, isa: Isa) -> str:
    # A load guarded by if_then_else (a pad) defeats TVM's vectorizer: fused and "vectorized", the
    # loop became a scalar one with lane bookkeeping, 3x slower than the plain loop nest (Small int8
    # on Zen 4: its input pad 390 vs 128 us); such kernels get the padding template.
    guarded = [block for block in blocks if "if_then_else" in str(sch.get(block).body)]
    if guarded:
        if len(blocks) != 1:
            raise NoTemplate("a guarded load (padding) fused with other stages")
        return schedule_padding(sch, blocks[0], isa)
    # A layout change fused and vectorized along its output gathers every lane: the network
    # input's NCHW -> NHWC took 217 us that way, 13 us as TVM's plain loop nest (Small fp32, Zen 4;
    # vectorized along the input instead, with scattered stores: 16 us). Such stages keep their
    # loop nest; the others of the kernel are vectorized (a separable resize's column pass).
    plain = [block for block in blocks if not _transposes(sch, block)]
    if not plain:
        raise NoTemplate("a layout change (transpose)")
    dtypes = set()
    for block in plain:
        node = sch.get(block)
        dtype = str(node.writes[0].source.dtype)
        dtypes.add(dtype)
        loops = sch.get_loops(block)
        # Vectors no wider than what divides the innermost (channel) axis: one that crossed a row
        # made a per-channel operand's index (c % 120) a gather, lane by lane (Large fp32's SE
        # scale at 28x28x120: 180 us a call with 16 lanes, 12 us with 8; Zen 4).
        lanes = _fitting_lanes(int(sch.get(loops[-1]).extent), isa.lanes(dtype)) if loops else 1
        if len(loops) > 1:
            sch.fuse(*loops)
        _vectorize_innermost(sch, block, lanes)
    return f"elementwise_{'_'.join(sorted(dtypes))}_{isa.name}"


# ----------------------------------------------------------------------------------------------
# Dispatch
# ----------------------------------------------------------------------------------------------

# Defaults per ISA family, chosen by measuring Small's kernels one by one (AMD EPYC Zen 3, AVX2):
# conv kinds -> (pixels per tile, vector registers of channels per tile), a "_int8" entry where
# int8 differs; gemv -> vector registers of outputs. AVX2 has 16 ymm registers: a 7x2 fp32
# pointwise tile (14 accumulators) spilled and ran 17% slower than 7x1; int8 accumulates with
# widening multiplies that need no broadcast register per pixel, and 4x3 was 17% faster there;
# its input channels two at a time through ``vpmaddwd`` ("int8_pairs") a further 7%. AVX2's dot4
# (vpmaddubsw, 7-bit weights): one pixel by up to 8 vectors, so one broadcast and its sign flip
# feed up to 8 weight vectors streamed from L1 (1x4 had beaten 4x2, 4x3, 2x4, 2x3 and 7x1 by 2-8%
# on Small; 1x8 then ran Large's 40- to 672-channel kernels 5-45% faster than 1x4, where 5, 15 or
# 25 vectors had left 1x8 or 1x24 tiles; Zen 4 as znver3). "wide_rows":
# rows whose width has no divisor near the wanted pixels, and channel counts that would leave a
# 1x1 tile, get wider tiles (``_tile``; x86, and arm64's smlal kernels).
# "fma_registers": float pointwise tiles ranked by ``_fma_tile``'s throughput model within that
# many registers, where it predicts a clear gain over the knob's (AVX2 only: measured there).
DEFAULT_KNOBS = {
    "avx2": {"pointwise": (7, 1), "pointwise_int8": (4, 3), "int8_pairs": True, "dot4": (1, 8), "depthwise": (7, 1),
             "conv": (4, 2), "gemv": 5, "wide_rows": True, "fma_registers": 14},
    "avx512": {"pointwise": (7, 2), "pointwise_int8": (4, 3), "dot4": (7, 3), "depthwise": (7, 1), "conv": (4, 2),
               "gemv": 5, "wide_rows": True},
    "neon": {"pointwise": (7, 3), "pointwise_int8": (4, 3), "dot4": (4, 4), "depthwise": (7, 2), "conv": (4, 3),
             "gemv": 5},
    "scalar": {"pointwise": (4, 1), "depthwise": (4, 1), "conv": (4, 1), "gemv": 1},
}


def default_knobs(isa: Isa) -> dict:
    family = isa.name.split("-")[0]
    return DEFAULT_KNOBS.get("avx2" if family == "sse" else family, DEFAULT_KNOBS["scalar"])


# What tuning may choose from (schedules/tune.py samples these as MetaSchedule decisions): for a
# conv kind, (pixels per tile, vector registers of channels per tile); for gemv, registers of
# outputs. A template clamps a choice to the kernel (the largest divisor of its width or channel
# count not above it), so every choice is valid for every kernel.
KNOB_CHOICES = {
    "pointwise": ((1, 2, 4, 7, 8), (1, 2, 3, 4)),
    "dot4": ((1, 2, 4, 7, 8), (1, 2, 3, 4, 6, 8)),
    "depthwise": ((1, 2, 4, 7, 8), (1, 2, 3)),
    "conv": ((1, 2, 4, 7), (1, 2, 3)),
    "gemv": (1, 2, 3, 4, 5, 8),
    "fma_registers": (0, 14),  # 0: the pointwise knob's tile as is; else the FMA model's (float, x86)
}


class SampledKnobs:
    """Knobs read from a traced schedule's decisions: each one the template asks for is sampled
    (``sample_categorical``, uniform over ``KNOB_CHOICES``) when first read, so a kernel's trace
    holds exactly the decisions its template used. Knobs with no choices keep the ISA's default."""

    def __init__(self, sch, isa: Isa):
        self.sch = sch
        self.defaults = default_knobs(isa)
        self.values: dict = {}

    def __contains__(self, key: str) -> bool:
        return key in self.defaults

    def get(self, key: str, default=None):
        return self[key] if key in self else default

    def __getitem__(self, key: str):
        if key not in self.values:
            self.values[key] = self._sample(key)
        return self.values[key]

    def _sample(self, key: str):
        choices = KNOB_CHOICES.get(key.removesuffix("_int8"))
        if choices is None:
            return self.defaults[key]
        if isinstance(choices[0], tuple):
            return tuple(self._categorical(options) for options in choices)
        return self._categorical(choices)

    def _categorical(self, options) -> int:
        decision = self.sch.sample_categorical(list(options), [1.0 / len(options)] * len(options))
        return int(self.sch.get(decision))


def schedule_kernel(sch, isa: Isa, knobs) -> str:
    """Schedule the kernel in ``sch`` (a PrimFunc's schedule) in place with its template; its name,
    or NoTemplate (``sch`` may then be partly scheduled: use ``apply_template`` to try)."""
    from mnv3compile.schedules.dot_product import DOT4_BLOCK

    try:
        blocks = sch.get_child_blocks(sch.get_sblock("root"))
    except Exception as exc:  # a kernel without a root block (already lowered)
        raise NoTemplate from exc
    reductions = [b for b in blocks if _reduce_iters(sch, b)]
    if not reductions:
        return schedule_elementwise(sch, blocks, isa)
    if len(reductions) != 1:
        raise NoTemplate
    block = reductions[0]
    name = sch.get(block).name_hint
    try:
        if name.startswith(DOT4_BLOCK):
            return schedule_dot4(sch, block, isa, knobs)
        if name.startswith(("conv2d_nhwc", "group_conv2d_nhwc")):
            return schedule_conv(sch, block, isa, knobs)
        if name.startswith("matmul"):
            return schedule_gemv(sch, block, isa, knobs)
        if len(sch.get(block).writes[0].source.shape) == 4:
            return schedule_pool(sch, block, isa, knobs)
    except NoTemplate:
        raise
    except Exception as exc:  # a schedule primitive refused this kernel's shape
        raise NoTemplate(str(exc)) from exc
    raise NoTemplate


def apply_template(func, isa: Isa, knobs: dict | None = None):
    """(scheduled PrimFunc, template name), or NoTemplate."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    template = schedule_kernel(sch, isa, knobs or default_knobs(isa))
    return sch.mod["main"], template


@dataclass
class TemplateReport:
    applied: list[Applied]
    default: list[str]  # kernels that kept TVM's default schedule
    tuned: list[str]  # kernels left as a tuning database scheduled them

    def to_json(self) -> dict:
        return {"templated": len(self.applied), "kernels": len(self.applied) + len(self.default) + len(self.tuned),
                "templates": {a.kernel: a.template for a in self.applied}, "default_schedule": self.default,
                "tuned": self.tuned}


def apply_templates(module, isa: Isa, knobs: dict | None = None, skip: set[str] = frozenset()):
    """(module with every kernel a template covers scheduled by it, TemplateReport); kernels named
    in ``skip`` (already tuned) are left as they are."""
    from tvm import tirx

    result = module.clone()
    report = TemplateReport([], [], [])
    for global_var, func in module.functions.items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        if global_var.name_hint in skip:
            report.tuned.append(global_var.name_hint)
            continue
        try:
            scheduled, template = apply_template(func, isa, knobs)
        except NoTemplate:
            report.default.append(global_var.name_hint)
            continue
        result.update_func(global_var, scheduled)
        report.applied.append(Applied(global_var.name_hint, template))
    return result, report
