"""Bias correction: the mean error that rounding a layer's weights adds to its output, taken out of
its bias (Nagel et al., "Data-Free Quantization", 2019, here with the calibration data's means).

A conv with int8 weights computes y' = (W + E) x + b, E the rounding error of W. Over the data,
E x has mean E E[x], the same in every output position (but for the border taps that padding
zeroes out): one number per output channel, systematic, so it shifts every later activation and
survives averaging. With few weights per channel (a 3x3 depthwise conv has 9) it is large. The
bias becomes b - E E[x], E[x] the per-channel mean of the layer's float input over the
calibration samples. What activation rounding adds is not corrected here (it depends on ranges
still being chosen).
"""

from __future__ import annotations

import numpy as np


def output_shift(op_type: str, error: np.ndarray, input_mean: np.ndarray, group: int = 1,
                 weight_axis: int = 0) -> np.ndarray:
    """E E[x] per output channel. ``error``: dequantized minus float weight (Conv: F x C/group x
    kh x kw; Gemm/MatMul: output channels along ``weight_axis``); ``input_mean``: per input channel."""
    error = error.astype(np.float64)
    mean = input_mean.astype(np.float64)
    if op_type == "Conv":
        filters, per_group = error.shape[0], error.shape[1]
        summed = error.reshape(filters, per_group, -1).sum(axis=2)  # the taps all see the same mean
        group_of_filter = np.arange(filters) // (filters // group)
        means = mean.reshape(group, per_group)[group_of_filter]
        return np.sum(summed * means, axis=1)
    matrix = error if weight_axis == 0 else error.T  # output channels x input channels
    return matrix @ mean


def corrected_bias(bias: np.ndarray, shift: np.ndarray) -> np.ndarray:
    return (bias.astype(np.float64) - shift).astype(bias.dtype)
