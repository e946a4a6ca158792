"""The channels-last pass (mnv3compile/relax/channels_last.py): whole networks run in NHWC with one transpose at
the input (and one at the output of a segmenter), weights transposed at build time, results
unchanged; an op it has no rule for gets its inputs back in NCHW and stays correct."""

import numpy as np
import pytest
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm import relax

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
