"""mnv3compile/relax/float_accumulation.py: int8 depthwise convs and the stem accumulated in float32 are
the int32 conv, bit for bit, at the extremes of int8 (every product -128 x -128, the largest
sums), scheduled by the conv template; the Relax pass takes exactly the convs whose sums are exact."""

import numpy as np
import pytest
import tvm
from tvm import relax, te
from tvm.relax import op
from tvm.script import ir as I, relax as R

from mnv3compile.relax.float_accumulation import MAX_EXACT_TAPS, to_float_accumulation
from mnv3compile.schedules.kernels.conv import float_accumulated_conv

assert MAX_EXACT_TAPS < 33 * 33
from mnv3compile.schedules.kernels.inline import inline_elementwise
from mnv3compile.schedules.kernels.isa import isa_of
from mnv3compile.schedules.kernels.dispatch import apply_template
from mnv3compile.targets.presets import preset
from mnv3compile.tvm.build import tvm_target

from relax_structural import A76, ZNVER3, assert_rewrites_to, expected_module


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


# Structural: the rewrite of a small Before module is exactly Expected (tests/relax_structural.py).
# The kernel is a PrimFunc made from TE: Expected makes it with the call_te the pass should make.


DEPTHWISE = np.random.default_rng(4).integers(-128, 128, (3, 3, 1, 16)).astype(np.int8)


def test_structure_x86_accumulates_a_depthwise_conv_in_float_and_casts_the_sums_to_int32():
    """The conv's zero padding becomes an explicit pad; the weight a float32 constant (the same
    integers); the float sums are cast to int32, the conv's result type."""

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 6, 6, 16), "int8")) -> R.Tensor((1, 6, 6, 16), "int32"):
            with R.dataflow():
                gv = R.nn.conv2d(x, R.const(DEPTHWISE), padding=[1, 1, 1, 1], groups=16, data_layout="NHWC",
                                 kernel_layout="HWIO", out_layout="NHWC", out_dtype="int32")
                R.output(gv)
            return gv

    def expected(bb, x):
        padded = bb.emit(op.nn.pad(x, [0, 0, 1, 1, 1, 1, 0, 0], pad_value=0.0))
        sums = bb.emit(bb.call_te(float_accumulated_conv, padded, relax.const(DEPTHWISE.astype(np.float32)),
                                  strides=(1, 1), primfunc_name_hint="conv_float_acc"))
        return op.astype(sums, "int32")

    expected = expected_module({"x": R.Tensor((1, 6, 6, 16), "int8")}, expected)
    assert_rewrites_to(to_float_accumulation, Before, expected, ZNVER3)


def test_structure_a_float_epilogue_reads_the_float_sums_with_no_cast_between():
    """astype(astype(sums, int32), float32) is the float sums themselves: both casts go."""

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 6, 6, 16), "int8")) -> R.Tensor((1, 6, 6, 16), "float32"):
            with R.dataflow():
                conv = R.nn.conv2d(x, R.const(DEPTHWISE), padding=[1, 1, 1, 1], groups=16, data_layout="NHWC",
                                   kernel_layout="HWIO", out_layout="NHWC", out_dtype="int32")
                gv = R.multiply(R.astype(conv, "float32"), R.const(0.5, "float32"))
                R.output(gv)
            return gv

    def expected(bb, x):
        padded = bb.emit(op.nn.pad(x, [0, 0, 1, 1, 1, 1, 0, 0], pad_value=0.0))
        sums = bb.emit(bb.call_te(float_accumulated_conv, padded, relax.const(DEPTHWISE.astype(np.float32)),
                                  strides=(1, 1), primfunc_name_hint="conv_float_acc"))
        return op.multiply(sums, relax.const(0.5, "float32"))

    expected = expected_module({"x": R.Tensor((1, 6, 6, 16), "int8")}, expected)
    assert_rewrites_to(to_float_accumulation, Before, expected, ZNVER3)


def test_structure_arm64_accumulates_the_stem_in_float_with_its_stride():
    """The stem (3x3 stride 2 over 3 channels, unpadded here) is taken on arm64 too."""
    stem = np.random.default_rng(5).integers(-128, 128, (3, 3, 3, 8)).astype(np.int8)

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 9, 9, 3), "int8")) -> R.Tensor((1, 4, 4, 8), "int32"):
            with R.dataflow():
                gv = R.nn.conv2d(x, R.const(stem), strides=[2, 2], data_layout="NHWC", kernel_layout="HWIO",
                                 out_layout="NHWC", out_dtype="int32")
                R.output(gv)
            return gv

    def expected(bb, x):
        sums = bb.emit(bb.call_te(float_accumulated_conv, x, relax.const(stem.astype(np.float32)), strides=(2, 2),
                                  primfunc_name_hint="conv_float_acc"))
        return op.astype(sums, "int32")

    expected = expected_module({"x": R.Tensor((1, 9, 9, 3), "int8")}, expected)
    assert_rewrites_to(to_float_accumulation, Before, expected, A76)


def _conv_left_alone(case: str):
    pointwise = np.ones((1, 1, 16, 16), np.int8)

    @I.ir_module
    class Depthwise:
        @R.function
        def main(x: R.Tensor((1, 6, 6, 16), "int8")) -> R.Tensor((1, 6, 6, 16), "int32"):
            with R.dataflow():
                gv = R.nn.conv2d(x, R.const(DEPTHWISE), padding=[1, 1, 1, 1], groups=16, data_layout="NHWC",
                                 kernel_layout="HWIO", out_layout="NHWC", out_dtype="int32")
                R.output(gv)
            return gv

    @I.ir_module
    class Pointwise:  # a dot product's
        @R.function
        def main(x: R.Tensor((1, 6, 6, 16), "int8")) -> R.Tensor((1, 6, 6, 16), "int32"):
            with R.dataflow():
                gv = R.nn.conv2d(x, R.const(pointwise), data_layout="NHWC", kernel_layout="HWIO", out_layout="NHWC",
                                 out_dtype="int32")
                R.output(gv)
            return gv

    @I.ir_module
    class Dilated:
        @R.function
        def main(x: R.Tensor((1, 6, 6, 16), "int8")) -> R.Tensor((1, 6, 6, 16), "int32"):
            with R.dataflow():
                gv = R.nn.conv2d(x, R.const(DEPTHWISE), padding=[2, 2, 2, 2], dilation=[2, 2], groups=16,
                                 data_layout="NHWC", kernel_layout="HWIO", out_layout="NHWC", out_dtype="int32")
                R.output(gv)
            return gv

    return {"depthwise": Depthwise, "pointwise": Pointwise, "dilated": Dilated}[case]


@pytest.mark.parametrize("case, target", [
    ("depthwise", A76),  # arm64: the int32 path is one smlal per tap already
    ("pointwise", ZNVER3),
    ("dilated", ZNVER3),
], ids=["arm64_depthwise", "pointwise", "dilated"])
def test_structure_convs_it_does_not_take_are_unchanged(case, target):
    before = _conv_left_alone(case)
    assert_rewrites_to(to_float_accumulation, before, before, target)
