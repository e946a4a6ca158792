"""mnv3compile/relax/vector_channels.py: a conv of 19 output channels (a segmenter's classes) computed on
24 zero-padded channels and sliced gives the same numbers, fp32 and int8, and then gets a kernel
template instead of TVM's scalar default schedule."""

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import ir as I, relax as R

from mnv3compile.schedules.kernels.isa import isa_of
from mnv3compile.schedules.kernels.dispatch import apply_templates
from mnv3compile.relax.vector_channels import padded_outputs, to_vector_channels
from mnv3compile.targets.presets import preset
from mnv3compile.tvm.build import tvm_target
from mnv3compile.relax.pipeline import run_pipeline

from relax_structural import assert_rewrites_to


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


# Structural: the rewrite of a small Before module is exactly Expected (tests/relax_structural.py).



def test_structure_19_output_channels_become_a_conv_of_24_and_a_slice():
    """The conv keeps its strides, padding and out_dtype; its weight gains 5 zero output channels
    (HWIO: the last axis); the slice keeps channels 0..18."""
    weight = np.random.default_rng(0).integers(-128, 128, (3, 3, 8, 19)).astype(np.int8)
    wide = np.concatenate([weight, np.zeros((3, 3, 8, 5), np.int8)], axis=3)

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 8, 8, 8), "int8")) -> R.Tensor((1, 4, 4, 19), "int32"):
            with R.dataflow():
                gv = R.nn.conv2d(x, R.const(weight), strides=[2, 2], padding=[1, 1, 1, 1], data_layout="NHWC",
                                 kernel_layout="HWIO", out_layout="NHWC", out_dtype="int32")
                R.output(gv)
            return gv

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 8, 8, 8), "int8")) -> R.Tensor((1, 4, 4, 19), "int32"):
            with R.dataflow():
                padded = R.nn.conv2d(x, R.const(wide), strides=[2, 2], padding=[1, 1, 1, 1], data_layout="NHWC",
                                     kernel_layout="HWIO", out_layout="NHWC", out_dtype="int32")
                gv = R.strided_slice(padded, axes=[3], begin=[0], end=[19])
                R.output(gv)
            return gv

    assert_rewrites_to(to_vector_channels, Before, Expected)


def test_structure_a_float_conv_feeding_an_op_is_sliced_before_it():
    weight = np.random.default_rng(1).standard_normal((1, 1, 16, 3)).astype(np.float32)
    wide = np.concatenate([weight, np.zeros((1, 1, 16, 5), np.float32)], axis=3)
    bias = np.arange(3, dtype=np.float32)

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 4, 4, 16), "float32")) -> R.Tensor((1, 4, 4, 3), "float32"):
            with R.dataflow():
                conv = R.nn.conv2d(x, R.const(weight), data_layout="NHWC", kernel_layout="HWIO", out_layout="NHWC")
                gv = R.add(conv, R.const(bias))
                R.output(gv)
            return gv

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 4, 4, 16), "float32")) -> R.Tensor((1, 4, 4, 3), "float32"):
            with R.dataflow():
                padded = R.nn.conv2d(x, R.const(wide), data_layout="NHWC", kernel_layout="HWIO", out_layout="NHWC")
                conv = R.strided_slice(padded, axes=[3], begin=[0], end=[3])
                gv = R.add(conv, R.const(bias))
                R.output(gv)
            return gv

    assert_rewrites_to(to_vector_channels, Before, Expected)


def _conv_left_alone(case: str):
    rng = np.random.default_rng(2)
    vector = rng.standard_normal((1, 1, 16, 24)).astype(np.float32)
    depthwise = rng.standard_normal((3, 3, 1, 19)).astype(np.float32)
    nchw = rng.standard_normal((19, 16, 1, 1)).astype(np.float32)

    @I.ir_module
    class Vector:  # 24 channels: three vectors already
        @R.function
        def main(x: R.Tensor((1, 4, 4, 16), "float32")) -> R.Tensor((1, 4, 4, 24), "float32"):
            with R.dataflow():
                gv = R.nn.conv2d(x, R.const(vector), data_layout="NHWC", kernel_layout="HWIO", out_layout="NHWC")
                R.output(gv)
            return gv

    @I.ir_module
    class Depthwise:  # grouped: padding its outputs would change its groups
        @R.function
        def main(x: R.Tensor((1, 4, 4, 19), "float32")) -> R.Tensor((1, 4, 4, 19), "float32"):
            with R.dataflow():
                gv = R.nn.conv2d(x, R.const(depthwise), padding=[1, 1, 1, 1], groups=19, data_layout="NHWC",
                                 kernel_layout="HWIO", out_layout="NHWC")
                R.output(gv)
            return gv

    @I.ir_module
    class Nchw:  # before ChannelsLast: not the layout this pass takes
        @R.function
        def main(x: R.Tensor((1, 16, 4, 4), "float32")) -> R.Tensor((1, 19, 4, 4), "float32"):
            with R.dataflow():
                gv = R.nn.conv2d(x, R.const(nchw))
                R.output(gv)
            return gv

    @I.ir_module
    class WeightAnInput:  # not a constant: nothing to pad at build time
        @R.function
        def main(x: R.Tensor((1, 4, 4, 16), "float32"), w: R.Tensor((1, 1, 16, 19), "float32")
                 ) -> R.Tensor((1, 4, 4, 19), "float32"):
            with R.dataflow():
                gv = R.nn.conv2d(x, w, data_layout="NHWC", kernel_layout="HWIO", out_layout="NHWC")
                R.output(gv)
            return gv

    return {"vector": Vector, "depthwise": Depthwise, "nchw": Nchw, "weight_an_input": WeightAnInput}[case]


@pytest.mark.parametrize("case", ["vector", "depthwise", "nchw", "weight_an_input"])
def test_structure_convs_it_does_not_take_are_unchanged(case):
    before = _conv_left_alone(case)
    assert_rewrites_to(to_vector_channels, before, before)
