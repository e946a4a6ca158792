"""Fixed-point arithmetic for the integer kernels, computed at compile time in numpy.

A real multiplier ``M > 0`` becomes an integer ``m`` and a right shift ``s`` with ``M ~ m / 2**s``;
a kernel computes ``round(x * M)`` as ``(x * m + 2**(s-1)) >> s`` in int64: **one rounding, half
towards +infinity** (gemmlowp/TFLite round twice, once in the doubling high multiply and once in the
shift; a single rounding is closer to onnxruntime, which multiplies in float and rounds half to
even, so the two can differ only on exact ties). ``m`` is normalized to ``bits`` bits so that
``x * m`` fits in int64 for the operand ranges the caller states.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_SHIFT = 62


@dataclass(frozen=True)
class FixedPoint:
    """Multipliers ``m`` (per channel or scalar) and one right shift ``s`` for the whole tensor:
    ``x * M ~ (x*m + 2**(s-1)) >> s``. One shift per tensor keeps the per-channel constants to one
    int64 each; the largest multiplier keeps ``bits`` bits and the others at least 24 of them
    while the channels' multipliers lie within a factor 2**(bits-24) of each other (they do: a
    layer's per-channel weight scales differ by far less)."""

    multiplier: np.ndarray  # int64
    shift: int  # >= 1

    @property
    def rounding(self) -> int:
        return 1 << (self.shift - 1)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The exact integer result, as the kernel computes it (a numpy reference for tests)."""
        x = np.asarray(x, np.int64)
        return np.right_shift(x * self.multiplier + self.rounding, self.shift)


def fixed_point(real: np.ndarray | float, bits: int = 31) -> FixedPoint:
    """``real`` (positive, any shape) as integer multipliers below ``2**bits`` and one right shift.

    Raises ValueError for multipliers too large to shift right (>= 2**(bits-1)), which no int8
    kernel has. Multipliers below ~2**-31 lose low bits (their products are 0 or 1 step anyway)."""
    real = np.asarray(real, np.float64)
    if np.any(~np.isfinite(real)) or np.any(real <= 0):
        raise ValueError("fixed-point multipliers must be finite and positive")
    _, exponent = np.frexp(real.max())  # max = mantissa * 2**exponent, mantissa in [0.5, 1)
    shift = min(bits - int(exponent), MAX_SHIFT)
    if shift < 1:
        raise ValueError(f"multiplier {real.max():g} is too large for a right shift")
    multiplier = np.round(real * 2.0**shift).astype(np.int64)
    if multiplier.max() >= 1 << bits:  # the largest rounded up to 2**bits
        shift -= 1
        multiplier = np.round(real * 2.0**shift).astype(np.int64)
    return FixedPoint(multiplier, shift)


def lookup_table(function, scale_in: float, zero_in: int, scale_out: float, zero_out: int) -> np.ndarray:
    """The 256-entry int8 -> int8 table of ``quantize(function(dequantize(q)))``, evaluated in float32
    as onnxruntime evaluates the same QDQ group (so the table equals its result bit for bit)."""
    codes = np.arange(-128, 128, dtype=np.int32)
    real = (np.float32(scale_in) * (codes - zero_in).astype(np.float32)).astype(np.float32)
    value = np.asarray(function(real), np.float32)
    quantized = np.rint(value / np.float32(scale_out)) + zero_out  # rint: half to even, as onnxruntime
    return np.clip(quantized, -128, 127).astype(np.int8)
