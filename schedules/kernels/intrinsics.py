"""Tensor intrinsics the int8 templates tensorize with, each registered once under its name.

``int8_pairs_x8_avx2``: 8 int32 accumulators += two int8 inputs (adjacent input channels of one
pixel, NHWC) times the two matching rows of an HWIO weight (8 output channels each). AVX2 has no
int8 dot product; ``vpmaddwd`` multiplies int16 pairs and adds each pair into an int32 lane, so
the two inputs are widened and broadcast as one int32, the two weight rows widened and
interleaved, and one ``vpmaddwd`` does 16 multiply-adds. Exact: |int8 x int8| sums of two fit in
int32, and int8 values never make the -32768 x -32768 case.

``int8_dot4_x{16,8}_vnni``, ``int8_dot4_x4_sdot`` and ``int8_dot4_x8_pmaddubsw``: L int32
accumulators += four int8 inputs (adjacent input channels of one pixel) times an L x 4 block of
weights packed [output][4 inputs] (mnv3compile/relax/dot_products.py), one ``vpdpbusd`` (AVX-512
VNNI, zmm or ymm) or ``sdot`` (arm64 dotprod), or on AVX2 ``vpmaddubsw`` + ``vpmaddwd`` by ones
(exact for weights in -64..63 only; see ``_dot4_update``). ``vpdpbusd`` multiplies unsigned by
signed bytes: the VNNI intrinsics compute (x + 128) * w, the x ^ 0x80 of the broadcast input, and
say so in their description, so the kernel's arithmetic is exactly what runs; the kernel subtracts
128 x sum(w) once per output. LLVM 22 declares the VNNI intrinsics on byte vectors (<64 x i8>), not
on <16 x i32> as TVM's own ``dot_16x4_vnni`` still passes them (which fails LLVM's verifier).
"""

from __future__ import annotations

INT8_PAIRS_X8_AVX2 = "mnv3compile_int8_pairs_x8_avx2"


def dot4_name(lanes: int, instruction: str) -> str:
    return f"mnv3compile_int8_dot{depth(instruction)}_x{lanes}_{instruction}"


# NEON without dotprod (Cortex-A53/A55, Pixel 2's A73): 8 input channels per step, XNNPACK's
# "mlal lane" way: the 8 int8 inputs widened to int16 once, then per input channel k one
# ``smlal``/``smlal2`` by element (lane k of the inputs) into each half of 8 int32 accumulators,
# the weights (8 output channels of input channel k, int8) widened by one ``sxtl``.
SMLAL_DEPTH = 8


def depth(instruction: str) -> int:
    """Input channels one step of the instruction consumes (its weights' innermost group)."""
    return SMLAL_DEPTH if instruction == "smlal" else 4


def _smlal_by_lane(inputs_buffer, weights_buffer, acc_buffer):
    """acc (int32x8) + sum over k of inputs[k] * weights[k, 0:8], as NEON's smull by element."""
    from tvm import tirx

    inputs = tirx.Cast("int16x8", inputs_buffer.vload([0], "int8x8"))
    halves = [acc_buffer.vload([0], "int32x4"), acc_buffer.vload([4], "int32x4")]
    for k in range(SMLAL_DEPTH):
        weights = tirx.Cast("int16x8", weights_buffer.vload([k, 0], "int8x8"))
        lane = tirx.Shuffle([inputs], [k] * 4)
        for half in range(2):
            part = tirx.Shuffle([weights], list(range(4 * half, 4 * half + 4)))
            halves[half] = halves[half] + tirx.call_llvm_pure_intrin(
                "int32x4", "llvm.aarch64.neon.smull.v4i32", part, lane)
    return tirx.Shuffle(halves, list(range(8)))


def _pairs_by_vpmaddwd(inputs_buffer, weights_buffer, acc_buffer):
    """acc (int32x8) + inputs[0] * weights[0, :] + inputs[1] * weights[1, :], as one vpmaddwd: the two
    inputs widened and broadcast as one int32, the two weight rows widened and interleaved."""
    from tvm.script import tirx as T

    pair = T.reinterpret(T.Cast("int16x2", inputs_buffer.vload([0], "int8x2")), dtype="int32")
    inputs = T.reinterpret(T.broadcast(pair, 8), dtype="int16x16")
    rows = [T.Cast("int16x8", weights_buffer.vload([k, 0], "int8x8")) for k in range(2)]
    weights = T.Shuffle(rows, [lane for i in range(8) for lane in (i, 8 + i)])
    return acc_buffer.vload([0], "int32x8") + T.call_llvm_pure_intrin("int32x8", "llvm.x86.avx2.pmadd.wd",
                                                                       inputs, weights)


def _register_input_rows(name: str, steps: int, update, lanes: int = 8, dtype: str = "int8",
                         accumulator: str = "int32") -> None:
    """An intrinsic adding ``steps`` inputs (adjacent input channels of one pixel) times a
    (steps, lanes) weight block whose rows are input channels (any row stride: an HWIO weight, or
    packed) into ``lanes`` accumulators, computed as ``update(inputs, weights, accumulators)``;
    int8 data into int32 accumulators, or float32 into float32."""
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    def widened(value):
        return T.Cast(accumulator, value) if dtype != accumulator else value

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        row = T.int64()
        A = T.match_buffer(a, (steps,), dtype, offset_factor=1)
        B = T.match_buffer(b, (steps, lanes), dtype, offset_factor=1, strides=[row, 1])
        C = T.match_buffer(c, (lanes,), accumulator, offset_factor=1, scope="local")
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:steps], B[0:steps, 0:lanes])
            T.writes(C[0:lanes])
            for i, k in T.grid(lanes, steps):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + widened(A[vk]) * widened(B[vk, vi])

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        row = T.int64()
        A = T.match_buffer(a, (steps,), dtype, offset_factor=1)
        B = T.match_buffer(b, (steps, lanes), dtype, offset_factor=1, strides=[row, 1])
        C = T.match_buffer(c, (lanes,), accumulator, offset_factor=1, scope="local")
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:steps], B[0:steps, 0:lanes])
            T.writes(C[0:lanes])
            C[T.ramp(0, 1, lanes)] = update(A, B, C)

    TensorIntrin.register(name, desc, impl, override=True)


# instruction -> (LLVM intrinsic per lanes, input offset that makes the input operand unsigned)
DOT4_INSTRUCTIONS = {
    "vnni": ({16: "llvm.x86.avx512.vpdpbusd.512", 8: "llvm.x86.avx512.vpdpbusd.256"}, 128),
    "sdot": ({4: "llvm.aarch64.neon.sdot.v4i32.v16i8"}, 0),
    "pmaddubsw": ({8: "llvm.x86.avx2.pmadd.ub.sw"}, 128),
}


def _dot4_update(instruction: str, llvm_name: str, lanes: int, acc, inputs, weights):
    """The accumulator plus one dot4 step, as the instruction computes it. AVX2's ``vpmaddubsw``
    adds unsigned x signed byte products in pairs into int16 lanes (saturating), and
    ``vpmaddwd`` by ones adds the pairs into int32 lanes: exact where the weights lie in
    [-64, 63] (255 x 64 x 2 < 2^15), which the dispatch checks on the constant weights
    (mnv3compile/relax/dot_products.py)."""
    from tvm.script import tirx as T

    acc_type = f"int32x{lanes}"
    if instruction != "pmaddubsw":
        return T.call_llvm_pure_intrin(acc_type, llvm_name, acc, inputs, weights)
    pairs = T.call_llvm_pure_intrin(f"int16x{2 * lanes}", llvm_name, inputs, weights)
    ones = T.broadcast(T.int16(1), 2 * lanes)
    return acc + T.call_llvm_pure_intrin(acc_type, "llvm.x86.avx2.pmadd.wd", pairs, ones)


def _register_int8_dot4(lanes: int, instruction: str) -> None:
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    llvm_names, offset = DOT4_INSTRUCTIONS[instruction]
    llvm_name, acc_type, byte_type = llvm_names[lanes], f"int32x{lanes}", f"int8x{4 * lanes}"
    # The input's 4 bytes as one int32, made unsigned (x ^ 0x80 per byte = x + 128) when the
    # instruction wants it: on the scalar, before the broadcast (LLVM 22 hung compiling the
    # xor of the broadcast vector).
    flip = -0x7F7F7F80 if offset else 0  # 0x80808080 as int32

    def widened(value):  # what the instruction multiplies: x, or x + 128 (VNNI)
        return T.Cast("int32", value) + offset if offset else T.Cast("int32", value)

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (4,), "int8", offset_factor=1)
        B = T.match_buffer(b, (lanes, 4), "int8", offset_factor=1)
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1, scope="local")
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:4])
            T.writes(C[0:lanes])
            for i, k in T.grid(lanes, 4):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + widened(A[vk]) * T.Cast("int32", B[vi, vk])

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (4,), "int8", offset_factor=1)
        B = T.match_buffer(b, (lanes, 4), "int8", offset_factor=1)
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1, scope="local")
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:4])
            T.writes(C[0:lanes])
            # One expression, no Python name for the broadcast: an assignment in TVMScript allocates a
            # "local" buffer, a TVMBackendAllocWorkspace call per kernel (or per parallel task).
            C[T.ramp(0, 1, lanes)] = _dot4_update(
                instruction, llvm_name, lanes, C.vload([0], acc_type),
                T.reinterpret(T.broadcast(T.bitwise_xor(T.reinterpret(A.vload([0], "int8x4"), dtype="int32"),
                                                        T.int32(flip)), lanes), dtype=byte_type),
                B.vload([0, 0], byte_type))

    # sdot's operands are (accumulator, first bytes, second bytes) as vpdpbusd's: which byte
    # vector is "unsigned" matters only to VNNI, whose first byte operand is the unsigned one.
    TensorIntrin.register(dot4_name(lanes, instruction), desc, impl, override=True)


# sdot by element: ``sdot v.4s, w.16b, x.4b[g]`` multiplies a weight vector by the g-th group of 4
# bytes of a register, so one 16-byte (or 8-byte) load of a pixel's inputs feeds 4 (2) steps, where
# the plain form wants each group broadcast first (an ld1r, and an add for its address: ld1r has no
# offset addressing): XNNPACK's c4 micro-kernels' way.
LANE_GROUPS = (4, 2)  # groups of 4 input channels one load feeds, widest first


def dot4_by_lane_name(lanes: int, groups: int) -> str:
    return f"mnv3compile_int8_dot4_x{lanes}_sdot_lane_g{groups}"


def _register_sdot_by_lane(lanes: int, groups: int) -> None:
    """L int32 accumulators += ``groups`` x 4 adjacent int8 inputs of one pixel times the
    (groups, L, 4) block of packed weights (consecutive groups of one output vector: contiguous),
    as ``groups`` sdot by element on one load of the inputs."""
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    width = 4 * groups
    llvm_name = DOT4_INSTRUCTIONS["sdot"][0][lanes]

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (width,), "int8", offset_factor=1)
        B = T.match_buffer(b, (groups, lanes, 4), "int8", offset_factor=1)
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1, scope="local")
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:width], B[0:groups, 0:lanes, 0:4])
            T.writes(C[0:lanes])
            for g, i, k in T.grid(groups, lanes, 4):
                with T.sblock("update"):
                    vi, vg, vk = T.axis.remap("SRR", [i, g, k])  # the block's order: outputs, then reductions
                    C[vi] = C[vi] + T.Cast("int32", A[vg * 4 + vk]) * T.Cast("int32", B[vg, vi, vk])

    def steps(A, B, C):
        inputs = T.reinterpret(A.vload([0], f"int8x{width}"), dtype=f"int32x{groups}")
        acc = C.vload([0], f"int32x{lanes}")
        for g in range(groups):
            # (the input twice: a shuffle may not have more lanes than its inputs)
            group = T.reinterpret(T.Shuffle([inputs] * (lanes // groups or 1), [g] * lanes), dtype=f"int8x{4 * lanes}")
            acc = T.call_llvm_pure_intrin(f"int32x{lanes}", llvm_name, acc, B.vload([g, 0, 0], f"int8x{4 * lanes}"),
                                          group)
        return acc

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (width,), "int8", offset_factor=1)
        B = T.match_buffer(b, (groups, lanes, 4), "int8", offset_factor=1)
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1, scope="local")
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:width], B[0:groups, 0:lanes, 0:4])
            T.writes(C[0:lanes])
            C[T.ramp(0, 1, lanes)] = steps(A, B, C)

    TensorIntrin.register(dot4_by_lane_name(lanes, groups), desc, impl, override=True)


# fmla by element, float32 pointwise convs on arm64: ``fmla v.4s, w.4s, x.s[k]`` multiplies a
# weight vector by lane k of a register, so one 16-byte load of 4 input channels of a pixel feeds
# 4 steps, where each channel was a load of its own (XNNPACK's "ld128" GEMM micro-kernels).
FMLA_DEPTH = 4  # input channels one load feeds


def fmla_by_lane_name(lanes: int) -> str:
    return f"mnv3compile_float32_fmla_x{lanes}_lane_k{FMLA_DEPTH}"


def _fmla_by_lane(inputs_buffer, weights_buffer, acc_buffer, lanes: int = 4):
    """acc (float32 x lanes) + the 4 inputs times the 4 weight rows, in channel order, each a
    multiply-add by element of one load of the inputs."""
    from tvm.script import tirx as T

    inputs = inputs_buffer.vload([0], f"float32x{FMLA_DEPTH}")
    acc = acc_buffer.vload([0], f"float32x{lanes}")
    for k in range(FMLA_DEPTH):
        acc = acc + T.Shuffle([inputs], [k] * lanes) * weights_buffer.vload([k, 0], f"float32x{lanes}")
    return acc


_REGISTERED: set[str] = set()


def _registrations() -> dict:
    registrations = {
        INT8_PAIRS_X8_AVX2: lambda: _register_input_rows(INT8_PAIRS_X8_AVX2, 2, _pairs_by_vpmaddwd),
        dot4_name(8, "smlal"): lambda: _register_input_rows(dot4_name(8, "smlal"), SMLAL_DEPTH, _smlal_by_lane)}
    for instruction, (llvm_names, _) in DOT4_INSTRUCTIONS.items():
        for lanes in llvm_names:
            registrations[dot4_name(lanes, instruction)] = (
                lambda lanes=lanes, instruction=instruction: _register_int8_dot4(lanes, instruction))
    registrations[fmla_by_lane_name(4)] = lambda: _register_input_rows(fmla_by_lane_name(4), FMLA_DEPTH, _fmla_by_lane,
                                                                      4, "float32", "float32")
    for groups in LANE_GROUPS:
        for lanes in DOT4_INSTRUCTIONS["sdot"][0]:
            registrations[dot4_by_lane_name(lanes, groups)] = (
                lambda lanes=lanes, groups=groups: _register_sdot_by_lane(lanes, groups))
    return registrations


def intrinsic(name: str) -> str:
    """``name``, registered with TVM on first use."""
    if name not in _REGISTERED:
        _registrations()[name]()
        _REGISTERED.add(name)
    return name


def register_all() -> None:
    """Every intrinsic, as a tuning record's trace (replayed by name) needs them."""
    for name in _registrations():
        intrinsic(name)
