"""Integer lowering of QDQ graphs: the fixed-point and table arithmetic, each lowering as a
Before/Expected structural test, every kernel of real models within one step of onnxruntime on
identical int8 inputs, whole bundles against onnxruntime's QDQ model, and fallbacks by name."""

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm import relax
from tvm.relax import op

from mnv3compile.pipeline import BuildRequest, build
from mnv3compile.quant import quantize
from mnv3compile.quant.calibration import Sample, load_samples
from mnv3compile.runner import BundleRunner
from mnv3compile.targets.presets import preset
from mnv3compile.relax.epilogues import AffineClip, Gated, Sigmoid, recognize
from mnv3compile.relax.fixed_point import fixed_point, lookup_table
from mnv3compile.relax.int8_lowering import lower_to_integer
from mnv3compile.zoo import build_model, build_spec

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from int8_kernels import compare_kernels  # noqa: E402

from conftest import run_onnx  # noqa: E402


# --- arithmetic -------------------------------------------------------------------------------

def test_fixed_point_rounds_once_to_the_nearest_step():
    rng = np.random.default_rng(0)
    real = rng.uniform(1e-6, 0.9, size=64)
    fp = fixed_point(real)
    assert fp.multiplier.max() < 2**31 and fp.multiplier.max() >= 2**30 and 1 <= fp.shift <= 62
    x = rng.integers(-2**24, 2**24, size=(1000, 64))
    exact = x * real
    assert np.abs(fp.apply(x) - exact).max() <= 0.5 + 1e-6 * np.abs(exact).max()
    assert fixed_point(0.5).apply(np.array([5, -5])).tolist() == [3, -2]  # ties round half up
    with pytest.raises(ValueError):
        fixed_point(np.array([0.0, 1.0]))


def _qdq_unary_model(op_type: str, scale_in, zero_in, scale_out, zero_out, **attrs) -> onnx.ModelProto:
    nodes = [helper.make_node("DequantizeLinear", ["q", "si", "zi"], ["x"]),
             helper.make_node(op_type, ["x"], ["y"], **attrs),
             helper.make_node("QuantizeLinear", ["y", "so", "zo"], ["out"])]
    inits = [numpy_helper.from_array(np.array(v, dt), n) for n, v, dt in
             [("si", scale_in, np.float32), ("zi", zero_in, np.int8), ("so", scale_out, np.float32), ("zo", zero_out, np.int8)]]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("q", TensorProto.INT8, [256])],
                              [helper.make_tensor_value_info("out", TensorProto.INT8, [256])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("op_type, function", [
    ("HardSigmoid", lambda x: np.clip(x * np.float32(0.2) + np.float32(0.5), 0, 1)),
    ("HardSwish", lambda x: x * np.clip(x * np.float32(1 / 6) + np.float32(0.5), 0, 1)),
    ("Sigmoid", lambda x: 1 / (1 + np.exp(-x))),
])
def test_lookup_table_equals_onnxruntime_on_all_256_codes(op_type, function):
    codes = np.arange(-128, 128, dtype=np.int8)
    model = _qdq_unary_model(op_type, 0.05, 3, 1 / 256 if op_type != "HardSwish" else 0.03, -128 if op_type != "HardSwish" else -20)
    (expected,) = run_onnx(model, {"q": codes})
    scale_out, zero_out = (1 / 256, -128) if op_type != "HardSwish" else (0.03, -20)
    table = lookup_table(function, 0.05, 3, scale_out, zero_out)
    assert np.abs(table.astype(int) - expected.astype(int)).max() == 0


def test_epilogues_are_recognized_by_what_they_compute():
    assert recognize(lambda v: v) == AffineClip(1.0, 0.0, -np.inf, np.inf)
    relu6 = recognize(lambda v: np.minimum(np.maximum(v, 0), 6))
    assert isinstance(relu6, AffineClip) and (relu6.low, relu6.high) == (0, 6)
    hsigmoid = recognize(lambda v: np.clip(v + 3, 0, 6) / 6)
    assert isinstance(hsigmoid, AffineClip) and abs(hsigmoid.slope - 1 / 6) < 1e-9 and abs(hsigmoid.offset - 0.5) < 1e-9
    hswish = recognize(lambda v: v * np.clip(v + 3, 0, 6) / 6)
    assert isinstance(hswish, Gated) and abs(hswish.gate.slope - 1 / 6) < 1e-9
    assert recognize(lambda v: 1 / (1 + np.exp(-v))) == Sigmoid()  # the float epilogue computes it
    assert recognize(lambda v: 1 / (1 + np.exp(-2 * v))) is None  # a scaled sigmoid is not one
    assert recognize(lambda v: np.abs(v)) is None


# --- Before / Expected ------------------------------------------------------------------------

def _const(value, dtype):
    return relax.const(np.asarray(value).astype(dtype), dtype)


def _function(params, body) -> tvm.IRModule:
    """A one-function module: ``body(bb, *params)`` emits the dataflow and returns the output."""
    bb = relax.BlockBuilder()
    with bb.function("main", params):
        with bb.dataflow():
            out = bb.emit_output(body(bb, *params))
        bb.emit_func_output(out)
    return bb.get()


def _dequantize(x, scale, zero, axis=-1):
    return op.dequantize(x, _const(scale, "float32"), _const(zero, "int8"), axis=axis)


def test_conv_relu_becomes_int8_conv_with_a_fixed_point_epilogue():
    weight = np.array([[[[3]], [[-2]]], [[[1]], [[4]]]], np.int8)  # 2 -> 2 channels, 1x1
    x = relax.Var("x", relax.TensorType((1, 2, 4, 4), "int8"))

    def before(bb, x):
        data = bb.emit(_dequantize(x, 0.5, 0))
        w = bb.emit(op.dequantize(_const(weight, "int8"), _const([0.25, 0.125], "float32"),
                                  _const([0, 0], "int8"), axis=0))
        conv = bb.emit(op.nn.relu(bb.emit(op.nn.conv2d(data, w))))
        q = bb.emit(op.quantize(conv, _const(1.0, "float32"), _const(0, "int8"), axis=1))
        return op.dequantize(q, _const(1.0, "float32"), _const(0, "int8"), axis=1)

    def expected(bb, x):
        # accumulator scales 0.5*0.25 = 2**-3 and 0.5*0.125 = 2**-4: one shift of 33 for both
        # the bias (0 here) enters after the multiply, with the rounding: bias * m + 2**32 per channel
        acc = bb.emit(op.nn.conv2d(x, _const(weight, "int8"), out_dtype="int32"))
        wide = bb.emit(op.astype(acc, "int64"))
        steps = bb.emit(op.right_shift(op.add(op.multiply(wide, _const(np.array([2**30, 2**29]).reshape(1, 2, 1, 1), "int64")),
                                              _const(np.full((1, 2, 1, 1), 2**32), "int64")), _const(33, "int64")))
        steps = bb.emit(op.clip(steps, 0, 2**62))  # ReLU: clip at the zero point
        q = bb.emit(op.astype(op.clip(steps, -128, 127), "int8"))
        return op.dequantize(q, _const(1.0, "float32"), _const(0, "int8"), axis=1)

    lowered, report = lower_to_integer(_function([x], before), requantize="fixed-point")
    tvm.ir.assert_structural_equal(lowered, _function([x], expected))
    assert report.integer_groups == {"conv2d": 1} and not report.fallbacks


def test_conv_hswish_becomes_int8_conv_with_a_float32_epilogue():
    """The default requantization: the accumulator in float32 times its per-channel step
    multiplier (input scale x weight scale / output scale), the bias folded in as float, h-swish
    on output steps, rounded half to even with the zero point added, saturated to int8."""
    weight = np.array([[[[3]], [[-2]]], [[[1]], [[4]]]], np.int8)
    bias = np.array([0.5, -0.25], np.float32)
    x = relax.Var("x", relax.TensorType((1, 2, 4, 4), "int8"))

    def before(bb, x):
        data = bb.emit(_dequantize(x, 0.5, 0))
        w = bb.emit(op.dequantize(_const(weight, "int8"), _const([0.25, 0.125], "float32"),
                                  _const([0, 0], "int8"), axis=0))
        conv = bb.emit(op.add(bb.emit(op.nn.conv2d(data, w)), _const(bias.reshape(1, 2, 1, 1), "float32")))
        gate = bb.emit(op.divide(op.clip(op.add(conv, _const(3.0, "float32")), 0, 6), _const(6.0, "float32")))
        q = bb.emit(op.quantize(bb.emit(op.multiply(conv, gate)), _const(0.25, "float32"), _const(-3, "int8"), axis=1))
        return op.dequantize(q, _const(0.25, "float32"), _const(-3, "int8"), axis=1)

    def expected(bb, x):
        acc = bb.emit(op.nn.conv2d(x, _const(weight, "int8"), out_dtype="int32"))
        steps_per_unit = np.array([0.5 * 0.25, 0.5 * 0.125]) / 0.25  # output steps per accumulator unit
        bias_units = np.round(bias / (0.5 * np.array([0.25, 0.125])))  # the bias in accumulator units
        total = op.add(op.multiply(op.astype(acc, "float32"), _const(steps_per_unit.reshape(1, 2, 1, 1), "float32")),
                       _const((bias_units * steps_per_unit).reshape(1, 2, 1, 1), "float32"))
        gate = op.add(op.multiply(total, _const(0.25 / 6, "float32")), _const(0.5, "float32"))
        total = op.multiply(total, op.clip(gate, 0.0, 1.0))
        steps = op.add(op.round(total), _const(-3, "float32"))
        q = bb.emit(op.astype(op.clip(steps, -128, 127), "int8"))
        return op.dequantize(q, _const(0.25, "float32"), _const(-3, "int8"), axis=1)

    lowered, report = lower_to_integer(_function([x], before))
    tvm.ir.assert_structural_equal(lowered, _function([x], expected))
    assert report.integer_groups == {"conv2d": 1} and not report.fallbacks


def test_elementwise_group_becomes_a_table():
    x = relax.Var("x", relax.TensorType((1, 8), "int8"))

    def before(bb, x):
        v = bb.emit(_dequantize(x, 0.1, 5))
        gate = bb.emit(op.multiply(op.clip(op.add(v, _const(3.0, "float32")), 0, 6), _const(1 / 6, "float32")))
        q = bb.emit(op.quantize(gate, _const(1 / 256, "float32"), _const(-128, "int8"), axis=1))
        return op.dequantize(q, _const(1 / 256, "float32"), _const(-128, "int8"), axis=1)

    table = lookup_table(lambda r: np.clip(r + np.float32(3), 0, 6) * np.float32(1 / 6), 0.1, 5, 1 / 256, -128)

    def expected(bb, x):  # table[x + 128], as the table rotated by 128 indexed by x (wrapping)
        q = bb.emit(op.take(_const(np.roll(table, 128), "int8"), x, axis=0, mode="wrap"))
        return op.dequantize(q, _const(1 / 256, "float32"), _const(-128, "int8"), axis=1)

    lowered, report = lower_to_integer(_function([x], before))
    tvm.ir.assert_structural_equal(lowered, _function([x], expected))
    assert report.integer_groups == {"lookup-table": 1}


def test_reshape_with_the_same_scale_moves_int8_only():
    x = relax.Var("x", relax.TensorType((1, 8, 1, 1), "int8"))

    def before(bb, x):
        v = bb.emit(_dequantize(x, 0.1, 5))
        flat = bb.emit(op.reshape(v, (1, 8)))
        q = bb.emit(op.quantize(flat, _const(0.1, "float32"), _const(5, "int8"), axis=1))
        return op.dequantize(q, _const(0.1, "float32"), _const(5, "int8"), axis=1)

    def expected(bb, x):
        flat = bb.emit(op.reshape(x, (1, 8)))
        return op.dequantize(flat, _const(0.1, "float32"), _const(5, "int8"), axis=1)

    lowered, _ = lower_to_integer(_function([x], before))
    tvm.ir.assert_structural_equal(lowered, _function([x], expected))


def test_sigmoid_epilogue_and_bilinear_resize_are_integer_kernels_within_one_step():
    """LR-ASPP's attention branch (a conv with a sigmoid) and its bilinear upsampling: integer
    kernels (int8 in and out) since they had fallen back to dequantize -> float -> quantize."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="attention"),
             helper.make_node("Sigmoid", ["c"], ["gate"], name="gate"),
             helper.make_node("Resize", ["gate", "", "", "size"], ["y"], mode="linear",
                              coordinate_transformation_mode="half_pixel", name="upsample")]
    inits = [numpy_helper.from_array(rng.standard_normal((8, 6, 1, 1)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b"),
             numpy_helper.from_array(np.array([1, 8, 12, 20], np.int64), "size")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 3, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 12, 20])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    samples = [Sample(rng.standard_normal((1, 6, 3, 5)).astype(np.float32)) for _ in range(4)]
    qdq = quantize(model, samples).model
    results = _assert_every_kernel_within_one_step(qdq, (1, 6, 3, 5), "x")
    kernels = {tuple(r.ops): " ".join(r.kernel_names) for r in results}
    assert set(kernels) == {("Conv", "Sigmoid"), ("Resize",)}
    assert "sigmoid" in kernels[("Conv", "Sigmoid")] and "resize" in kernels[("Resize",)]
    assert "dequantize" not in " ".join(kernels.values()) and "quantize" not in " ".join(kernels.values())


def test_a_transformer_block_is_integer_kernels_within_one_step():
    """PP-OCRv4's SVTR neck in small: an average pool, tokens, a LayerNorm spelled in elementwise
    ops, Linear layers over tokens, attention (Q.K^T, softmax, P.V): all int8 in and out."""
    rng = np.random.default_rng(0)
    c, t = 8, 6
    nodes = [helper.make_node("AveragePool", ["x"], ["pooled"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
             helper.make_node("Reshape", ["pooled", "tokens_shape"], ["flat"]),
             helper.make_node("Transpose", ["flat"], ["tokens"], perm=[0, 2, 1]),
             helper.make_node("ReduceMean", ["tokens"], ["mean"], axes=[-1]),
             helper.make_node("Sub", ["tokens", "mean"], ["d"]),
             helper.make_node("Pow", ["d", "two"], ["sq"]),
             helper.make_node("ReduceMean", ["sq"], ["var"], axes=[-1]),
             helper.make_node("Add", ["var", "eps"], ["var_eps"]),
             helper.make_node("Sqrt", ["var_eps"], ["std"]),
             helper.make_node("Div", ["d", "std"], ["normalized"]),
             helper.make_node("Mul", ["normalized", "gamma"], ["scaled"]),
             helper.make_node("Add", ["scaled", "beta"], ["norm"]),
             helper.make_node("MatMul", ["norm", "wq"], ["q0"]), helper.make_node("Add", ["q0", "bq"], ["q"]),
             helper.make_node("MatMul", ["norm", "wk"], ["k0"]), helper.make_node("Add", ["k0", "bk"], ["k"]),
             helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["q", "kt"], ["scores"], name="qk"),
             helper.make_node("Softmax", ["scores"], ["p"], axis=-1),
             helper.make_node("MatMul", ["p", "q"], ["y"], name="pv")]
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    inits = [numpy_helper.from_array(a, n) for n, a in [
        ("tokens_shape", np.array([1, c, t], np.int64)), ("two", np.array(2.0, np.float32)),
        ("eps", np.array(1e-5, np.float32)), ("gamma", f32(c) + 1), ("beta", f32(c)), ("wq", f32(c, c)),
        ("bq", f32(c)), ("wk", f32(c, c)), ("bk", f32(c))]]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 4, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, t, c])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    qdq = quantize(model, [Sample(f32(1, c, 4, 6)) for _ in range(4)]).model
    results = _assert_every_kernel_within_one_step(qdq, (1, c, 4, 6), "x")
    ops = {tuple(r.ops) for r in results}
    assert {("AveragePool",), ("LayerNormalization",), ("Gemm",), ("MatMul",), ("Softmax",)} <= ops, ops
    assert not any("dequantize" in k or k.startswith("quantize") for r in results for k in r.kernel_names)


@pytest.mark.parametrize("kernel, stride, pads, output_padding", [(2, 2, [0, 0, 0, 0], [0, 0]),
                                                                  (3, 2, [1, 1, 1, 1], [1, 1]),
                                                                  (4, 2, [1, 0, 2, 1], [0, 0])],
                         ids=["2x2-stride2", "3x3-padded-output-padding", "4x4-asymmetric"])
def test_transposed_conv_is_an_integer_kernel_within_one_step(kernel, stride, pads, output_padding):
    """PaddleOCR's DB head upsamples with ConvTranspose: int8 weights per output channel (axis 1),
    int32 accumulation on the input's steps (its zero point cannot go into the bias: how many
    taps reach an output depends on where it lies)."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("ConvTranspose", ["x", "w", "b"], ["c"], strides=[stride, stride], pads=pads,
                              output_padding=output_padding, kernel_shape=[kernel, kernel], name="up"),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    inits = [numpy_helper.from_array(rng.standard_normal((6, 8, kernel, kernel)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b")]
    out = [(n - 1) * stride - pads[axis] - pads[axis + 2] + kernel + output_padding[axis] for axis, n in enumerate((5, 7))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 5, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, *out])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    samples = [Sample((rng.standard_normal((1, 6, 5, 7)) + 1.0).astype(np.float32)) for _ in range(4)]
    qdq = quantize(model, samples).model
    results = _assert_every_kernel_within_one_step(qdq, (1, 6, 5, 7), "x")
    if kernel == stride:  # optimize made it a 1x1 Conv + DepthToSpace (transposed_conv_to_depth_to_space)
        assert {tuple(r.ops) for r in results} == {("Conv",), ("DepthToSpace",), ("Relu",)}
    else:
        (transposed,) = [r for r in results if r.ops == ["ConvTranspose"]]
        assert any("conv2d_transpose" in k for k in transposed.kernel_names)
    assert not any("dequantize" in k or k.startswith("quantize") for r in results for k in r.kernel_names)


def test_unknown_quantized_op_falls_back_by_name_and_matches_onnxruntime(tmp_path):
    """A ReduceMax between QDQ pairs has no integer lowering: that group alone stays fake-quantized,
    the build says so naming the node, and the result still equals onnxruntime."""
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
             helper.make_node("Relu", ["xd"], ["r"], name="relu"),
             helper.make_node("QuantizeLinear", ["r", "s", "z"], ["rq"]),
             helper.make_node("DequantizeLinear", ["rq", "s", "z"], ["rd"]),
             helper.make_node("ReduceMax", ["rd"], ["m"], name="odd_reduce", keepdims=1, axes=[2, 3]),
             helper.make_node("QuantizeLinear", ["m", "s", "z"], ["mq"]),
             helper.make_node("DequantizeLinear", ["mq", "s", "z"], ["y"])]
    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "s"), numpy_helper.from_array(np.array(-3, np.int8), "z")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 1, 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    from mnv3compile.tvm.build import compile_onnx

    library = compile_onnx(model, preset("host"), tmp_path / "m.so")
    assert library.int8["integer_groups"] == 1 and library.int8["fallback_groups"] == 1
    assert [n for n in library.notes if "odd_reduce" in n] == [
        "int8: node 'odd_reduce': conv2d: no single conv2d; conv2d_transpose: no single conv2d_transpose; "
        "matmul: no single matmul; matmul-of-activations: no single matmul; add: no single add; "
        "multiply: no single multiply; mean: no single mean; concat: no single concat; resize: no single resize2d; "
        "average-pool: no single avg_pool2d; layer-norm: no single layer_norm; softmax: no single softmax; "
        "layout: it is not data "
        "movement of one tensor; lookup-table: it changes the shape; it stays dequantize -> float -> quantize"]
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(library.path)), tvm.cpu())
    x = np.random.default_rng(0).standard_normal((1, 4, 6, 6)).astype(np.float32)
    (expected,) = run_onnx(model, {"x": x})
    assert np.abs(vm["main"](tvm.runtime.tensor(x)).numpy() - expected).max() <= 0.05 + 1e-6


# --- real models, kernel by kernel and whole ---------------------------------------------------

def _qdq(spec, calib: int = 4):
    return quantize(build_model(spec), load_samples(f"synthetic:{calib}", spec.input_shape, None)).model


def _assert_every_kernel_within_one_step(model, shape, input_name="input"):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    results = compare_kernels(model, {input_name: x})
    worst = max(results, key=lambda r: r.max_steps)
    assert worst.max_steps <= 1, (worst.output, worst.ops, worst.max_steps)
    # differing elements are rare: near-ties, where fixed point and float round apart
    assert max((r.share_differing for r in results if r.ops != ["Resize"]), default=0) < 0.01
    # A bilinear resize lands exactly halfway between two steps often (weights 1/4 and 3/4 on
    # integers): we round those ties to even, exactly; onnxruntime's float rounding noise decides them.
    assert max((r.share_differing for r in results if r.ops == ["Resize"]), default=0) < 0.05
    return results


def test_every_integer_kernel_of_small_within_one_step_of_onnxruntime():
    spec = build_spec("small", 0.5, 96)
    results = _assert_every_kernel_within_one_step(_qdq(spec), spec.input_shape)
    assert len(results) > 80
    for result in results:
        # One kernel per group, except two stages TVM's FuseOps will not join: the zero-point
        # padding before a padded conv, and the int32 sum before the mean's epilogue; and the
        # NCHW <-> NHWC conversions at the entrance and exit of a kernel cut out alone (a whole
        # network has one of each; a 1x1-pixel one is a reshape), which may carry that padding.
        names = result.kernel_names
        extra = [k for k in names if "transpose" not in k and (
            k.startswith(("pad", "fused_cast_subtract_sum", "sum")) or "subtract" in k and "sum" in k)]
        rest = [k for k in names if k not in extra]
        layout = [k for k in rest if "transpose" in k or k.startswith("reshape")] if len(rest) > 1 else []
        assert len(rest) - len(layout) == 1, result
        assert len(extra) <= 1 and len(layout) <= 2, result


@pytest.mark.slow
@pytest.mark.parametrize("model, resolution", [("large", 224), ("lraspp-small", 128)])
def test_every_integer_kernel_of_zoo_models_within_one_step(model, resolution):
    spec = build_spec(model, 1.0, resolution)
    _assert_every_kernel_within_one_step(_qdq(spec), spec.input_shape)


@pytest.mark.slow
def test_every_integer_kernel_of_the_paddleocr_classifier_within_one_step(paddle_cls_path):
    from assets import PADDLE_CLS_SHAPE

    from mnv3compile.analysis import with_static_inputs

    model, _ = with_static_inputs(onnx.load(str(paddle_cls_path)), {"x": PADDLE_CLS_SHAPE})
    qdq = quantize(model, load_samples("synthetic:4", PADDLE_CLS_SHAPE, None)).model
    _assert_every_kernel_within_one_step(qdq, PADDLE_CLS_SHAPE, "x")


@pytest.fixture(scope="module")
def small_int8_bundle(tmp_path_factory):
    spec = build_spec("small", 0.75, 160)
    out = tmp_path_factory.mktemp("small-int8") / "bundle"
    return build(BuildRequest(target=preset("host"), output=out, name="small8", model=build_model(spec), quant="int8"))


@pytest.mark.slow
def test_int8_bundle_is_integer_end_to_end(small_int8_bundle):
    """No float conv/matmul, no dequantize but the output's, no float tensor read or written by any
    kernel but the input's quantize and the output's dequantize; with fixed-point requantization,
    no float arithmetic in any conv or matmul kernel either."""
    report = json.loads((small_int8_bundle.bundle / "build_report.json").read_text())["int8"]
    assert report["fallback_groups"] == 0 and report["integer_groups"] > 80 and report["requantize"] == "float"
    model = onnx.load(str(small_int8_bundle.bundle / small_int8_bundle.manifest["model"]))
    from tvm import tirx

    from mnv3compile.tvm.build import kernel_census, quantize_node_names, tvm_target
    from mnv3compile.tvm.frontend import import_onnx
    from mnv3compile.relax.pipeline import run_pipeline

    for requantize in ("float", "fixed-point"):
        lowered, _ = lower_to_integer(import_onnx(model)[0], quantize_node_names(model), requantize)
        calls = []
        relax.analysis.post_order_visit(lowered["main"], lambda e: calls.append(e) if isinstance(e, relax.Call) else None)
        names = [(c.op.name, str(c.ty.dtype)) for c in calls if hasattr(c.op, "name") and hasattr(c.ty, "dtype")]
        assert {d for n, d in names if n in ("relax.nn.conv2d", "relax.matmul")} == {"int32"}
        assert [n for n, _ in names].count("relax.dequantize") == 1  # the output
        assert [n for n, _ in names].count("relax.quantize") == 1  # the input
        fused = run_pipeline(lowered, tvm_target(preset("host")), integer_only=requantize == "fixed-point")
        kernels = {gv.name_hint: f for gv, f in fused.functions.items() if isinstance(f, tirx.PrimFunc)}
        float_tensors = kernel_census(fused)["float_kernels"]
        # quantize the input, dequantize the output (fused into the classifier)
        assert len(float_tensors) == 2
        if requantize == "float":  # as the bundle was built
            assert float_tensors == report["float_kernels"]
        assert ["dequantize" in name for name in float_tensors] == [True, False]
        convs = [name for name in kernels if any(op in name for op in ("conv2d", "matmul", "dot4", "depthwise"))]
        float_convs = [name for name in convs if "float" in kernels[name].script() and not name.endswith("dequantize")]
        assert convs and (requantize == "float" or not float_convs)


def test_int8_bundle_against_onnxruntime_qdq_end_to_end(small_int8_bundle):
    """Per kernel the difference is at most one step; end to end those rare steps compound through
    eleven blocks. Measured on this model (8 inputs): max 4 steps on the logits, under half of
    the logits off by any, top-1 always equal. The bounds hold that with a margin."""
    model = onnx.load(str(small_int8_bundle.bundle / small_int8_bundle.manifest["model"]))
    step = json.loads((small_int8_bundle.bundle / "small8.quant.json").read_text())["activations"]["logits"]["scale"]
    runner = BundleRunner(small_int8_bundle.bundle)
    steps, agree = [], 0
    for seed in range(8):
        x = np.random.default_rng(seed).standard_normal(runner.input_shape).astype(np.float32)
        got, (expected,) = runner(x), run_onnx(model, {"input": x})
        steps.append(np.abs(got - expected) / step)
        agree += int(np.argmax(got) == np.argmax(expected))
    steps = np.concatenate(steps).ravel()
    assert steps.max() <= 8.01 and steps.mean() <= 1.0 and agree >= 7, (steps.max(), steps.mean(), agree)


@pytest.mark.slow
def test_onnxruntime_quantize_static_model_with_float_hswish_lowers(tmp_path):
    """onnxruntime's own QDQ (per-channel) leaves HardSwish as a float island between Q/DQ pairs:
    our lowering turns that island into a table and the bundle still agrees with onnxruntime."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from mnv3compile.tvm.build import compile_onnx

    spec = build_spec("small", 0.5, 96)
    source, target = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(build_model(spec), source)
    rng = np.random.default_rng(0)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"input": rng.standard_normal(spec.input_shape).astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(source), str(target), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    model = onnx.load(str(target))
    assert "HardSwish" in {n.op_type for n in model.graph.node}
    library = compile_onnx(model, preset("host"), tmp_path / "q.so")
    assert library.int8["integer_groups"] > 40
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(library.path)), tvm.cpu())
    x = rng.standard_normal(spec.input_shape).astype(np.float32)
    got = vm["main"](tvm.runtime.tensor(x))
    got = got.numpy() if hasattr(got, "numpy") else got[0].numpy()
    (expected,) = run_onnx(model, {"input": x})
    assert np.argmax(got) == np.argmax(expected)
    assert np.abs(got - expected).max() <= 0.25 * np.abs(expected).max()


@pytest.mark.slow
def test_paddleocr_int8_bundle_accuracy_equals_its_qdq_model(tmp_path, paddle_cls_path):
    """The trained PaddleOCR classifier on rendered text lines: the integer bundle's accuracy is
    within 0.25 points of onnxruntime running the same QDQ model, and they agree on >= 99.5%."""
    from assets import PADDLE_CLS_SHAPE
    from textlines import write_dataset

    from mnv3compile.analysis import with_static_inputs
    from mnv3compile.quant.preprocess import preset as preprocess

    calib, evaluation = write_dataset(tmp_path / "calib", 100, seed=1), write_dataset(tmp_path / "eval", 400, seed=2)
    model, _ = with_static_inputs(onnx.load(str(paddle_cls_path)), {"x": PADDLE_CLS_SHAPE})
    result = build(BuildRequest(target=preset("host"), output=tmp_path / "cls", name="cls", model=model, quant="int8",
                                calib=str(calib), preprocess="paddle"))
    assert json.loads((result.bundle / "build_report.json").read_text())["int8"]["fallback_groups"] == 0
    qdq = onnx.load(str(result.bundle / result.manifest["model"]))
    runner = BundleRunner(result.bundle)
    samples = load_samples(evaluation, PADDLE_CLS_SHAPE, preprocess("paddle"))
    ours = np.array([np.argmax(runner(s.tensor)) for s in samples])
    theirs = np.array([np.argmax(run_onnx(qdq, {"x": s.tensor})[0]) for s in samples])
    labels = np.array([s.label for s in samples])
    # 0.25 points of 400 lines is one line (measured: 398 vs 399 correct, one disagreement)
    assert abs(int((ours == labels).sum()) - int((theirs == labels).sum())) <= 1
    assert (ours == theirs).mean() >= 0.995 and (theirs == labels).mean() >= 0.95


def test_concat_of_differently_scaled_inputs_is_integer_and_exact(tmp_path):
    from mnv3compile.tvm.build import compile_onnx

    q = [("a", "sa", "za"), ("b", "sb", "zb")]
    nodes = [n for name, s, z in q for n in (helper.make_node("QuantizeLinear", [name, s, z], [f"{name}q"]),
                                            helper.make_node("DequantizeLinear", [f"{name}q", s, z], [f"{name}d"]))]
    nodes += [helper.make_node("Concat", ["ad", "bd"], ["c"], axis=1, name="cat"),
              helper.make_node("QuantizeLinear", ["c", "sc", "zc"], ["cq"]),
              helper.make_node("DequantizeLinear", ["cq", "sc", "zc"], ["y"])]
    inits = [numpy_helper.from_array(np.array(v, dt), n) for n, v, dt in
             [("sa", .02, np.float32), ("za", 3, np.int8), ("sb", .05, np.float32), ("zb", -7, np.int8),
              ("sc", .04, np.float32), ("zc", 1, np.int8)]]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 2, 3, 3]),
                                           helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 4, 3, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 3, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    library = compile_onnx(model, preset("host"), tmp_path / "cat.so")
    assert library.int8["by_kind"] == {"concat": 1} and not library.notes
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(library.path)), tvm.cpu())
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((1, 2, 3, 3)).astype(np.float32), rng.standard_normal((1, 4, 3, 3)).astype(np.float32)
    (expected,) = run_onnx(model, {"a": a, "b": b})
    assert np.array_equal(vm["main"](tvm.runtime.tensor(a), tvm.runtime.tensor(b)).numpy(), expected)


@pytest.mark.parametrize("pads", [[1, 1, 1, 1], [0, 0, 1, 1], [1, 1, 0, 0], [0, 1, 1, 0]],
                         ids=["even", "tf-same-stride-2", "before-only", "mixed"])
@pytest.mark.parametrize("second", ["depthwise", "full"])
def test_a_pad_fused_into_the_producing_conv_is_written_whole(tmp_path, pads, second):
    """int8 conv -> zero-point pad -> stride-2 conv, TF's uneven "same" padding among them: FuseOps
    joins the pad to the first conv, whose tile cannot write the pad's borders; the kernel must
    write all of them (Keras' MobileNetV3 lost 20 dB of SQNR to the unwritten last row and column)."""
    from mnv3compile.tvm.build import compile_onnx

    rng = np.random.default_rng(1)
    group = 16 if second == "depthwise" else 1
    weights = {"w1": rng.standard_normal((16, 3, 3, 3)) * 0.3, "b1": rng.standard_normal(16) * 0.1,
               "w2": rng.standard_normal((16, 16 // group, 3, 3)) * 0.3, "b2": rng.standard_normal(16) * 0.1}
    side = (32 + pads[0] + pads[2] - 3) // 2 + 1, (32 + pads[1] + pads[3] - 3) // 2 + 1
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("HardSwish", ["c1"], ["h"]),
             helper.make_node("Conv", ["h", "w2", "b2"], ["c2"], pads=pads, strides=[2, 2], group=group),
             helper.make_node("Relu", ["c2"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, *side])],
                              [numpy_helper.from_array(a.astype(np.float32), n) for n, a in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    qdq = quantize(model, load_samples("synthetic:4", (1, 3, 64, 64), None)).model
    library = compile_onnx(qdq, preset("host"), tmp_path / "padded.so")
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(library.path)), tvm.cpu())
    x = rng.standard_normal((1, 3, 64, 64)).astype(np.float32)
    (expected,) = run_onnx(qdq, {"x": x})
    # within one output step (the step from the QDQ model's last DequantizeLinear)
    last = next(n for n in reversed(qdq.graph.node) if n.op_type == "DequantizeLinear")
    step = float(numpy_helper.to_array(next(i for i in qdq.graph.initializer if i.name == last.input[1])))
    assert np.abs(vm["main"](tvm.runtime.tensor(x)).numpy() - expected).max() <= step * 1.01


def test_a_group_a_lowering_refuses_leaves_nothing_behind(monkeypatch):
    """Each lowering matches before it emits: a conv whose activation is a sigmoid has no
    fixed-point epilogue (no integer exp), and with dead-code elimination switched off the module
    comes back exactly as it was, without a half-emitted int8 conv."""
    weight = np.array([[[[3]], [[-2]]], [[[1]], [[4]]]], np.int8)
    x = relax.Var("x", relax.TensorType((1, 2, 4, 4), "int8"))

    def before(bb, x):
        w = bb.emit(op.dequantize(_const(weight, "int8"), _const([0.25, 0.125], "float32"),
                                  _const([0, 0], "int8"), axis=0))
        conv = bb.emit(op.sigmoid(bb.emit(op.nn.conv2d(bb.emit(_dequantize(x, 0.5, 0)), w))))
        q = bb.emit(op.quantize(conv, _const(1 / 256, "float32"), _const(-128, "int8"), axis=1))
        return op.dequantize(q, _const(1 / 256, "float32"), _const(-128, "int8"), axis=1)

    monkeypatch.setattr(relax.transform, "DeadCodeElimination", lambda *args: (lambda module: module))
    module = _function([x], before)
    lowered, report = lower_to_integer(module, requantize="fixed-point")
    assert not report.integer_groups and len(report.fallbacks) == 1
    assert "conv2d: a sigmoid epilogue needs the float requantization (no integer exp)" in report.fallbacks[0]
    tvm.ir.assert_structural_equal(lowered, module)
