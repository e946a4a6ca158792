"""mnv3compile/relax/float_accumulation.py: int8 depthwise convs and the stem accumulated in float32 are
the int32 conv, bit for bit, at the extremes of int8 (every product -128 x -128, the largest
sums), scheduled by the conv template; the Relax pass takes exactly the convs whose sums are exact."""

import numpy as np
import pytest
import tvm
from tvm import relax, te

from mnv3compile.relax.float_accumulation import MAX_EXACT_TAPS, to_float_accumulation
from mnv3compile.schedules.kernels.conv import float_accumulated_conv

assert MAX_EXACT_TAPS < 33 * 33
from mnv3compile.schedules.kernels.inline import inline_elementwise
from mnv3compile.schedules.kernels.isa import isa_of
from mnv3compile.schedules.kernels.dispatch import apply_template
from mnv3compile.targets.presets import preset
from mnv3compile.tvm.build import tvm_target


@pytest.mark.parametrize("kernel, stride, inputs, name", [
    (3, 1, 1, "dwconv3x3"), (5, 2, 1, "dwconv5x5"), (3, 2, 3, "conv3x3")], ids=["dw3x3", "dw5x5s2", "stem"])
def test_float_accumulated_conv_equals_the_int32_conv(kernel, stride, inputs, name):
    rng = np.random.default_rng(0)
    channels = 48
    x = rng.integers(-128, 128, (1, 17, 23, channels if inputs == 1 else inputs)).astype(np.int8)
    w = rng.integers(-128, 128, (kernel, kernel, inputs, channels)).astype(np.int8)
    x[..., :8], w[..., :8] = -128, -128  # taps x 2^14: the largest sums, still exact in float32
    out_h, out_w = (17 - kernel) // stride + 1, (23 - kernel) // stride + 1
    xs = te.placeholder(x.shape, "int8", "x")
    ws = te.placeholder(w.shape, "float32", "w")
    acc = float_accumulated_conv(xs, ws, (stride, stride))
    out = te.compute(acc.shape, lambda *i: acc(*i).astype("int32") * 3, name="epilogue")  # as in a network
    target = tvm_target(preset("host"))
    func = inline_elementwise(te.create_prim_func([xs, ws, out]))
    scheduled, template = apply_template(func, isa_of(target))
    template = template.name
    assert template.startswith(f"{name}_nhwc_int8_")
    library = tvm.compile(tvm.IRModule({"main": scheduled.with_attr("global_symbol", "main")}), target)
    got = tvm.runtime.tensor(np.zeros((1, out_h, out_w, channels), np.int32))
    library["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(w.astype(np.float32)), got)
    expected = np.zeros((1, out_h, out_w, channels), np.int64)
    for ry in range(kernel):
        for rx in range(kernel):
            window = x[:, ry:ry + stride * (out_h - 1) + 1:stride, rx:rx + stride * (out_w - 1) + 1:stride]
            if inputs == 1:
                expected += window.astype(np.int64) * w[ry, rx, 0].astype(np.int64)
            else:
                expected += window.astype(np.int64) @ w[ry, rx].astype(np.int64)
    assert expected[..., :8].max() == kernel * kernel * inputs * 2**14
    assert np.array_equal(got.numpy(), expected * 3)


def _conv_module(groups: int, kernel: int, data_dtype: str = "int8"):
    channels = 16
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 9, 9, channels), data_dtype))
    weight = np.ones((kernel, kernel, channels // groups, channels), np.int8)
    with bb.function("main", [x]):
        out = bb.emit(relax.op.nn.conv2d(x, relax.const(weight), padding=[kernel // 2] * 4, groups=groups,
                                         data_layout="NHWC", kernel_layout="HWIO", out_dtype="int32"))
        bb.emit_func_output(out)
    return bb.get()


X86 = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver3"}
ARM64 = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a76", "mattr": ["+neon"]}


@pytest.mark.parametrize("groups, kernel, dtype, target, taken", [
    (16, 3, "int8", X86, True),  # depthwise, padded with 0 by an explicit pad
    (16, 3, "int8", ARM64, False),  # depthwise on arm64: int16 smlal is one instruction per tap
    (1, 3, "int8", X86, True),  # ungrouped with a window (a stem no dot product took)
    (1, 3, "int8", ARM64, True),
    (1, 1, "int8", X86, False),  # pointwise: a dot product's, or int16 pairs'
    (4, 3, "int8", X86, False),  # grouped, neither depthwise nor ungrouped
    (16, 3, "uint8", X86, False),
    (16, 33, "int8", X86, False),  # 1089 taps: more than MAX_EXACT_TAPS sum exactly in float32
])
def test_the_pass_takes_only_exact_int8_window_convs(groups, kernel, dtype, target, taken):
    with tvm.target.Target(target):
        module = to_float_accumulation(_conv_module(groups, kernel, dtype))
    text = module.script()
    assert ("R.nn.conv2d" not in text) == taken
    if taken:
        assert "conv_float_acc" in text and "R.nn.pad" in text
        x = np.random.default_rng(1).integers(-128, 128, (1, 9, 9, 16)).astype(np.int8)
        target = tvm_target(preset("host"))
        run = lambda m: relax.VirtualMachine(tvm.compile(m, target), tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
        assert np.array_equal(run(module), run(_conv_module(groups, kernel, dtype)))


def test_a_float_epilogue_reads_the_float_accumulator_without_a_cast_back_and_forth():
    """conv -> int32 -> float32 (the float requantization's first step) reads the float32
    accumulator itself: no astype is left in the graph, FuseOps sees one conv kernel with its
    epilogue, and the result is the int32 conv's, exactly."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 9, 9, 16), "int8"))
    weight = np.random.default_rng(2).integers(-128, 128, (3, 3, 1, 16)).astype(np.int8)
    with bb.function("main", [x]):
        with bb.dataflow():
            conv = bb.emit(relax.op.nn.conv2d(x, relax.const(weight), padding=[1] * 4, groups=16, data_layout="NHWC",
                                              kernel_layout="HWIO", out_dtype="int32"))
            scaled = bb.emit(relax.op.multiply(relax.op.astype(conv, "float32"), relax.const(0.5, "float32")))
            out = bb.emit_output(scaled)
        bb.emit_func_output(out)
    module = bb.get()
    with tvm.target.Target(X86):
        rewritten = to_float_accumulation(module)
    assert "conv_float_acc" in rewritten["main"].script() and "R.astype" not in rewritten["main"].script()
    from mnv3compile.relax.pipeline import kernel_names, run_pipeline

    kernels = kernel_names(run_pipeline(module, tvm.target.Target(X86)))
    assert [k for k in kernels if "conv_float_acc" in k] == ["fused_conv_float_acc_multiply"]
    data = np.random.default_rng(3).integers(-128, 128, (1, 9, 9, 16)).astype(np.int8)
    target = tvm_target(preset("host"))
    run = lambda m: relax.VirtualMachine(tvm.compile(m, target), tvm.cpu())["main"](tvm.runtime.tensor(data)).numpy()
    assert np.array_equal(run(rewritten), run(module))
