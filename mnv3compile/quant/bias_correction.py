"""Bias correction: the mean error that rounding a layer's weights adds to its output, taken out of
its bias (Nagel et al., "Data-Free Quantization", 2019, here with the calibration data's means).

A conv with int8 weights computes y' = (W + E) x + b, E the rounding error of W. Over the data,
E x has a mean per output channel: systematic, so it shifts every later activation and survives
averaging. With few weights per channel (a 3x3 depthwise conv has 9) it is large. The bias
becomes b - sum E[f, c, i, j] * M[c, i, j], where M[c, i, j] is the mean, over the calibration
samples and every output position, of the input value tap (i, j) of channel c reads -- the
zeros of the padding included, which matter on small feature maps (a 3x12 map's border rows
are half of it). For Gemm/MatMul M is the per-channel mean. What activation rounding adds is not
corrected here (it depends on ranges still being chosen).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ConvGeometry:
    """What decides which input value each tap of a 2-D conv reads."""

    kernel: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right (ONNX's order)
    dilations: tuple[int, int] = (1, 1)


def tap_sums(x: np.ndarray, geometry: ConvGeometry | None) -> tuple[np.ndarray, int]:
    """Sum over samples and output positions of what each tap reads, per input channel
    (C x kh x kw; C for a matrix layer, ``geometry`` None, channels last), and how many were summed."""
    # Sums accumulate in float64 without a float64 copy of the tensor (a 1024x2048 segmenter's
    # early activations are hundreds of MB each).
    if not np.all(np.isfinite(x)):
        x = np.nan_to_num(x)
    if geometry is None:
        flat = x.reshape(-1, x.shape[-1])
        return flat.sum(axis=0, dtype=np.float64), flat.shape[0]
    (kh, kw), (sh, sw), (top, left, bottom, right), (dh, dw) = (geometry.kernel, geometry.strides, geometry.pads,
                                                                geometry.dilations)
    padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    out_h = (padded.shape[2] - dh * (kh - 1) - 1) // sh + 1
    out_w = (padded.shape[3] - dw * (kw - 1) - 1) // sw + 1
    sums = np.empty((x.shape[1], kh, kw))
    for i in range(kh):
        for j in range(kw):
            window = padded[:, :, i * dh: i * dh + sh * (out_h - 1) + 1: sh, j * dw: j * dw + sw * (out_w - 1) + 1: sw]
            sums[:, i, j] = window.sum(axis=(0, 2, 3), dtype=np.float64)
    return sums, x.shape[0] * out_h * out_w


def output_shift(op_type: str, error: np.ndarray, input_mean: np.ndarray, group: int = 1,
                 weight_axis: int = 0) -> np.ndarray:
    """The mean output error per output channel. ``error``: dequantized minus float weight (Conv:
    F x C/group x kh x kw; Gemm/MatMul: output channels along ``weight_axis``); ``input_mean``:
    per input channel, and for a Conv either that (every tap sees it) or per tap (C x kh x kw,
    ``tap_sums`` / count)."""
    error = error.astype(np.float64)
    mean = input_mean.astype(np.float64)
    if op_type == "Conv":
        filters, per_group = error.shape[0], error.shape[1]
        taps = np.broadcast_to(mean.reshape(mean.shape[0], *([1, 1] if mean.ndim == 1 else mean.shape[1:])),
                               (mean.shape[0], *error.shape[2:]))
        group_of_filter = np.arange(filters) // (filters // group)
        means = taps.reshape(group, per_group, *error.shape[2:])[group_of_filter]  # F x C/group x kh x kw
        return np.sum(error * means, axis=tuple(range(1, error.ndim)))
    matrix = error if weight_axis == 0 else error.T  # output channels x input channels
    return matrix @ mean


def corrected_bias(bias: np.ndarray, shift: np.ndarray) -> np.ndarray:
    return (bias.astype(np.float64) - shift).astype(bias.dtype)
