"""Scales and zero points. Signed int8 everywhere (sdot needs signed operands)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QMIN, QMAX = -128, 127
WEIGHT_QMAX = 127  # weights use -127..127 so that the symmetric range is exact

# h-sigmoid, sigmoid and softmax outputs lie in [0, 1]: a fixed scale of 1/256 with zero point -128
# covers [0, 255/256] and turns the later multiply into a shift (TFLite's choice for logistic).
UNIT_INTERVAL_SCALE, UNIT_INTERVAL_ZERO_POINT = 1.0 / 256.0, -128


@dataclass(frozen=True)
class QParams:
    scale: float
    zero_point: int

    def to_json(self) -> dict:
        return {"scale": self.scale, "zero_point": self.zero_point, "dtype": "int8"}


def activation_qparams(low: float, high: float, symmetric: bool = False) -> QParams:
    """Per-tensor int8 parameters covering [low, high] (widened to include 0, exactly representable)."""
    low, high = min(low, 0.0), max(high, 0.0)
    if symmetric:
        bound = max(abs(low), abs(high), 1e-8)
        return QParams(bound / QMAX, 0)
    scale = max(high - low, 1e-8) / (QMAX - QMIN)
    zero_point = int(np.clip(round(QMIN - low / scale), QMIN, QMAX))
    return QParams(float(scale), zero_point)


UNIT_INTERVAL = QParams(UNIT_INTERVAL_SCALE, UNIT_INTERVAL_ZERO_POINT)


def weight_qmax(bits: int) -> int:
    """The largest weight magnitude for ``bits``: 127, or 63 for 7 (-63..63, which AVX2's
    vpmaddubsw multiplies exactly; onnxruntime's reduce_range)."""
    return 2 ** (bits - 1) - 1


def weight_scales(weight: np.ndarray, axis: int, qmax: int = WEIGHT_QMAX) -> np.ndarray:
    """Symmetric per-channel scales along ``axis`` (zero point 0), mapping each channel's largest
    magnitude to ``qmax``."""
    reduce_axes = tuple(i for i in range(weight.ndim) if i != axis)
    absmax = np.abs(weight).max(axis=reduce_axes) if reduce_axes else np.abs(weight)
    return (np.maximum(absmax, 1e-8) / qmax).astype(np.float32)


def quantize_weight(weight: np.ndarray, scales: np.ndarray, axis: int, qmax: int = WEIGHT_QMAX) -> np.ndarray:
    shape = [1] * weight.ndim
    shape[axis] = -1
    return np.clip(np.round(weight / scales.reshape(shape)), -qmax, qmax).astype(np.int8)


def quantize_bias(bias: np.ndarray, input_scale: float, weight_scales_: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int32 bias with scale s_in * s_w (per channel), so it adds straight into the int32 accumulator."""
    scales = (np.float64(input_scale) * weight_scales_.astype(np.float64)).astype(np.float32)
    limit = np.iinfo(np.int32)
    q = np.clip(np.round(bias.astype(np.float64) / scales), limit.min, limit.max).astype(np.int32)
    return q, scales
