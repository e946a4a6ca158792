"""mnv3compile/relax/dot_products.py: which int8 convs become dot4 kernels on which ISA. AVX2's vpmaddubsw
saturates its int16 pair sums unless the weights lie in -64..63, so there a conv takes the dot4
kernel only when its constant weights do, and the pairs kernel (vpmaddwd) otherwise; VNNI and sdot
take any int8 weight. The kernels' exactness is tests/test_templates.py's."""

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.relax import op
from tvm.script import ir as I, relax as R

from mnv3compile.relax.dot_products import to_dot_products
from mnv3compile.schedules.kernels.dot4 import dot4_compute, pack_weights

from relax_structural import A53, A76, SSE, ZNVER3, ZNVER4, assert_rewrites_to, expected_module


def _int8_conv(weight: np.ndarray):
    x = relax.Var("x", relax.TensorType((1, 8, 8, weight.shape[2]), "int8"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.nn.conv2d(x, relax.const(weight), data_layout="NHWC", kernel_layout="HWIO",
                                                    out_dtype="int32"))
        bb.emit_func_output(out)
    return bb.get()


def _takes_dot4(weight: np.ndarray, mcpu: str) -> bool:
    with tvm.target.Target({"kind": "llvm", "mcpu": mcpu}):
        return "dot4" in to_dot_products(_int8_conv(weight)).script()


@pytest.mark.parametrize("low, high, avx2", [(-64, 63, True), (-65, 63, False), (-64, 64, False),
                                              (-128, 127, False)])
def test_avx2_takes_dot4_only_for_weights_vpmaddubsw_multiplies_exactly(low, high, avx2):
    weight = np.zeros((1, 1, 16, 16), np.int8)
    weight[0, 0, 0, :2] = low, high  # one extreme weight decides
    assert _takes_dot4(weight, "znver3") is avx2
    assert _takes_dot4(weight, "znver4")  # VNNI: every int8 weight


def test_isa_without_an_int8_dot_product_keeps_the_conv():
    assert not _takes_dot4(np.ones((1, 1, 16, 16), np.int8), "x86-64")  # SSE only


def _takes_smlal(weight: np.ndarray) -> bool:
    with tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a53",
                            "mattr": ["+neon"]}):
        return "dot4" in to_dot_products(_int8_conv(weight)).script()


def test_arm64_without_dotprod_takes_pointwise_convs_over_whole_groups_of_8_channels():
    """smlal consumes 8 input channels per step: pointwise convs over 8k channels only (the stem's
    3x3 over 3 channels and odd channel counts keep the conv template)."""
    assert _takes_smlal(np.ones((1, 1, 16, 16), np.int8))
    assert _takes_smlal(np.full((1, 1, 24, 8), -128, np.int8))  # every int8 weight: smull is exact
    assert not _takes_smlal(np.ones((1, 1, 12, 16), np.int8))
    assert not _takes_smlal(np.ones((3, 3, 8, 16), np.int8))


def test_pack_weights_for_smlal_puts_one_input_channels_outputs_together():
    weight = (np.arange(16 * 16).reshape(1, 1, 16, 16) % 128).astype(np.int8)
    packed = pack_weights(weight, 8, "smlal")  # (1, 1, F/8, C/8, 8 inputs, 8 outputs)
    assert packed.shape == (1, 1, 2, 2, 8, 8)
    assert np.array_equal(packed[0, 0, 1, 1, 3], weight[0, 0, 8 + 3, 8:16])


def test_pack_weights_groups_four_inputs_per_output_lane():
    weight = (np.arange(5 * 16).reshape(1, 1, 5, 16) % 128).astype(np.int8)
    packed = pack_weights(weight, 8)  # (1, 1, F/8, ceil(5/4), 8, 4)
    assert packed.shape == (1, 1, 2, 2, 8, 4)
    assert packed[0, 0, 1, 0, 3, 2] == weight[0, 0, 2, 8 + 3]
    assert not packed[0, 0, :, 1, :, 1:].any()  # input channels 5..7 do not exist: they weigh 0


# Structural: the rewrite of a small Before module is exactly Expected (tests/relax_structural.py).
# The dot4 kernel is a PrimFunc made from TE: Expected makes it with the call_te the pass should make.


def test_structure_vnni_takes_a_pointwise_conv_with_packed_weights_and_their_compensation():
    """AVX-512 VNNI, 32 outputs: vectors of 16 lanes, each lane reading 4 input channels at once
    (packed[y, x, vector, group, lane, k] = w[y, x, 4 group + k, 16 vector + lane]); vpdpbusd's
    unsigned input (x + 128) is compensated by -128 x the sum of each output's weights."""
    weight = np.random.default_rng(1).integers(-128, 128, (1, 1, 16, 32)).astype(np.int8)
    packed = np.ascontiguousarray(weight.reshape(1, 1, 4, 4, 2, 16).transpose(0, 1, 4, 2, 5, 3))
    offsets = (-128 * weight.astype(np.int32).sum(axis=(0, 1, 2))).astype(np.int32)

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 4, 4, 16), "int8")) -> R.Tensor((1, 4, 4, 32), "int32"):
            with R.dataflow():
                gv = R.nn.conv2d(x, R.const(weight), data_layout="NHWC", kernel_layout="HWIO", out_layout="NHWC",
                                 out_dtype="int32")
                R.output(gv)
            return gv

    expected = expected_module({"x": R.Tensor((1, 4, 4, 16), "int8")}, lambda bb, x: bb.call_te(
        dot4_compute, x, relax.const(packed, "int8"), relax.const(offsets, "int32"), strides=(1, 1),
        instruction="vnni", primfunc_name_hint="dot4"))
    assert_rewrites_to(to_dot_products, Before, expected, ZNVER4)


def test_structure_sdot_takes_the_stem_with_its_padding_and_a_fourth_input_channel_made_explicit():
    """arm64 sdot, the stem (3x3 stride 2 over 3 channels): one pad adds the conv's border and a
    4th input channel of zeros, whose weights are 0; vectors of 4 lanes; signed x signed, so no
    compensation."""
    weight = np.random.default_rng(2).integers(-128, 128, (3, 3, 3, 8)).astype(np.int8)
    four = np.concatenate([weight, np.zeros((3, 3, 1, 8), np.int8)], axis=2)
    packed = np.ascontiguousarray(four.reshape(3, 3, 1, 4, 2, 4).transpose(0, 1, 4, 2, 5, 3))

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 9, 9, 3), "int8")) -> R.Tensor((1, 5, 5, 8), "int32"):
            with R.dataflow():
                gv = R.nn.conv2d(x, R.const(weight), strides=[2, 2], padding=[1, 1, 1, 1], data_layout="NHWC",
                                 kernel_layout="HWIO", out_layout="NHWC", out_dtype="int32")
                R.output(gv)
            return gv

    def expected(bb, x):
        padded = bb.emit(op.nn.pad(x, [0, 0, 1, 1, 1, 1, 0, 1], pad_value=0.0))
        return bb.call_te(dot4_compute, padded, relax.const(packed, "int8"), None, strides=(2, 2),
                          instruction="sdot", primfunc_name_hint="dot4")

    assert_rewrites_to(to_dot_products, Before, expected_module({"x": R.Tensor((1, 9, 9, 3), "int8")}, expected), A76)


def test_structure_smlal_takes_a_row_matmul_over_groups_of_8_input_channels():
    """arm64 without dotprod: smlal reads one input channel's 8 output lanes at once
    (packed[vector, group, k, lane] = w[8 group + k, 8 vector + lane])."""
    weight = np.random.default_rng(3).integers(-128, 128, (16, 16)).astype(np.int8)
    packed = np.ascontiguousarray(weight.reshape(2, 8, 2, 8).transpose(2, 0, 1, 3))

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2, 16), "int8")) -> R.Tensor((2, 16), "int32"):
            with R.dataflow():
                gv = R.matmul(x, R.const(weight), out_dtype="int32")
                R.output(gv)
            return gv

    expected = expected_module({"x": R.Tensor((2, 16), "int8")}, lambda bb, x: bb.call_te(
        dot4_compute, x, relax.const(packed, "int8"), None, strides=(1, 1), instruction="smlal",
        primfunc_name_hint="dot4"))
    assert_rewrites_to(to_dot_products, Before, expected, A53)


def _conv_left_alone(case: str):
    pointwise = np.ones((1, 1, 16, 16), np.int8)
    depthwise = np.ones((3, 3, 1, 16), np.int8)
    wide = pointwise.copy()
    wide[0, 0, 0, 0] = -65  # beyond what vpmaddubsw multiplies exactly (AVX2: -64..63)

    @I.ir_module
    class Pointwise:
        @R.function
        def main(x: R.Tensor((1, 4, 4, 16), "int8")) -> R.Tensor((1, 4, 4, 16), "int32"):
            with R.dataflow():
                gv = R.nn.conv2d(x, R.const(pointwise), data_layout="NHWC", kernel_layout="HWIO", out_layout="NHWC",
                                 out_dtype="int32")
                R.output(gv)
            return gv

    @I.ir_module
    class Depthwise:  # no reduction over channels for a dot product
        @R.function
        def main(x: R.Tensor((1, 4, 4, 16), "int8")) -> R.Tensor((1, 4, 4, 16), "int32"):
            with R.dataflow():
                gv = R.nn.conv2d(x, R.const(depthwise), padding=[1, 1, 1, 1], groups=16, data_layout="NHWC",
                                 kernel_layout="HWIO", out_layout="NHWC", out_dtype="int32")
                R.output(gv)
            return gv

    @I.ir_module
    class WideWeights:
        @R.function
        def main(x: R.Tensor((1, 4, 4, 16), "int8")) -> R.Tensor((1, 4, 4, 16), "int32"):
            with R.dataflow():
                gv = R.nn.conv2d(x, R.const(wide), data_layout="NHWC", kernel_layout="HWIO", out_layout="NHWC",
                                 out_dtype="int32")
                R.output(gv)
            return gv

    return {"pointwise": Pointwise, "depthwise": Depthwise, "wide_weights": WideWeights}[case]


@pytest.mark.parametrize("case, target", [
    ("pointwise", SSE),        # no int8 dot product on this ISA
    ("depthwise", ZNVER4),
    ("wide_weights", ZNVER3),  # AVX2 leaves it to the pairs kernel
], ids=["sse", "depthwise", "avx2_wide_weights"])
def test_structure_convs_no_dot_product_takes_are_unchanged(case, target):
    before = _conv_left_alone(case)
    assert_rewrites_to(to_dot_products, before, before, target)
