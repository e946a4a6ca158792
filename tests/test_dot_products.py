"""mnv3compile/relax/dot_products.py: which int8 convs become dot4 kernels on which ISA. AVX2's vpmaddubsw
saturates its int16 pair sums unless the weights lie in -64..63, so there a conv takes the dot4
kernel only when its constant weights do, and the pairs kernel (vpmaddwd) otherwise; VNNI and sdot
take any int8 weight. The kernels' exactness is tests/test_templates.py's."""

import numpy as np
import pytest
import tvm
from tvm import relax

from mnv3compile.relax.dot_products import to_dot_products
from mnv3compile.schedules.kernels.dot4 import pack_weights


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
