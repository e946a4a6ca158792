"""What an elementwise float chain of a quantized group computes, found by evaluating it.

The epilogue of a group (h-swish, h-sigmoid, ReLU6, ...) reaches Relax in whatever spelling the
exporter and the importer chose (``x*clip(x+3,0,6)/6``, ``x*min(max(x/6+0.5,0),1)``, ``relu``...).
Rather than match every spelling, the lowering evaluates the chain in numpy and recognizes the
*function*: an affine map clipped to a range (identity, ReLU, ReLU6, h-sigmoid, HardSigmoid), a
value gated by one (h-swish), or the logistic sigmoid (LR-ASPP's attention branch; only the float
requantization computes it). Anything else is not an epilogue an integer kernel has, and its
group falls back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import relax
from tvm.ir import GenericConst  # TVM 0.27 name of relax.Constant


class NotElementwise(Exception):
    """The chain has an op or operand that is not a scalar elementwise function of its input."""


def _scalar(prim) -> float:
    value = getattr(prim, "value", prim)
    return float(getattr(value, "value", value))


_BINARY = {"relax.add": np.add, "relax.subtract": np.subtract, "relax.multiply": np.multiply,
           "relax.divide": np.divide, "relax.maximum": np.maximum, "relax.minimum": np.minimum,
           "relax.power": np.power}
_UNARY = {"relax.nn.relu": lambda x: np.maximum(x, 0), "relax.sigmoid": lambda x: 1 / (1 + np.exp(-x)),
          "relax.negative": np.negative, "relax.tanh": np.tanh, "relax.exp": np.exp,
          "relax.nn.silu": lambda x: x / (1 + np.exp(-x))}


def evaluate(expr, bindings: dict, leaf, values: np.ndarray) -> np.ndarray:
    """``expr`` with ``leaf`` (a Relax var or expression) replaced by ``values`` (a numpy array).
    Constants must be scalars. Raises NotElementwise for anything else."""

    dtype = values.dtype

    def walk(node):
        if node.same_as(leaf):
            return values
        if isinstance(node, relax.Var) and node in bindings:
            return walk(bindings[node])
        if isinstance(node, GenericConst):
            array = node.value.numpy()
            if array.size != 1:
                raise NotElementwise("a non-scalar constant")
            return np.asarray(array.reshape(()), dtype)
        if not isinstance(node, relax.Call) or not hasattr(node.op, "name"):
            raise NotElementwise(f"{type(node).__name__}")
        name = node.op.name
        if name in _BINARY:
            return np.asarray(_BINARY[name](walk(node.args[0]), walk(node.args[1])), dtype)
        if name in _UNARY:
            return np.asarray(_UNARY[name](walk(node.args[0])), dtype)
        if name == "relax.where":  # the importer guards Clip bounds against NaN this way
            condition, a, b = (walk(arg) for arg in node.args)
            return np.asarray(np.where(condition, a, b), dtype)
        if name == "relax.isnan":
            return np.isnan(walk(node.args[0]))
        if name == "relax.dequantize":  # a quantized scalar operand (Paddle's learnable affine: x * a + b)
            data, scale, zero = (walk(arg) for arg in node.args[:3])
            return np.asarray((data - zero) * scale, dtype)
        if name == "relax.call_tir":  # Clip with tensor bounds imports as TOPI maximum/minimum kernels
            kernel = node.args[0].name_hint.rstrip("0123456789")
            if kernel in ("maximum", "minimum") and len(node.args[1].fields) == 2:
                a, b = (walk(arg) for arg in node.args[1].fields)
                return np.asarray(np.maximum(a, b) if kernel == "maximum" else np.minimum(a, b), dtype)
            raise NotElementwise(f"kernel {node.args[0].name_hint}")
        if name == "relax.clip":
            return np.clip(walk(node.args[0]), _scalar(node.args[1]), _scalar(node.args[2])).astype(dtype)
        raise NotElementwise(name)

    with np.errstate(all="ignore"):
        return walk(expr)


@dataclass(frozen=True)
class AffineClip:
    """f(v) = clip(slope*v + offset, low, high); low/high may be infinite."""

    slope: float
    offset: float
    low: float
    high: float

    def __call__(self, v):
        return np.clip(self.slope * v + self.offset, self.low, self.high)


@dataclass(frozen=True)
class Gated:
    """f(v) = v * gate(v) with gate an AffineClip onto [0, 1] (h-swish: slope 1/6, offset 1/2)."""

    gate: AffineClip

    def __call__(self, v):
        return v * self.gate(v)


@dataclass(frozen=True)
class Sigmoid:
    """f(v) = 1 / (1 + exp(-v))."""

    def __call__(self, v):
        return 1.0 / (1.0 + np.exp(-v))


_GRID = np.concatenate([np.linspace(-64, 64, 8193), [-1e4, -1e3, 1e3, 1e4]])


def _fit_affine_clip(v: np.ndarray, f: np.ndarray) -> AffineClip | None:
    low, high = float(f.min()), float(f.max())
    span = max(high - low, 1e-12)
    inner = (f > low + 1e-6 * span) & (f < high - 1e-6 * span)
    if inner.sum() < 2:
        return None
    slope, offset = np.polyfit(v[inner], f[inner], 1)
    slope, offset = float(f"{slope:.12g}"), round(float(offset), 12) + 0.0  # drop the fit's noise
    if slope <= 0:
        return None
    line = slope * v + offset
    tolerance = 1e-5 * (1 + np.abs(f))
    # A bound is real only where the line leaves it: otherwise the grid merely ended there.
    low = low if abs(line[v.argmin()] - low) > tolerance[v.argmin()] else -np.inf
    high = high if abs(line[v.argmax()] - high) > tolerance[v.argmax()] else np.inf
    candidate = AffineClip(float(slope), float(offset), low, high)
    return candidate if np.all(np.abs(candidate(v) - f) <= tolerance) else None


def recognize(function) -> AffineClip | Gated | Sigmoid | None:
    """The epilogue family of ``function`` (numpy float64 -> float64), or None."""
    v = _GRID
    with np.errstate(all="ignore"):
        f = np.asarray(function(v), np.float64)
    if f.shape != v.shape or not np.all(np.isfinite(f)):
        return None
    found = _fit_affine_clip(v, f)
    if found is not None:
        return found
    nonzero = np.abs(v) > 1e-2
    gate = _fit_affine_clip(v[nonzero], f[nonzero] / v[nonzero])
    if gate is not None and gate.low == 0 and gate.high == 1:
        return Gated(gate)
    with np.errstate(all="ignore"):
        if np.all(np.abs(Sigmoid()(v) - f) <= 1e-6):
            return Sigmoid()
    return None
