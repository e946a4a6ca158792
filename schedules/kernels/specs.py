"""Each kernel family's spec table: small graphs whose fused kernels take the family's variants on
odd shapes and tails (XNNPACK's practice: every micro-kernel has a test and a benchmark). From one
row come its correctness tests (tests/test_kernel_specs.py: the scheduled kernel equals the
unscheduled one bit for bit, on the kernel's real constants) and its benchmark rows
(benchmarks/kernels.py: time, GMAC/s and share of the ISA's peak; arm64 instructions under qemu).

A row is a Relax graph in NHWC (the network's layout after ChannelsLast) run through the Relax
pipeline for a target, so the kernel is exactly what a build templates: which variant it takes
depends on the ISA (an int8 pointwise conv is a dot4 kernel on VNNI, a ``vpmaddwd`` conv on AVX2
with 8-bit weights, ``smlal`` on NEON).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class KernelSpec:
    family: str  # the family the row is written for (on some ISAs another family may take it)
    label: str
    graph: Callable[[], object]  # -> a Relax IRModule with one function "main"
    macs: int  # multiply-accumulates of one call (0: not counted)
    tags: tuple[str, ...] = field(default=())


def _rng() -> np.random.Generator:
    return np.random.default_rng(7)


def _weights(shape, dtype: str, low: int = -128, high: int = 127) -> np.ndarray:
    if dtype == "int8":
        return _rng().integers(low, high + 1, shape).astype(np.int8)
    return _rng().standard_normal(shape).astype(np.float32)


def _graph(input_shape, dtype: str, body: Callable):
    """A Relax module: ``main(x)`` = ``body(builder, x)``."""
    from tvm import relax

    x = relax.Var("x", relax.TensorType(input_shape, dtype))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(body(bb, x))
        bb.emit_func_output(out)
    return bb.get()


def conv(shape, kernel: int, outputs: int, dtype: str = "float32", stride: int = 1, depthwise: bool = False,
         weight_range: tuple[int, int] = (-128, 127)):
    """conv2d NHWC ("same" padding) + bias + ReLU (float32), or int8 -> int32 + bias (int8)."""
    from tvm import relax

    channels = shape[-1]
    groups = channels if depthwise else 1
    weight = _weights((kernel, kernel, channels // groups, outputs), dtype, *weight_range)

    def body(bb, x):
        out_dtype = "int32" if dtype == "int8" else "float32"
        y = bb.emit(relax.op.nn.conv2d(x, relax.const(weight), strides=stride, padding=kernel // 2, groups=groups,
                                       data_layout="NHWC", kernel_layout="HWIO", out_dtype=out_dtype))
        bias = relax.const(np.arange(outputs).astype(out_dtype))
        y = bb.emit(relax.op.add(y, bias))
        return relax.op.nn.relu(y) if dtype == "float32" else y

    return lambda: _graph(shape, dtype, body)


def conv_macs(shape, kernel: int, outputs: int, stride: int = 1, depthwise: bool = False) -> int:
    n, h, w, c = shape
    out_h, out_w = -(-h // stride), -(-w // stride)
    return n * out_h * out_w * outputs * kernel * kernel * (1 if depthwise else c)


def matmul(rows: int, depth: int, columns: int, dtype: str = "float32"):
    """rows x depth times a constant depth x columns (+ bias)."""
    from tvm import relax

    weight = _weights((depth, columns), dtype)

    def body(bb, x):
        out_dtype = "int32" if dtype == "int8" else "float32"
        y = bb.emit(relax.op.matmul(x, relax.const(weight), out_dtype=out_dtype))
        return relax.op.add(y, relax.const(np.arange(columns).astype(out_dtype)))

    return lambda: _graph((rows, depth), dtype, body)


def mean_pool(shape):
    from tvm import relax

    return lambda: _graph(shape, "float32", lambda bb, x: relax.op.mean(x, axis=[1, 2], keepdims=True))


def channel_scale(shape):
    """Squeeze-excite's scale: x times a per-channel gate (a second input, as in the network)."""
    from tvm import relax

    gate = _weights((1, 1, 1, shape[-1]), "float32")
    return lambda: _graph(shape, "float32", lambda bb, x: relax.op.multiply(x, relax.const(gate)))


def pad(shape, dtype: str = "int8"):
    from tvm import relax

    return lambda: _graph(shape, dtype, lambda bb, x: relax.op.nn.pad(x, [0, 0, 1, 2, 1, 2, 0, 0], pad_value=3.0))


# Shapes are odd on purpose: widths no tile divides (15, 29), channel counts that leave a vector
# tail (23 x 8 = 184, 1000 = 125 x 8), a stem of 3 channels, a GEMM of 6 rows (tiles of 3).
SPECS: tuple[KernelSpec, ...] = (
    KernelSpec("conv", "pointwise fp32 14x14x80 -> 184", conv((1, 14, 14, 80), 1, 184),
               conv_macs((1, 14, 14, 80), 1, 184)),
    KernelSpec("conv", "depthwise fp32 3x3/2 15x15x72", conv((1, 15, 15, 72), 3, 72, stride=2, depthwise=True),
               conv_macs((1, 15, 15, 72), 3, 72, 2, True)),
    KernelSpec("conv", "stem fp32 3x3/2 29x29x3 -> 16", conv((1, 29, 29, 3), 3, 16, stride=2),
               conv_macs((1, 29, 29, 3), 3, 16, 2)),
    KernelSpec("conv", "SE FC fp32 1x1x72 -> 24", conv((1, 1, 1, 72), 1, 24), conv_macs((1, 1, 1, 72), 1, 24)),
    KernelSpec("conv", "depthwise int8 5x5 14x14x120", conv((1, 14, 14, 120), 5, 120, "int8", depthwise=True),
               conv_macs((1, 14, 14, 120), 5, 120, 1, True)),
    KernelSpec("conv", "stem int8 3x3/2 29x29x3 -> 16", conv((1, 29, 29, 3), 3, 16, "int8", stride=2),
               conv_macs((1, 29, 29, 3), 3, 16, 2)),
    KernelSpec("dot4", "pointwise int8 7x7x96 -> 40", conv((1, 7, 7, 96), 1, 40, "int8"),
               conv_macs((1, 7, 7, 96), 1, 40)),
    KernelSpec("dot4", "pointwise int8 7-bit 15x15x24 -> 72", conv((1, 15, 15, 24), 1, 72, "int8",
                                                                  weight_range=(-64, 63)),
               conv_macs((1, 15, 15, 24), 1, 72)),
    # 20 input channels: 5 groups of 4, which sdot by element (2 or 4 groups a load) leaves to the plain form
    KernelSpec("dot4", "pointwise int8 9x9x20 -> 24", conv((1, 9, 9, 20), 1, 24, "int8"),
               conv_macs((1, 9, 9, 20), 1, 24)),
    KernelSpec("dot4", "SE FC int8 1x1x96 -> 24", conv((1, 1, 1, 96), 1, 24, "int8"),
               conv_macs((1, 1, 1, 96), 1, 24)),
    KernelSpec("gemv", "classifier fp32 1x1280 -> 1000", matmul(1, 1280, 1000), 1280 * 1000),
    KernelSpec("gemv", "gemm fp32 6x64 -> 40", matmul(6, 64, 40), 6 * 64 * 40),
    KernelSpec("gemv", "classifier int8 1x1024 -> 1000", matmul(1, 1024, 1000, "int8"), 1024 * 1000),
    KernelSpec("pool", "global average fp32 7x7x96", mean_pool((1, 7, 7, 96)), 0),
    KernelSpec("elementwise", "SE scale fp32 14x14x120", channel_scale((1, 14, 14, 120)), 0),
    KernelSpec("pad", "pad int8 15x15x24 (1, 2)", pad((1, 15, 15, 24)), 0),
)


# The arm64 targets the spec tables run on (tests on the stand-in phone, benchmarks/kernels.py --arm64):
# NEON without dotprod (smlal) as Cortex-A53, and with it (sdot) as Cortex-A76.
ARM64_TARGETS = {
    "neon": {"mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a53", "mattr": ["+neon"]},
    "neon-dotprod": {"mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a76", "mattr": ["+neon", "+dotprod"]},
}


@dataclass
class Kernel:
    """One fused kernel of a spec's graph for a target: the PrimFunc the pipeline made, and the
    arrays it is called with (its constants as the graph has them, random inputs, output buffers)."""
    name: str
    func: object
    arrays: list[np.ndarray]


def kernels_of(spec: KernelSpec, target) -> list[Kernel]:
    """The fused kernels of ``spec``'s graph after the Relax pipeline for ``target``."""
    from tvm import relax, tirx
    from tvm.ir import GenericConst

    from mnv3compile.relax.pipeline import run_pipeline
    from mnv3compile.schedules.tuning.measure import random_arrays

    module = run_pipeline(spec.graph(), target)
    arguments: dict[str, list] = {}

    def visit(expr):
        if isinstance(expr, relax.Call) and getattr(expr.op, "name", "") == "relax.call_tir":
            args = expr.args[1]
            arguments[expr.args[0].name_hint] = list(getattr(args, "fields", [args]))

    relax.analysis.post_order_visit(module["main"], visit)
    kernels = []
    for global_var, func in module.functions.items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        given = arguments.get(global_var.name_hint, [])
        arrays = random_arrays(func)
        for index, value in enumerate(given[:len(arrays)]):
            if isinstance(value, GenericConst):
                arrays[index] = value.value.numpy()
        kernels.append(Kernel(global_var.name_hint, func, arrays))
    return kernels


def run_kernel(func, target, arrays: list[np.ndarray], fill: int = 0) -> np.ndarray:
    """Compile ``func`` for ``target``, call it here on copies of ``arrays`` with its output (the
    last parameter) first set to ``fill``; the output. (Two runs with different fills differ
    wherever a kernel leaves an output unwritten.)"""
    import tvm

    library = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target)
    tensors = [tvm.runtime.tensor(a.copy()) for a in arrays[:-1]]
    tensors.append(tvm.runtime.tensor(np.full_like(arrays[-1], fill)))
    library["main"](*tensors)
    return tensors[-1].numpy()
