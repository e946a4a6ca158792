"""The channels-last pass (mnv3compile/relax/channels_last.py): whole networks run in NHWC with one transpose at
the input (and one at the output of a segmenter), weights transposed at build time, results
unchanged; an op it has no rule for gets its inputs back in NCHW and stays correct."""

import numpy as np
import pytest
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm import relax
from tvm.script import ir as I, relax as R

from mnv3compile.passes.optimize import optimize
from mnv3compile.passes.registry import PIPELINE
from mnv3compile.quant import quantize
from mnv3compile.quant.calibration import load_samples
from mnv3compile.relax.channels_last import to_channels_last
from mnv3compile.targets.presets import preset
from mnv3compile.tvm.build import quantize_node_names, tvm_target
from mnv3compile.tvm.frontend import import_onnx
from mnv3compile.relax.int8_lowering import lower_to_integer
from mnv3compile.relax.pipeline import relax_passes
from mnv3compile.zoo import build_model, build_spec

from conftest import run_onnx
from relax_structural import assert_rewrites_to


def _optimized(model):
    """As build gives it to TVM: BatchNorm folded, h-swish canonical."""
    return optimize(model, PIPELINE)[0]


def _imported(model):
    module, _ = import_onnx(model)
    if any(n.op_type == "QuantizeLinear" for n in model.graph.node):
        module, _ = lower_to_integer(module, quantize_node_names(model))
    return module


def _calls(module, name: str) -> list:
    found = []
    relax.analysis.post_order_visit(module["main"], lambda e: found.append(e) if isinstance(e, relax.Call)
                                    and getattr(e.op, "name", None) == name else None)
    return found


def _activation_transposes(module) -> int:
    """Transposes left after constant folding (those of weights are folded away)."""
    folded = relax.transform.FoldConstant()(module)
    return len(_calls(folded, "relax.permute_dims"))


def _compiled_output(module, x: np.ndarray, channels_last: bool) -> np.ndarray:
    target = tvm_target(preset("host"))
    with target:
        for name, make in relax_passes():
            if channels_last or name != "ChannelsLast":
                module = make()(module)
    result = relax.VirtualMachine(tvm.compile(module, target), tvm.cpu())["main"](tvm.runtime.tensor(x))
    return (result.numpy() if hasattr(result, "numpy") else result[0].numpy())


@pytest.mark.slow
@pytest.mark.parametrize("model_name, transposes", [("small", 1), ("lraspp-small", 2)])
def test_network_runs_nhwc_with_one_transpose_in_and_one_out(model_name, transposes):
    module = to_channels_last(_imported(_optimized(build_model(build_spec(model_name, 0.5, 96)))))
    convs = _calls(module, "relax.nn.conv2d")
    assert convs and all(c.attrs.data_layout == "NHWC" and c.attrs.kernel_layout == "HWIO" for c in convs)
    # the classifier's 1x1-pixel tensor goes back to NCHW by a free reshape, not a transpose
    assert _activation_transposes(module) == transposes


@pytest.mark.slow
@pytest.mark.parametrize("quantized", [False, True])
def test_results_equal_nchw(quantized):
    """int8: bit for bit. fp32: TVM's NCHW conv sums input channels outermost and its NHWC conv
    sums taps outermost, so float rounding differs in the last bits."""
    spec = build_spec("small", 0.5, 96)
    model = _optimized(build_model(spec))
    if quantized:
        model = quantize(model, load_samples("synthetic:4", spec.input_shape, None)).model
    x = np.random.default_rng(0).standard_normal(spec.input_shape).astype(np.float32)
    nchw = _compiled_output(_imported(model), x, channels_last=False)
    nhwc = _compiled_output(_imported(model), x, channels_last=True)
    if quantized:
        assert np.array_equal(nchw, nhwc)
    else:
        assert np.abs(nchw - nhwc).max() <= 1e-5 * np.abs(nchw).max()


def test_an_op_without_a_rule_reads_nchw_and_stays_correct():
    """Softmax over channels (axis 1) has no NHWC rule: it gets its input transposed back."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((8, 3, 1, 1)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("Softmax", ["r"], ["y"], axis=1)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    module = to_channels_last(_imported(model))
    assert _calls(module, "relax.nn.conv2d")[0].attrs.data_layout == "NHWC"
    assert _calls(module, "relax.nn.softmax")[0].args[0].ty.shape.values[1] == 8  # NCHW again
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    expected = run_onnx(model, {"x": x})[0]
    assert np.allclose(_compiled_output(_imported(model), x, channels_last=True), expected, rtol=1e-5, atol=1e-6)


# Structural: the rewrite of a small Before module is exactly Expected (tests/relax_structural.py).


OIHW = np.random.default_rng(0).standard_normal((8, 3, 3, 3)).astype(np.float32)  # a stem: 3 -> 8, 3x3
HWIO = np.ascontiguousarray(OIHW.transpose(2, 3, 1, 0))


def test_structure_a_conv_block_runs_nhwc_between_one_transpose_in_and_one_out():
    """The input is transposed once; the conv keeps its strides and padding with the weight
    transposed at build time (a constant); the per-channel bias, a constant too, is transposed
    with it; relu follows in NHWC; the output goes back to NCHW once."""
    bias = np.random.default_rng(1).standard_normal((1, 8, 1, 1)).astype(np.float32)

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 3, 8, 8), "float32")) -> R.Tensor((1, 8, 4, 4), "float32"):
            with R.dataflow():
                conv = R.nn.conv2d(x, R.const(OIHW), strides=[2, 2], padding=[1, 1, 1, 1])
                biased = R.add(conv, R.const(bias))
                gv = R.nn.relu(biased)
                R.output(gv)
            return gv

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 3, 8, 8), "float32")) -> R.Tensor((1, 8, 4, 4), "float32"):
            with R.dataflow():
                x_nhwc = R.permute_dims(x, axes=[0, 2, 3, 1])
                conv = R.nn.conv2d(x_nhwc, R.const(HWIO), strides=[2, 2], padding=[1, 1, 1, 1], data_layout="NHWC",
                                   kernel_layout="HWIO", out_layout="NHWC")
                biased = R.add(conv, R.const(bias.reshape(1, 1, 1, 8)))
                relu = R.nn.relu(biased)
                gv = R.permute_dims(relu, axes=[0, 3, 1, 2])
                R.output(gv)
            return gv

    assert_rewrites_to(to_channels_last, Before, Expected)


def test_structure_a_one_pixel_result_goes_back_to_nchw_by_a_reshape():
    """Global pooling (a mean over H and W) reduces NHWC's axes 1 and 2; its 1x1-pixel result is
    the same bytes in either layout: a reshape, not a transpose."""

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 3, 8, 8), "float32")) -> R.Tensor((1, 8, 1, 1), "float32"):
            with R.dataflow():
                conv = R.nn.conv2d(x, R.const(OIHW), padding=[1, 1, 1, 1])
                gv = R.mean(conv, axis=[2, 3], keepdims=True)
                R.output(gv)
            return gv

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 3, 8, 8), "float32")) -> R.Tensor((1, 8, 1, 1), "float32"):
            with R.dataflow():
                x_nhwc = R.permute_dims(x, axes=[0, 2, 3, 1])
                conv = R.nn.conv2d(x_nhwc, R.const(HWIO), padding=[1, 1, 1, 1], data_layout="NHWC",
                                   kernel_layout="HWIO", out_layout="NHWC")
                pooled = R.mean(conv, axis=[1, 2], keepdims=True)
                gv = R.reshape(pooled, R.shape([1, 8, 1, 1]))
                R.output(gv)
            return gv

    assert_rewrites_to(to_channels_last, Before, Expected)


def test_structure_an_op_without_a_rule_reads_its_input_transposed_back():
    """Softmax over channels has no NHWC rule, and an add of a rank-3 operand would broadcast
    along other axes in NHWC: both read the conv's result in NCHW."""
    offsets = np.random.default_rng(2).standard_normal((8, 1, 1)).astype(np.float32)

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 3, 8, 8), "float32")) -> R.Tensor((1, 8, 8, 8), "float32"):
            with R.dataflow():
                conv = R.nn.conv2d(x, R.const(OIHW), padding=[1, 1, 1, 1])
                shifted = R.add(conv, R.const(offsets))
                gv = R.nn.softmax(shifted, axis=1)
                R.output(gv)
            return gv

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 3, 8, 8), "float32")) -> R.Tensor((1, 8, 8, 8), "float32"):
            with R.dataflow():
                x_nhwc = R.permute_dims(x, axes=[0, 2, 3, 1])
                conv_nhwc = R.nn.conv2d(x_nhwc, R.const(HWIO), padding=[1, 1, 1, 1], data_layout="NHWC",
                                        kernel_layout="HWIO", out_layout="NHWC")
                conv = R.permute_dims(conv_nhwc, axes=[0, 3, 1, 2])
                shifted = R.add(conv, R.const(offsets))
                gv = R.nn.softmax(shifted, axis=1)
                R.output(gv)
            return gv

    assert_rewrites_to(to_channels_last, Before, Expected)


def _graph_left_alone(case: str):
    @I.ir_module
    class NoConv:  # only a conv starts an NHWC region
        @R.function
        def main(x: R.Tensor((1, 8, 4, 4), "float32")) -> R.Tensor((1, 8, 4, 4), "float32"):
            with R.dataflow():
                gv = R.clip(R.nn.relu(x), 0, 6)
                R.output(gv)
            return gv

    @I.ir_module
    class Nhwc:  # a conv in another layout than NCHW/OIHW
        @R.function
        def main(x: R.Tensor((1, 8, 8, 3), "float32")) -> R.Tensor((1, 8, 8, 8), "float32"):
            with R.dataflow():
                conv = R.nn.conv2d(x, R.const(HWIO), padding=[1, 1, 1, 1], data_layout="NHWC", kernel_layout="HWIO",
                                   out_layout="NHWC")
                gv = R.nn.relu(conv)
                R.output(gv)
            return gv

    return {"no_conv": NoConv, "nhwc": Nhwc}[case]


@pytest.mark.parametrize("case", ["no_conv", "nhwc"])
def test_structure_graphs_without_an_nchw_conv_are_unchanged(case):
    before = _graph_left_alone(case)
    assert_rewrites_to(to_channels_last, before, before)
