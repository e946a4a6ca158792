"""Post-training int8 quantization: fully integer graphs, per-channel weights, int32 biases,
accuracy on a trained model, and one clear error for each kind of bad input."""

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from mnv3compile.errors import UserError
from mnv3compile.passes import verify
from mnv3compile.quant import QuantizeSettings, quantize
from mnv3compile.quant.calibration import Sample, load_samples
from mnv3compile.quant.preprocess import preset
from mnv3compile.quant.report import compare
from mnv3compile.zoo import build_model, build_spec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from textlines import write_dataset  # noqa: E402

QDQ = {"QuantizeLinear", "DequantizeLinear"}


def _samples(spec, count, seed=0):
    rng = np.random.default_rng(seed)
    return [Sample(rng.standard_normal(spec.input_shape).astype(np.float32)) for _ in range(count)]


@pytest.fixture(scope="module")
def small_int8():
    spec = build_spec("small", 1.0, 128)
    return spec, quantize(build_model(spec), _samples(spec, 8), QuantizeSettings("minmax"))


def _consumers(model):
    readers = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return readers


def assert_fully_integer(model: onnx.ModelProto, groups: list[dict], float_outputs: tuple[str, ...] = ()) -> None:
    """Every op is inside exactly one integer kernel (group); a group reads only dequantized int8
    tensors (or its own intermediates, or int8/int32 constants behind DequantizeLinear) and its
    output is read only by QuantizeLinear. ``float_outputs``: model outputs whose single op was
    left float on purpose (--keep-float-output): one op reading a dequantized tensor."""
    producer = {o: n for n in model.graph.node for o in n.output}
    readers = _consumers(model)
    member = {}
    for index, group in enumerate(groups):
        for name in group["nodes"]:
            assert name not in member, f"{name} in two groups"
            member[name] = index
    compute = [n for n in model.graph.node if n.op_type not in QDQ]
    kept = [n for n in compute if n.output[0] in float_outputs]
    assert len(kept) == len(float_outputs) and all(producer[n.input[0]].op_type == "DequantizeLinear" for n in kept)
    compute = [n for n in compute if n not in kept]
    assert {n.name for n in compute} == set(member), "an op outside every group: a float island"
    initializers = {i.name for i in model.graph.initializer}
    for node in compute:
        for name in node.input:
            if not name or name in initializers:
                continue  # shape/bound constants of Reshape/Clip/Resize and the h-sigmoid's 3, 0, 6, 1/6
            source = producer.get(name)
            assert source is not None, f"{node.name} reads graph input {name} without dequantization"
            assert source.op_type == "DequantizeLinear" or member.get(source.name) == member[node.name], \
                f"{node.name} ({node.op_type}) reads float {name} from {source.op_type} {source.name}"
    for group in groups:
        last = next(n for n in compute if n.name == group["nodes"][-1])
        users = readers.get(last.output[0], [])
        assert users and all(u.op_type == "QuantizeLinear" for u in users), group


def test_zoo_small_is_fully_integer(small_int8):
    _, result = small_int8
    assert_fully_integer(result.model, result.record.groups)
    kinds = {g["kind"] for g in result.record.groups}
    assert {"conv:hswish", "conv:relu", "conv:none", "conv:hsigmoid", "HardSwish", "Add", "Mul",
            "GlobalAveragePool", "Gemm", "Flatten"} <= kinds


def test_every_weight_is_int8_per_channel_and_every_bias_int32(small_int8):
    _, result = small_int8
    model = result.model
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    depthwise = 0
    for conv in convs:
        weight_dq, bias_dq = producer[conv.input[1]], producer[conv.input[2]]
        weight, scales = inits[weight_dq.input[0]], inits[weight_dq.input[1]]
        assert weight.dtype == np.int8 and scales.shape == (weight.shape[0],)
        assert onnx.helper.get_attribute_value(weight_dq.attribute[0]) == 0  # axis: output channel
        bias, bias_scales = inits[bias_dq.input[0]], inits[bias_dq.input[1]]
        assert bias.dtype == np.int32 and bias_scales.shape == (weight.shape[0],)
        input_scale = inits[producer[conv.input[0]].input[1]]
        np.testing.assert_allclose(bias_scales, input_scale * scales, rtol=1e-6)
        group = next(a.i for a in conv.attribute if a.name == "group")
        if group > 1 and group == weight.shape[0]:
            depthwise += 1
            assert len(np.unique(scales)) > 1  # really per channel
    assert depthwise == 11


def test_quantized_model_runs_and_stays_close(small_int8):
    spec, result = small_int8
    report = compare(result.float_model, result.model, result.record.dequantized, _samples(spec, 4, seed=9))
    assert report.outputs["logits"] > 12.0  # random weights: error accumulates over 15 layers
    assert report.layers[-1][1] > 30.0 and report.layers[0][1] < report.layers[-1][1]


def test_hsigmoid_outputs_use_the_fixed_unit_scale(small_int8):
    _, result = small_int8
    gates = [g["output"] for g in result.record.groups if g["kind"] == "conv:hsigmoid"]
    assert len(gates) == 9
    for name in gates:
        assert result.record.activations[name]["scale"] == 1 / 256 and result.record.activations[name]["zero_point"] == -128


@pytest.mark.slow
@pytest.mark.parametrize("settings", [QuantizeSettings("percentile", 99.9), QuantizeSettings("entropy"),
                                      QuantizeSettings("mse"), QuantizeSettings("minmax", moving_average=0.9),
                                      QuantizeSettings("auto", symmetric_activations=True)],
                         ids=["percentile", "entropy", "mse", "moving-average", "auto-symmetric"])
def test_methods_and_schemes(settings):
    spec = build_spec("small-minimal", 0.5, 96)
    result = quantize(build_model(spec), _samples(spec, 6), settings)
    assert_fully_integer(result.model, result.record.groups)
    report = compare(result.float_model, result.model, result.record.dequantized, _samples(spec, 2, seed=5))
    assert report.outputs["logits"] > 10.0
    if settings.symmetric_activations:
        calibrated = [a for a in result.record.activations.values() if a["rule"] == "calibrated"]
        assert calibrated and all(a["zero_point"] == 0 for a in calibrated)


@pytest.mark.slow
def test_7bit_weights_stay_in_their_range_and_cost_little(cli, tmp_path):
    """--weight-bits 7 (what AVX2's vpmaddubsw multiplies exactly): every Conv/Gemm weight in
    -63..63 with each channel's largest magnitude at 63, recorded in the sidecar; the model stays
    fully integer and its output SQNR within a few dB of 8-bit weights."""
    src, out = tmp_path / "m.onnx", tmp_path / "m.int8.onnx"
    cli("export", "--model", "small", "--width", "0.5", "--resolution", "96", "-o", str(src))
    code, _, err = cli("quantize", str(src), "--calib", "synthetic:4", "--weight-bits", "7", "-o", str(out))
    assert code == 0, err
    model = onnx.load(str(out))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    heads = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    for node in heads:
        weight = inits[producer[node.input[1]].input[0]]
        assert weight.dtype == np.int8 and weight.min() >= -63 and weight.max() <= 63, node.name
        assert np.abs(weight).max() == 63
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["calibration"]["weight_bits"] == 7 and "7-bit values (-63..63)" in sidecar["calibration"]["weights"]
    spec = build_spec("small", 0.5, 96)
    samples = _samples(spec, 4)

    def logits_sqnr(bits: int) -> float:
        result = quantize(onnx.load(str(src)), samples, QuantizeSettings(weight_bits=bits))
        return compare(result.float_model, result.model, result.record.dequantized, samples).outputs["logits"]

    sqnr = {bits: logits_sqnr(bits) for bits in (8, 7)}
    assert sqnr[7] > sqnr[8] - 6.0, sqnr  # one bit less of weights: at most its 6 dB


@pytest.mark.slow
def test_lraspp_is_fully_integer():
    spec = build_spec("lraspp-small", 0.5, 128)
    result = quantize(build_model(spec), _samples(spec, 4))
    assert_fully_integer(result.model, result.record.groups)
    assert {"Resize", "conv:sigmoid"} <= {g["kind"] for g in result.record.groups}


@pytest.fixture(scope="module")
def text_lines(tmp_path_factory):
    root = tmp_path_factory.mktemp("lines")
    return write_dataset(root / "calib", 200, seed=1), write_dataset(root / "eval", 400, seed=2)


@pytest.mark.slow
def test_paddleocr_classifier_keeps_its_accuracy(paddle_cls_path, text_lines):
    from assets import PADDLE_CLS_SHAPE

    from mnv3compile.analysis import with_static_inputs

    calib_dir, eval_dir = text_lines
    model, _ = with_static_inputs(onnx.load(str(paddle_cls_path)), {"x": PADDLE_CLS_SHAPE})
    assert model.opset_import[0].version == 11  # the quantizer upgrades it itself
    spec = preset("paddle")
    result = quantize(model, load_samples(calib_dir, PADDLE_CLS_SHAPE, spec))
    assert_fully_integer(result.model, result.record.groups)
    report = compare(result.float_model, result.model, result.record.dequantized,
                     load_samples(eval_dir, PADDLE_CLS_SHAPE, spec))
    assert report.float_accuracy >= 0.97  # the trained model reads our rendered lines
    assert report.int8_accuracy >= report.float_accuracy - 0.005
    assert report.top1_agreement >= 0.99
    assert report.outputs["save_infer_model/scale_0.tmp_1"] > 25.0


@pytest.mark.slow
def test_cli_quantize_writes_model_sidecar_and_plot(cli, tmp_path):
    src, out, plot = tmp_path / "m.onnx", tmp_path / "m.int8.onnx", tmp_path / "sqnr.png"
    cli("export", "--model", "small", "--width", "0.5", "--resolution", "96", "-o", str(src))
    code, stdout, err = cli("quantize", str(src), "--calib", "synthetic:4", "-o", str(out), "--plot", str(plot))
    assert code == 0, err
    assert "output logits: SQNR" in stdout and "top-1 agreement with float" in stdout
    assert "note: calibrated on synthetic inputs" in stdout
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["calibration"]["method"] == "auto" and sidecar["calibration"]["samples"] == 4
    chosen = Counter(a["method"] for a in sidecar["activations"].values() if "method" in a)
    assert f"method auto: {chosen.most_common(1)[0][0]} for {chosen.most_common(1)[0][1]} tensors" in stdout
    weighted = [n for n in onnx.load(str(src)).graph.node if n.op_type in ("Conv", "Gemm")]
    assert f"bias correction: {len(weighted)} layers)" in stdout  # every conv and the classifier have a bias
    assert sidecar["activations"]["input"]["dtype"] == "int8"
    assert sidecar["accuracy"]["outputs_sqnr_db"]["logits"] > 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (out_float,) = verify.run(onnx.load(str(out)), {"input": np.zeros((1, 3, 96, 96), np.float32)}).values()
    assert out_float.shape == (1, 1000)


def _cmyk_image(path):
    from PIL import Image

    Image.new("CMYK", (64, 64), (0, 0, 0, 0)).save(path)


def test_cli_quantize_bad_inputs(cli, tmp_path):
    src, out = tmp_path / "m.onnx", tmp_path / "m.int8.onnx"
    cli("export", "--model", "small-minimal", "--width", "0.5", "--resolution", "96", "-o", str(src))
    empty = tmp_path / "empty"
    empty.mkdir()
    cmyk = tmp_path / "cmyk"
    cmyk.mkdir()
    _cmyk_image(cmyk / "a.jpg")
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 3, 64, 64), np.float32))
    cases = [
        (["--calib", str(tmp_path / "nowhere")], f"error: calibration data {tmp_path / 'nowhere'}: no such folder"),
        (["--calib", str(empty), "--preprocess", "torchvision"],
         f"error: calibration data {empty}: no images (.jpg, .jpeg, .png, .bmp, .webp) found"),
        (["--calib", str(cmyk), "--preprocess", "torchvision"], f"error: {cmyk / 'a.jpg'}: unsupported image mode CMYK (4 channels)"),
        (["--calib", str(wrong)], "error: the calibration data's samples have shape (1, 3, 64, 64), the model input "
                                  "'input' is (1, 3, 96, 96)"),
        (["--calib", str(cmyk)], "error: calibrating on images needs --preprocess (torchvision, tf, paddle, efficientnet-lite)"),
    ]
    for args, message in cases:
        code, _, err = cli("quantize", str(src), *args, "-o", str(out))
        assert (code, err.strip()) == (2, message)
        assert not out.exists() and not out.with_suffix(".json").exists()


def test_unknown_op_is_named(cli, tmp_path):
    from onnx import TensorProto, helper

    path = tmp_path / "odd.onnx"
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
                               helper.make_node("Softsign", ["c"], ["y"], name="odd_activation")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    code, _, err = cli("quantize", str(path), "--calib", "synthetic:2", "-o", str(tmp_path / "o.onnx"))
    assert code == 2
    assert err.startswith("error: the quantizer does not know op 'Softsign' (node 'odd_activation'); it handles ")
    assert not (tmp_path / "o.onnx").exists()


@pytest.mark.slow
def test_any_opset_from_11_to_21():
    from onnx import version_converter

    spec = build_spec("small-minimal", 0.5, 96)
    model = version_converter.convert_version(build_model(spec), 21)
    result = quantize(model, _samples(spec, 2))
    assert_fully_integer(result.model, result.record.groups)
    assert result.model.opset_import[0].version == 21


def test_preprocess_presets():
    assert preset("efficientnet-lite").mean == (127.0, 127.0, 127.0)
    with pytest.raises(UserError, match="unknown preprocessing 'caffe'"):
        preset("caffe")


@pytest.mark.slow
def test_calibration_tensors_fix_a_models_dynamic_input(cli, tmp_path):
    """A model whose input is (N, 3, H, W) with every size dynamic, calibrated on a .npy of
    (4, 3, 64, 96): the data says the shape (and the note says so); build does the same; arrays of
    two shapes in one .npz are one line naming both."""
    src, out = tmp_path / "dynamic.onnx", tmp_path / "dynamic.int8.onnx"
    cli("export", "--model", "small-minimal", "--width", "0.35", "--resolution", "96", "-o", str(src))
    model = onnx.load(str(src))
    for axis, name in ((0, "batch"), (2, "height"), (3, "width")):
        model.graph.input[0].type.tensor_type.shape.dim[axis].dim_param = name
    del model.graph.value_info[:]
    onnx.save(model, str(src))
    lines = tmp_path / "lines.npy"
    np.save(lines, np.random.default_rng(0).standard_normal((4, 3, 64, 96)).astype(np.float32))
    code, stdout, err = cli("quantize", str(src), "--calib", str(lines), "-o", str(out))
    assert code == 0, err
    assert "note: input 'input' is (1, 3, 64, 96), the shape of the calibration data's samples" in stdout
    assert [d.dim_value for d in onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim] == [1, 3, 64, 96]
    code, stdout, err = cli("build", "--onnx", str(src), "--quant", "int8", "--calib", str(lines), "-o",
                            str(tmp_path / "b"), "--method", "minmax", "--no-bias-correction")
    assert code == 0, err
    assert json.loads(next((tmp_path / "b").glob("dynamic.json")).read_text())["inputs"][0]["shape"] == [1, 3, 64, 96]
    calibration = json.loads(next((tmp_path / "b").glob("*.quant.json")).read_text())["calibration"]
    assert (calibration["method"], calibration["bias_correction"]) == ("minmax", False)  # build passes them on
    mixed = tmp_path / "mixed.npz"
    np.savez(mixed, a=np.zeros((2, 3, 64, 96), np.float32), b=np.zeros((2, 3, 48, 96), np.float32))
    code, _, err = cli("quantize", str(src), "--calib", str(mixed), "-o", str(tmp_path / "m.onnx"))
    assert (code, err.strip()) == (2, f"error: calibration data {mixed}: arrays of different sample shapes, 'b' "
                                      "(1, 3, 48, 96) and 'a' (1, 3, 64, 96)")


def _squeeze_excite_model(channels_last: bool) -> onnx.ModelProto:
    """conv + ReLU, then squeeze-excite (pool, reduce conv + ReLU, expand conv, hard-sigmoid gate,
    scale): as torch writes it (NCHW, GlobalAveragePool), or as tf2onnx writes Keras' (channels-last
    input, Transposes around each Conv, ReduceMean over axes 1, 2)."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    shapes = {"w1": (8, 4, 3, 3), "b1": (8,), "w2": (2, 8, 1, 1), "b2": (2,), "w3": (8, 2, 1, 1), "b3": (8,)}
    inits = [numpy_helper.from_array((rng.standard_normal(s) * 0.5).astype(np.float32), n) for n, s in shapes.items()]
    make = helper.make_node
    head = [make("Conv", ["x_nchw", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv"),
            make("Relu", ["c1"], ["r1"], name="relu")]
    excite = [make("Conv", ["pooled_nchw", "w2", "b2"], ["s1"], name="se/reduce"), make("Relu", ["s1"], ["s1r"], name="se/relu"),
              make("Conv", ["s1r", "w3", "b3"], ["s2"], name="se/expand"),
              make("HardSigmoid", ["s2"], ["gate"], alpha=1 / 6, beta=0.5, name="se/gate")]
    if channels_last:
        nodes = [make("Transpose", ["input"], ["x_nchw"], perm=[0, 3, 1, 2], name="to_nchw"), *head,
                 make("Transpose", ["r1"], ["r1_nhwc"], perm=[0, 2, 3, 1], name="to_nhwc"),
                 make("ReduceMean", ["r1_nhwc"], ["pooled"], axes=[1, 2], keepdims=1, name="se/Mean"),
                 make("Transpose", ["pooled"], ["pooled_nchw"], perm=[0, 3, 1, 2], name="se/to_nchw"), *excite,
                 make("Transpose", ["gate"], ["gate_nhwc"], perm=[0, 2, 3, 1], name="se/gate_nhwc"),
                 make("Mul", ["r1_nhwc", "gate_nhwc"], ["output"], name="se/scale")]
        shape, out_shape = [1, 8, 8, 4], [1, 8, 8, 8]
    else:
        nodes = [make("Identity", ["input"], ["x_nchw"], name="input_identity"), *head,
                 make("GlobalAveragePool", ["r1"], ["pooled_nchw"], name="se/pool"), *excite,
                 make("Mul", ["r1", "gate"], ["output"], name="se/scale")]
        shape, out_shape = [1, 4, 8, 8], [1, 8, 8, 8]
    graph = helper.make_graph(nodes, "se", [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, out_shape)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_tf2onnx_style_squeeze_excite_quantizes_fully_integer():
    """tf2onnx's channels-last squeeze-excite (ReduceMean over axes 1, 2, which the quantizer
    refused by name before reduce_mean_to_global_pool) quantizes fully integer, and as well as the
    same network written NCHW: the Transposes cost no accuracy."""
    rng = np.random.default_rng(1)
    nchw = [rng.standard_normal((1, 4, 8, 8)).astype(np.float32) for _ in range(4)]
    sqnr = {}
    for channels_last in (True, False):
        model = _squeeze_excite_model(channels_last)
        samples = [Sample(x.transpose(0, 2, 3, 1).copy() if channels_last else x) for x in nchw]
        result = quantize(model, samples, QuantizeSettings("minmax"))
        assert "ReduceMean" not in {n.op_type for n in result.model.graph.node}
        assert_fully_integer(result.model, result.record.groups)
        sqnr[channels_last] = compare(result.float_model, result.model, result.record.dequantized,
                                      samples).outputs["output"]
    assert abs(sqnr[True] - sqnr[False]) < 0.5, sqnr


@pytest.mark.slow
def test_paddleocr_recognizer_quantizes_fully_integer_and_can_keep_its_softmax_float(paddle_rec_path):
    """PP-OCRv4's recognizer (PP-LCNetV3 backbone, SVTR neck: LayerNorm spelled in 9 ops,
    attention; CTC head with a softmax over 6625 characters): refused by name before ('op
    ReduceMean'). Fully integer; with --keep-float-output its last softmax runs in float on the
    int8 logits: the best class per step is the same, but the others keep a probability (an int8
    softmax rounds everything below 1/512 to 0, which a beam search or a confidence cannot use)."""
    from mnv3compile.analysis import with_static_inputs

    from ocr_recognizer import ctc_decode, rendered_lines

    width = 160
    model, _ = with_static_inputs(onnx.load(str(paddle_rec_path)), {"x": [1, 3, 48, width]})
    lines, _ = rendered_lines(24, width, np.random.default_rng(0))
    samples = [Sample(x[None]) for x in lines]
    integer = quantize(model, samples[:16])
    assert_fully_integer(integer.model, integer.record.groups)
    kinds = {g["kind"] for g in integer.record.groups}
    assert {"LayerNormalization", "MatMul", "Softmax", "AveragePool", "Gemm"} <= kinds, kinds
    assert not kinds & {"ReduceMean", "Pow", "Sqrt", "Div"}
    float_softmax = quantize(model, samples[:16], QuantizeSettings(keep_float_output=True))
    (output,) = [o.name for o in model.graph.output]
    assert float_softmax.record.float_outputs == [output]
    assert_fully_integer(float_softmax.model, float_softmax.record.groups, (output,))
    same, no_alternative = {"integer": [], "float softmax": []}, {"integer": [], "float softmax": []}
    for sample in samples[16:]:
        (fp32,) = verify.run(model, {"x": sample.tensor}).values()
        for name, result in (("integer", integer), ("float softmax", float_softmax)):
            (int8,) = verify.run(result.model, {"x": sample.tensor}).values()
            same[name].append(np.mean(int8.argmax(-1) == fp32.argmax(-1)))
            no_alternative[name].append(np.mean(np.sort(int8, -1)[..., -2] == 0))
    # measured: 95.6% of the CTC steps (8 lines of 20) pick fp32's class either way; the second
    # best class has probability 0 in 64% of the steps in int8, in none with the float softmax
    assert min(np.mean(v) for v in same.values()) >= 0.9, same
    assert np.mean(no_alternative["integer"]) > 0.3 and np.mean(no_alternative["float softmax"]) == 0
    assert ctc_decode(np.eye(3)[[1, 1, 0, 2, 2, 0]], ["-", "a", "b"]) == "ab"


def test_keep_float_output_needs_a_softmax_or_sigmoid_output(cli, tmp_path):
    src = tmp_path / "m.onnx"
    cli("export", "--model", "small-minimal", "--width", "0.5", "--resolution", "96", "-o", str(src))
    code, _, err = cli("quantize", str(src), "--calib", "synthetic:2", "--keep-float-output", "-o", str(tmp_path / "o.onnx"))
    assert (code, err.strip()) == (2, "error: --keep-float-output: no model output is produced by a Softmax or "
                                      "Sigmoid; nothing would stay float")
    assert not (tmp_path / "o.onnx").exists()


@pytest.mark.slow
def test_paddleocr_detector_quantizes_fully_integer(paddle_det_path):
    """PP-OCRv4's text detector (MobileNetV3-family backbone with learnable affine blocks, DB head
    with ConvTranspose + BN, nearest Resize, Concat, Sigmoid): refused by name before ('op
    ConvTranspose'); every op is now in an integer kernel."""
    from mnv3compile.analysis import with_static_inputs

    from textlines import detector_input, render_page

    shape = [1, 3, 96, 96]
    model, _ = with_static_inputs(onnx.load(str(paddle_det_path)), {"x": shape})
    rng = np.random.default_rng(0)
    pages = [Sample(detector_input(render_page(rng, 96, 96, lines=3))) for _ in range(12)]
    result = quantize(model, pages[:8])
    assert_fully_integer(result.model, result.record.groups)
    kinds = {g["kind"] for g in result.record.groups}
    # Its two 2x2 stride-2 ConvTransposes (BN folded in) are 1x1 Convs + DepthToSpace after optimize.
    assert {"DepthToSpace", "Resize", "Concat", "Sigmoid"} <= kinds and not kinds & {"BatchNormalization", "ConvTranspose"}
    # The text mask (probability > 0.3, rapidocr's threshold) of int8 and fp32 on unseen pages:
    # measured 1.6% of the pixels differ (text covers 6.5%), mean |difference| 0.017.
    differ, mad = [], []
    for page in pages[8:]:
        (fp32,) = verify.run(model, {"x": page.tensor}).values()
        (int8,) = verify.run(result.model, {"x": page.tensor}).values()
        differ.append(np.mean((fp32 > 0.3) != (int8 > 0.3)))
        mad.append(np.abs(fp32 - int8).mean())
    assert np.mean(differ) < 0.03 and np.mean(mad) < 0.03, (np.mean(differ), np.mean(mad))
