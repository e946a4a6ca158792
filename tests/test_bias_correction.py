"""Bias correction: the shift it computes is the mean output error of the rounded weights, and a
quantized layer's output error loses its mean."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mnv3compile.passes import verify
from mnv3compile.quant import QuantizeSettings, quantize
from mnv3compile.quant.bias_correction import ConvGeometry, output_shift, tap_sums
from mnv3compile.quant.calibration import Sample


def _conv(x: np.ndarray, w: np.ndarray, group: int, geometry: ConvGeometry) -> np.ndarray:
    """Grouped 2-D convolution, NCHW x OIHW, in float64, zero padding."""
    top, left, bottom, right = geometry.pads
    x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    f, per_group, kh, kw = w.shape
    (sh, sw), (dh, dw) = geometry.strides, geometry.dilations
    windows = np.lib.stride_tricks.sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    windows = windows[:, :, ::sh, ::sw, ::dh, ::dw]  # n c h' w' kh kw
    out = np.zeros((x.shape[0], f, windows.shape[2], windows.shape[3]))
    for filt in range(f):
        g = filt // (f // group)
        out[:, filt] = np.einsum("nchwij,cij->nhw", windows[:, g * per_group:(g + 1) * per_group], w[filt])
    return out


@pytest.mark.parametrize("channels, filters, group, geometry", [
    (6, 4, 1, ConvGeometry((1, 1))),
    (6, 6, 6, ConvGeometry((3, 3), pads=(1, 1, 1, 1))),
    (6, 6, 6, ConvGeometry((5, 5), strides=(2, 2), pads=(2, 2, 2, 2))),
    (8, 4, 2, ConvGeometry((3, 3), strides=(2, 1), pads=(0, 1, 1, 0), dilations=(1, 2))),
], ids=["pointwise", "depthwise-padded", "depthwise-5x5-stride2", "grouped-asymmetric"])
def test_output_shift_is_the_mean_error_of_the_rounded_weights(channels, filters, group, geometry):
    """Exact on any input: each tap's mean includes the padding zeros it reads (on a 7x7 map,
    a 5x5 conv's border taps read a third of their values from padding)."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((filters, channels // group, *geometry.kernel))
    error = rng.uniform(-0.01, 0.01, w.shape)
    x = rng.standard_normal((3, channels, 7, 7)) + rng.uniform(-4, 4, (1, channels, 1, 1))
    measured = (_conv(x, w + error, group, geometry) - _conv(x, w, group, geometry)).mean(axis=(0, 2, 3))
    sums, count = tap_sums(x, geometry)
    np.testing.assert_allclose(output_shift("Conv", error, sums / count, group), measured, rtol=1e-9, atol=1e-12)
    # The channel mean alone is what every tap would read without padding: not exact here.
    if any(geometry.pads):
        approximate = output_shift("Conv", error, x.mean(axis=(0, 2, 3)), group)
        assert not np.allclose(approximate, measured, rtol=1e-3)


@pytest.mark.parametrize("weight_axis", [0, 1], ids=["transB", "plain"])
def test_output_shift_of_a_matrix_layer(weight_axis):
    rng = np.random.default_rng(1)
    error = rng.uniform(-0.01, 0.01, (5, 7) if weight_axis == 0 else (7, 5))
    x = rng.standard_normal((10, 7)) + 2.0
    product = x @ (error.T if weight_axis == 0 else error)
    sums, count = tap_sums(x, None)
    np.testing.assert_allclose(output_shift("Gemm", error, sums / count, weight_axis=weight_axis),
                               product.mean(axis=0), rtol=1e-9)


def _depthwise_model(rng) -> onnx.ModelProto:
    """One padded depthwise 3x3 conv (9 weights a channel: coarse per-channel rounding) with a bias."""
    channels = 16
    weight = rng.standard_normal((channels, 1, 3, 3)).astype(np.float32)
    weight[:, :, 0, 0] = 8.0  # one large tap sets the scale, so the others round coarsely
    bias = rng.standard_normal(channels).astype(np.float32)
    node = helper.make_node("Conv", ["input", "w", "b"], ["output"], group=channels, pads=[1, 1, 1, 1], name="dw")
    graph = helper.make_graph([node], "dw", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, channels, 12, 12])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, channels, 12, 12])],
                              [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_quantized_output_error_loses_its_mean():
    rng = np.random.default_rng(2)
    model = _depthwise_model(rng)
    offsets = rng.uniform(2, 6, (1, 16, 1, 1)).astype(np.float32)  # inputs far from zero mean
    samples = [Sample((rng.standard_normal((1, 16, 12, 12)) + offsets).astype(np.float32)) for _ in range(8)]

    def mean_error(correct: bool) -> np.ndarray:
        result = quantize(model, samples, QuantizeSettings("minmax", bias_correction=correct))
        assert result.record.corrected_biases == (1 if correct else 0)
        errors = [verify.run(result.model, {"input": s.tensor})["output"] - verify.run(model, {"input": s.tensor})["output"]
                  for s in samples]
        return np.mean(errors, axis=(0, 1, 3, 4))  # per channel

    before, after = np.abs(mean_error(False)), np.abs(mean_error(True))
    assert before.mean() > 4 * after.mean(), (before.mean(), after.mean())
