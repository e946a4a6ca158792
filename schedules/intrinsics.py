"""Tensor intrinsics the int8 templates tensorize with, each registered once under its name.

``int8_pairs_x8_avx2``: 8 int32 accumulators += two int8 inputs (adjacent input channels of one
pixel, NHWC) times the two matching rows of an HWIO weight (8 output channels each). AVX2 has no
int8 dot product; ``vpmaddwd`` multiplies int16 pairs and adds each pair into an int32 lane, so
the two inputs are widened and broadcast as one int32, the two weight rows widened and
interleaved, and one ``vpmaddwd`` does 16 multiply-adds. Exact: |int8 x int8| sums of two fit in
int32, and int8 values never make the -32768 x -32768 case.
"""

from __future__ import annotations

INT8_PAIRS_X8_AVX2 = "mnv3compile_int8_pairs_x8_avx2"


def _register_int8_pairs_avx2() -> None:
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        row = T.int64()
        A = T.match_buffer(a, (2,), "int8", offset_factor=1)
        B = T.match_buffer(b, (2, 8), "int8", offset_factor=1, strides=[row, 1])
        C = T.match_buffer(c, (8,), "int32", offset_factor=1, scope="local")
        with T.sblock("root"):
            T.reads(C[0:8], A[0:2], B[0:2, 0:8])
            T.writes(C[0:8])
            for i, k in T.grid(8, 2):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.Cast("int32", A[vk]) * T.Cast("int32", B[vk, vi])

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        row = T.int64()
        A = T.match_buffer(a, (2,), "int8", offset_factor=1)
        B = T.match_buffer(b, (2, 8), "int8", offset_factor=1, strides=[row, 1])
        C = T.match_buffer(c, (8,), "int32", offset_factor=1, scope="local")
        with T.sblock("root"):
            T.reads(C[0:8], A[0:2], B[0:2, 0:8])
            T.writes(C[0:8])
            inputs = T.reinterpret(T.broadcast(T.reinterpret(T.Cast("int16x2", A.vload([0], "int8x2")), dtype="int32"), 8),
                                   dtype="int16x16")
            weights = T.Shuffle([T.Cast("int16x8", B.vload([0, 0], "int8x8")), T.Cast("int16x8", B.vload([1, 0], "int8x8"))],
                                [0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15])
            C[T.ramp(0, 1, 8)] = C.vload([0], "int32x8") + T.call_llvm_pure_intrin(
                "int32x8", "llvm.x86.avx2.pmadd.wd", inputs, weights)

    TensorIntrin.register(INT8_PAIRS_X8_AVX2, desc, impl, override=True)


_REGISTERED: set[str] = set()


def intrinsic(name: str) -> str:
    """``name``, registered with TVM on first use."""
    if name not in _REGISTERED:
        {INT8_PAIRS_X8_AVX2: _register_int8_pairs_avx2}[name]()
        _REGISTERED.add(name)
    return name
