"""mnv3compile/relax/packed_gemv.py: the float32 classifier (and a GEMM of a few rows: a transformer's
tokens) reads weights packed per output vector, the gemv/gemm template schedules it, and the
result is the matmul's; the pass takes float32 (and int8 -> int32) matmuls with a constant weight,
padding columns that fill no whole vector."""

import numpy as np
import pytest
import tvm
from tvm import relax, te
from tvm.script import ir as I, relax as R

from mnv3compile.schedules.kernels.isa import isa_of
from mnv3compile.relax.packed_gemv import to_packed_gemv
from mnv3compile.schedules.kernels.gemv import pack_columns, packed_matmul
from mnv3compile.schedules.kernels.dispatch import apply_template
from mnv3compile.targets.presets import preset
from mnv3compile.tvm.build import tvm_target

from relax_structural import ZNVER3, assert_rewrites_to, expected_module


def test_packed_columns_hold_each_output_vector_contiguously():
    weight = np.arange(6 * 8, dtype=np.float32).reshape(6, 8)
    packed = pack_columns(weight, 4)
    assert packed.shape == (2, 6, 4)
    assert np.array_equal(packed[1, 5], weight[5, 4:8])  # vector 1, input 5: outputs 4..7
    assert packed.flags["C_CONTIGUOUS"]


@pytest.mark.parametrize("dtype", ["float32", "int8"])
@pytest.mark.parametrize("rows, depth, outputs", [(1, 576, 1024), (1, 1024, 1000), (1, 96, 40), (40, 120, 96),
                                                  (6, 64, 48)])
def test_packed_gemv_equals_the_matmul(rows, depth, outputs, dtype):
    target = tvm_target(preset("host"))
    lanes = 8 if outputs % 16 else 16
    result = "int32" if dtype == "int8" else "float32"
    rng = np.random.default_rng(0)
    if dtype == "int8":  # -128 x -128 included
        x, w = (rng.integers(-128, 128, shape).astype(np.int8) for shape in ((rows, depth), (depth, outputs)))
        x[0, :8], w[:8] = -128, -128
    else:
        x, w = (rng.standard_normal(shape).astype(np.float32) for shape in ((rows, depth), (depth, outputs)))
    xs = te.placeholder(x.shape, dtype, "x")
    ws = te.placeholder((outputs // lanes, depth, lanes), dtype, "w")
    acc = packed_matmul(xs, ws, result)
    out = te.compute(acc.shape, lambda *i: acc(*i) + 1, name="bias")  # an epilogue, as in a network
    scheduled, template = apply_template(te.create_prim_func([xs, ws, out]), isa_of(target))
    template = template.name
    kind = "gemv" if rows == 1 else "gemm"
    assert template.startswith(f"{kind}_{result if dtype == 'float32' else 'int8'}_")
    library = tvm.compile(tvm.IRModule({"main": scheduled.with_attr("global_symbol", "main")}), target)
    got = tvm.runtime.tensor(np.zeros((rows, outputs), result))
    library["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(pack_columns(w, lanes)), got)
    expected = x.astype(np.float64) @ w.astype(np.float64) + 1
    if dtype == "int8":
        assert np.array_equal(got.numpy(), expected.astype(np.int64))
    else:
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-4)


def _module(rows: int, dtype: str, constant: bool):
    operand = "int8" if dtype == "int8->int32" else dtype
    w = relax.const(np.ones((64, 32), operand), operand)
    x = relax.Var("x", relax.TensorType((rows, 64), operand))
    v = relax.Var("v", relax.TensorType((64, 32), operand))
    bb = relax.BlockBuilder()
    with bb.function("main", [x] + ([] if constant else [v])):
        with bb.dataflow():
            extra = {"out_dtype": "int32"} if dtype == "int8->int32" else {}
            out = bb.emit_output(relax.op.matmul(x, w if constant else v, **extra))
        bb.emit_func_output(out)
    return bb.get()


@pytest.mark.parametrize("rows, dtype, constant, packed", [
    (1, "float32", True, True),     # the classifier
    (4, "float32", True, True),     # a GEMM of tokens
    (1, "float32", False, False),   # weights not known at build time
    (1, "int8->int32", True, True),  # the int8 classifier where no dot product took it (AVX2)
    (1, "int32", True, False),      # int32 operands: no int8 model has them
])
def test_the_pass_packs_float_matmuls_with_constant_weights(rows, dtype, constant, packed):
    with tvm_target(preset("host")):
        module = to_packed_gemv(_module(rows, dtype, constant))
    text = module.script()
    assert ("matmul_packed" in text) == packed and ("R.matmul" in text) == (not packed)


def test_columns_in_no_whole_vector_are_padded_and_sliced_back():
    """PP-OCRv4's CTC head: 120 -> 6625 characters, an odd count: zero columns to the next vector,
    the product sliced back, and the whole module still the matmul."""
    target = tvm_target(preset("host"))
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((8, 24)).astype(np.float32), rng.standard_normal((24, 37)).astype(np.float32)
    xv = relax.Var("x", relax.TensorType((8, 24), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [xv]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.matmul(xv, relax.const(w)))
        bb.emit_func_output(out)
    with target:
        module = to_packed_gemv(bb.get())
    assert "matmul_packed" in module.script() and "R.strided_slice" in module.script()
    vm = relax.VirtualMachine(tvm.compile(module, target), tvm.cpu())
    np.testing.assert_allclose(vm["main"](tvm.runtime.tensor(x)).numpy(), x @ w, rtol=1e-5, atol=1e-5)


def _conv_module(pixels: int, channels: int, outputs: int, weight: np.ndarray):
    x = relax.Var("x", relax.TensorType((1, pixels, pixels, channels), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            conv = bb.emit(relax.op.nn.conv2d(x, relax.const(weight), data_layout="NHWC", kernel_layout="HWIO"))
            out = bb.emit_output(relax.op.add(conv, relax.const(np.ones(outputs, np.float32))))
        bb.emit_func_output(out)
    return bb.get()


@pytest.mark.parametrize("pixels, outputs, packed", [
    (1, 96, True),    # squeeze-excite's FCs: a pointwise conv of one pixel is a GEMV
    (1, 37, True),    # outputs in no whole vector: padded and sliced back along the channels
    (2, 96, False),   # more pixels: a conv, for the conv template
])
def test_a_one_pixel_pointwise_conv_is_a_packed_gemv(pixels, outputs, packed):
    target = tvm_target(preset("host"))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, pixels, pixels, 240)).astype(np.float32)
    w = rng.standard_normal((1, 1, 240, outputs)).astype(np.float32)
    with target:
        module = to_packed_gemv(_conv_module(pixels, 240, outputs, w))
    text = module.script()
    assert ("matmul_packed" in text) == packed and ("R.nn.conv2d" in text) == (not packed)
    vm = relax.VirtualMachine(tvm.compile(module, target), tvm.cpu())
    expected = np.einsum("nhwc,cf->nhwf", x.astype(np.float64), w[0, 0].astype(np.float64)) + 1
    np.testing.assert_allclose(vm["main"](tvm.runtime.tensor(x)).numpy(), expected, rtol=1e-4, atol=1e-4)


# Structural: the rewrite of a small Before module is exactly Expected (tests/relax_structural.py).
# The kernel is a PrimFunc made from TE: Expected makes it with the call_te the pass should make.


def test_structure_the_classifier_reads_weights_packed_per_output_vector():
    """AVX2, float32: vectors of 8 columns, each contiguous over the 16 inputs
    (packed[vector, k, lane] = w[k, 8 vector + lane])."""
    weight = np.random.default_rng(1).standard_normal((16, 32)).astype(np.float32)
    packed = np.ascontiguousarray(weight.reshape(16, 4, 8).transpose(1, 0, 2))

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 16), "float32")) -> R.Tensor((1, 32), "float32"):
            with R.dataflow():
                gv = R.matmul(x, R.const(weight))
                R.output(gv)
            return gv

    expected = expected_module({"x": R.Tensor((1, 16), "float32")}, lambda bb, x: bb.call_te(
        packed_matmul, x, relax.const(packed), "float32", primfunc_name_hint="matmul_packed"))
    assert_rewrites_to(to_packed_gemv, Before, expected, ZNVER3)


def test_structure_an_int8_matmul_accumulates_in_int32_on_packed_int8_weights():
    weight = np.random.default_rng(2).integers(-128, 128, (16, 8)).astype(np.int8)
    packed = np.ascontiguousarray(weight.reshape(16, 1, 8).transpose(1, 0, 2))

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 16), "int8")) -> R.Tensor((1, 8), "int32"):
            with R.dataflow():
                gv = R.matmul(x, R.const(weight), out_dtype="int32")
                R.output(gv)
            return gv

    expected = expected_module({"x": R.Tensor((1, 16), "int8")}, lambda bb, x: bb.call_te(
        packed_matmul, x, relax.const(packed, "int8"), "int32", primfunc_name_hint="matmul_packed"))
    assert_rewrites_to(to_packed_gemv, Before, expected, ZNVER3)


def test_structure_columns_in_no_whole_vector_are_padded_with_zeros_and_sliced_back():
    """37 columns: 3 zero columns make 5 vectors of 8; the product's 40 columns are sliced to 37
    (the pass binds the slice and then the output to it: an alias, which the pipeline's later
    CanonicalizeBindings removes)."""
    weight = np.random.default_rng(3).standard_normal((24, 37)).astype(np.float32)
    padded = np.concatenate([weight, np.zeros((24, 3), np.float32)], axis=1)
    packed = np.ascontiguousarray(padded.reshape(24, 5, 8).transpose(1, 0, 2))

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2, 24), "float32")) -> R.Tensor((2, 37), "float32"):
            with R.dataflow():
                gv = R.matmul(x, R.const(weight))
                R.output(gv)
            return gv

    def expected(bb, x):
        product = bb.call_te(packed_matmul, x, relax.const(packed), "float32", primfunc_name_hint="matmul_packed")
        return bb.emit(relax.op.strided_slice(product, axes=[1], begin=[0], end=[37]))

    assert_rewrites_to(to_packed_gemv, Before, expected_module({"x": R.Tensor((2, 24), "float32")}, expected), ZNVER3)


def test_structure_a_one_pixel_pointwise_conv_is_a_packed_gemv_on_its_nhwc_input():
    """Squeeze-excite's FC as a 1x1 conv of one pixel: the same kernel, reading the (1, 1, 1, C)
    input as it is; the add after it stays."""
    weight = np.random.default_rng(4).standard_normal((1, 1, 16, 8)).astype(np.float32)
    packed = np.ascontiguousarray(weight.reshape(16, 1, 8).transpose(1, 0, 2))
    bias = np.ones(8, np.float32)

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 1, 1, 16), "float32")) -> R.Tensor((1, 1, 1, 8), "float32"):
            with R.dataflow():
                conv = R.nn.conv2d(x, R.const(weight), data_layout="NHWC", kernel_layout="HWIO", out_layout="NHWC")
                gv = R.add(conv, R.const(bias))
                R.output(gv)
            return gv

    def expected(bb, x):
        conv = bb.emit(bb.call_te(packed_matmul, x, relax.const(packed), "float32", primfunc_name_hint="matmul_packed"))
        return relax.op.add(conv, relax.const(bias))

    assert_rewrites_to(to_packed_gemv, Before, expected_module({"x": R.Tensor((1, 1, 1, 16), "float32")}, expected),
                       ZNVER3)


def _matmul_left_alone(case: str):
    weight = np.ones((16, 32), np.float32)
    conv_weight = np.ones((1, 1, 16, 32), np.float32)

    @I.ir_module
    class WeightAnInput:  # not known at build time: nothing to pack
        @R.function
        def main(x: R.Tensor((1, 16), "float32"), w: R.Tensor((16, 32), "float32")) -> R.Tensor((1, 32), "float32"):
            with R.dataflow():
                gv = R.matmul(x, w)
                R.output(gv)
            return gv

    @I.ir_module
    class Int32:  # no int8 model has int32 operands
        @R.function
        def main(x: R.Tensor((1, 16), "int32")) -> R.Tensor((1, 32), "int32"):
            with R.dataflow():
                gv = R.matmul(x, R.const(np.ones((16, 32), np.int32)))
                R.output(gv)
            return gv

    @I.ir_module
    class Pixels:  # a conv of 2x2 pixels: the conv template's
        @R.function
        def main(x: R.Tensor((1, 2, 2, 16), "float32")) -> R.Tensor((1, 2, 2, 32), "float32"):
            with R.dataflow():
                gv = R.nn.conv2d(x, R.const(conv_weight), data_layout="NHWC", kernel_layout="HWIO", out_layout="NHWC")
                R.output(gv)
            return gv

    @I.ir_module
    class Classifier:  # taken under a target (above); outside one, no ISA to pack for
        @R.function
        def main(x: R.Tensor((1, 16), "float32")) -> R.Tensor((1, 32), "float32"):
            with R.dataflow():
                gv = R.matmul(x, R.const(weight))
                R.output(gv)
            return gv

    return {"weight_an_input": WeightAnInput, "int32": Int32, "pixels": Pixels, "no_target": Classifier}[case]


@pytest.mark.parametrize("case", ["weight_an_input", "int32", "pixels", "no_target"])
def test_structure_matmuls_it_does_not_pack_are_unchanged(case):
    before = _matmul_left_alone(case)
    assert_rewrites_to(to_packed_gemv, before, before, None if case == "no_target" else ZNVER3)
