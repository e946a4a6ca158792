"""mnv3compile/relax/vector_channels.py: a conv of 19 output channels (a segmenter's classes) computed on
24 zero-padded channels and sliced gives the same numbers, fp32 and int8, and then gets a kernel
template instead of TVM's scalar default schedule."""

import numpy as np
import pytest
import tvm
from tvm import relax

from mnv3compile.schedules.kernels.isa import isa_of
from mnv3compile.schedules.kernels.dispatch import apply_templates
from mnv3compile.relax.vector_channels import padded_outputs, to_vector_channels
from mnv3compile.targets.presets import preset
from mnv3compile.tvm.build import tvm_target
from mnv3compile.relax.pipeline import run_pipeline


def test_padded_outputs_appends_zero_channels():
    weight = np.ones((1, 1, 3, 19), np.int8)
    padded = padded_outputs(weight)
    assert padded.shape == (1, 1, 3, 24) and padded.dtype == np.int8
    assert np.array_equal(padded[..., :19], weight) and not padded[..., 19:].any()


def _conv(dtype: str, outputs: int):
    rng = np.random.default_rng(0)
    data_dtype, out_dtype = ("int8", "int32") if dtype == "int8" else ("float32", "float32")
    weight = (rng.integers(-128, 128, (1, 1, 32, outputs)) if dtype == "int8"
              else rng.standard_normal((1, 1, 32, outputs))).astype(data_dtype)
    x = relax.Var("x", relax.TensorType((1, 16, 16, 32), data_dtype))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.nn.conv2d(x, relax.const(weight), data_layout="NHWC", kernel_layout="HWIO",
                                                    out_dtype=out_dtype))
        bb.emit_func_output(out)
    inputs = (rng.integers(-128, 128, (1, 16, 16, 32)) if dtype == "int8"
              else rng.standard_normal((1, 16, 16, 32))).astype(data_dtype)
    return bb.get(), inputs


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_padded_conv_gives_the_same_numbers_and_gets_a_template(dtype):
    target = tvm_target(preset("host"))
    module, x = _conv(dtype, 19)
    with target:
        rewritten = to_vector_channels(module)
    assert "strided_slice" in rewritten.script()
    outputs = []
    for variant in (module, rewritten):
        fused = run_pipeline(variant, target)
        scheduled, report = apply_templates(fused, isa_of(target))
        outputs.append(relax.VirtualMachine(tvm.compile(scheduled, target), tvm.cpu())["main"](
            tvm.runtime.tensor(x)).numpy())
        if variant is rewritten:  # the padded conv is templated; only the small slice may not be
            assert not [name for name in report.default if "conv" in name], report.default
    assert outputs[0].shape == outputs[1].shape == (1, 16, 16, 19)
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-5, atol=1e-5)


def test_convs_of_vector_channels_are_left_alone():
    module, _ = _conv("float32", 24)
    with tvm_target(preset("host")):
        assert "strided_slice" not in to_vector_channels(module).script()
