"""mnv3compile/relax/explicit_padding.py: a padded float32 NHWC conv over fewer than 4 input channels
(the stem) reads an explicitly padded input, with the same result; wider convs, unpadded ones and
int8 ones are left alone."""

import numpy as np
import pytest
import tvm
from tvm import relax

from mnv3compile.relax.explicit_padding import to_explicit_padding


def _conv(channels: int, padding: int, dtype: str = "float32"):
    x = relax.Var("x", relax.TensorType((1, 15, 17, channels), dtype))
    weight = np.random.default_rng(1).standard_normal((3, 3, channels, 8)).astype(dtype)
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.nn.conv2d(x, relax.const(weight), strides=2, padding=padding,
                                                    data_layout="NHWC", kernel_layout="HWIO", out_dtype=dtype))
        bb.emit_func_output(out)
    return bb.get()


def _run(module, x: np.ndarray) -> np.ndarray:
    vm = relax.VirtualMachine(tvm.compile(module, "llvm"), tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy()


def test_a_padded_stem_reads_an_explicitly_padded_input_with_the_same_result():
    module = _conv(3, 1)
    rewritten = to_explicit_padding(module)
    text = rewritten.script()
    assert "R.nn.pad" in text and "padding=[0, 0, 0, 0]" in text
    x = np.random.default_rng(0).standard_normal((1, 15, 17, 3)).astype(np.float32)
    expected = _run(module, x)
    assert expected.shape == (1, 8, 9, 8)
    np.testing.assert_allclose(_run(rewritten, x), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("channels, padding", [(4, 1), (16, 1), (3, 0)])
def test_wide_or_unpadded_convs_are_left_alone(channels, padding):
    assert "R.nn.pad" not in to_explicit_padding(_conv(channels, padding)).script()
