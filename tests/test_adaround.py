"""AdaRound (mnv3compile/quant/adaround.py): the second moment it collects predicts a layer's
output error exactly, the rounding it chooses lowers that error, and ``quantize --adaround`` puts
those weights in the model."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import run_onnx
from mnv3compile.quant import QuantizeSettings, quantize
from mnv3compile.quant.adaround import adaround, gram_sums, output_error
from mnv3compile.quant.bias_correction import ConvGeometry
from mnv3compile.quant.calibration import load_samples
from mnv3compile.zoo import build_model, build_spec
from test_bias_correction import _conv


@pytest.mark.parametrize("channels, filters, group, geometry", [
    (6, 4, 1, ConvGeometry((1, 1))),
    (6, 6, 6, ConvGeometry((3, 3), pads=(1, 1, 1, 1))),
    (8, 4, 2, ConvGeometry((3, 3), strides=(2, 1), pads=(0, 1, 1, 0), dilations=(1, 2))),
], ids=["pointwise", "depthwise-padded", "grouped-asymmetric"])
def test_second_moment_gives_the_mean_square_output_error_of_any_weight_change(channels, filters, group, geometry):
    """d^T E[x x^T] d is the mean over samples and positions of (conv with weights d)^2, padding
    zeros included, for each filter."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, channels, 9, 11)) + 0.5
    change = rng.standard_normal((filters, channels // group, *geometry.kernel))
    sums, count = gram_sums(x, geometry, group)
    moment = sums / count
    out = _conv(x, change, group, geometry)
    grouped = change.reshape(group, filters // group, -1)
    predicted = np.einsum("gfk,gkl,gfl->gf", grouped, moment, grouped).ravel()
    np.testing.assert_allclose(predicted, (out ** 2).mean(axis=(0, 2, 3)), rtol=1e-6)  # x read as float32


def test_matrix_layer_moment_is_over_rows():
    x = np.random.default_rng(1).standard_normal((40, 7))
    sums, count = gram_sums(x, None, 1)
    np.testing.assert_allclose(sums[0] / count, x.T @ x / 40, rtol=1e-6, atol=1e-7)  # x read as float32


@pytest.mark.parametrize("groups, outputs, depth", [(1, 32, 64), (24, 1, 9)], ids=["pointwise", "depthwise"])
def test_adaround_lowers_the_output_error_and_rounds_only_up_or_down(groups, outputs, depth):
    rng = np.random.default_rng(2)
    # Correlated inputs with a common component (what makes rounding errors add up or cancel)
    x = rng.standard_normal((groups, depth, 3000)) * rng.uniform(0.2, 2, (groups, depth, 1)) + \
        0.7 * rng.standard_normal((groups, 1, 3000))
    moment = x @ x.transpose(0, 2, 1) / 3000
    weight = rng.standard_normal((groups, outputs, depth)) / np.sqrt(depth)
    scales = np.abs(weight).max(-1) / 127
    q = adaround(weight, scales, moment, 127)
    exact = weight / scales[..., None]
    assert np.all((q == np.floor(exact)) | (q == np.ceil(exact)))
    assert np.abs(q).max() <= 127
    nearest = np.clip(np.round(exact), -127, 127)
    assert output_error(weight, q, scales, moment) < 0.93 * output_error(weight, nearest, scales, moment)


def _layer_weights(model: onnx.ModelProto, layer: str) -> np.ndarray:
    """The dequantized weight a QDQ model's layer reads."""
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    node = next(n for n in model.graph.node if n.name == layer)
    dq = next(n for n in model.graph.node if n.output[0] == node.input[1])
    q, scale = consts[dq.input[0]].astype(np.float64), consts[dq.input[1]].astype(np.float64)
    return q * scale.reshape(-1, *[1] * (q.ndim - 1))


@pytest.mark.slow
def test_quantize_with_adaround_lowers_each_layers_output_error_on_the_calibration_data():
    """Small x0.35 at 96: for a pointwise and a depthwise conv, the mean square of (W~ - W) x over
    the calibration data (x the float layer input, as AdaRound sees it) is lower with --adaround
    than with nearest rounding; every weighted layer is counted."""
    spec = build_spec("small", 0.35, 96)
    model = build_model(spec)
    samples = load_samples("synthetic:4", spec.input_shape, None)
    nearest = quantize(model, samples, QuantizeSettings(bias_correction=False))
    rounded = quantize(model, samples, QuantizeSettings(bias_correction=False, adaround=True))
    convs = [n for n in nearest.float_model.graph.node if n.op_type in ("Conv", "Gemm")]
    assert rounded.record.adarounded == len(convs) and nearest.record.adarounded == 0
    assert rounded.sidecar()["calibration"]["adaround"] is True
    float_weights = {i.name: numpy_helper.to_array(i) for i in nearest.float_model.graph.initializer}
    for layer in ("features.4.block.3.0", "features.4.block.1.0"):  # project 1x1, depthwise 5x5
        node = next(n for n in nearest.float_model.graph.node if n.name == layer)
        probe = onnx.ModelProto()
        probe.CopyFrom(nearest.float_model)
        probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(node.input[0]))
        x = np.concatenate([run_onnx(probe, {"input": s.tensor})[-1] for s in samples]).astype(np.float64)
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        pads = attrs.get("pads", [0, 0, 0, 0])
        geometry = ConvGeometry(tuple(attrs["kernel_shape"]), tuple(attrs.get("strides", (1, 1))),
                                (pads[0], pads[1], pads[2], pads[3]), tuple(attrs.get("dilations", (1, 1))))
        w = float_weights[node.input[1]].astype(np.float64)
        errors = [(_conv(x, _layer_weights(m.model, layer) - w, attrs.get("group", 1), geometry) ** 2).mean()
                  for m in (nearest, rounded)]
        assert errors[1] < 0.97 * errors[0], (layer, errors)
