"""fuse_layer_norm: a layer normalization spelled out in elementwise ops becomes one
``LayerNormalization`` (opset 17).

Paddle2ONNX (PP-OCRv4's recognizer: its SVTR neck), older torch exports and tf2onnx write
LayerNorm as ``d = x - ReduceMean(x)``, ``var = ReduceMean(d^2)`` (``Pow(d, 2)`` or ``d * d``),
``y = d / Sqrt(var + eps)`` (or ``d * Reciprocal(...)``), then ``y * gamma + beta``. Nine ops that
the quantizer would have to put in int8 one by one (the squared deviation and the variance
lose most of their precision there); as one op the statistics stay inside one kernel that reads
and writes int8. It runs before ``sink_transposes`` so a layout Transpose never splits one apart. onnxscript's
LayerNorm fusion (``rewriter.rules.fusion``) matches only ``axes=[-1]`` given as an input (opset
18+); Paddle2ONNX's opset 11-17 models give the axes as an attribute, and over several axes.
"""

from __future__ import annotations

import numpy as np

from mnv3compile.passes.base import rule_pass
from mnv3compile.passes.graph_edit import constant_array, reduce_axes, scalar_close
from mnv3compile.passes.rules import Rule


def _axes(node, rank: int) -> list[int] | None:
    axes = reduce_axes(node)
    return None if axes is None else sorted(a % rank for a in axes)


class LayerNormSpelledOut(Rule):
    """One spelling: the square as ``Pow(d, 2)`` or ``d * d``, the scaling as ``d / std`` or
    ``d * Reciprocal(std)``, with or without the affine ``* gamma + beta``."""

    def __init__(self, name: str, square_by_pow: bool, scale_by_inverse: bool, affine: bool):
        super().__init__(name)
        self.square_by_pow, self.scale_by_inverse, self.affine = square_by_pow, scale_by_inverse, affine

    def pattern(self, op, x, two, epsilon, gamma, beta):
        deviation = op.Sub(x, op.ReduceMean(x, _allow_other_inputs=True, _outputs=["mean"]))
        square = op.Pow(deviation, two) if self.square_by_pow else op.Mul(deviation, deviation)
        variance = op.ReduceMean(square, _allow_other_inputs=True, _outputs=["variance"])
        std = op.Sqrt(op.Add(variance, epsilon))
        normalized = op.Mul(deviation, op.Reciprocal(std)) if self.scale_by_inverse else op.Div(deviation, std)
        return op.Add(op.Mul(normalized, gamma), beta) if self.affine else normalized

    def normalized_axes(self, x, mean, variance) -> list[int] | str:
        """The axes both means reduce (a suffix of the input's), or why the match is refused."""
        if x.shape is None:
            return "input rank unknown"
        rank = len(x.shape)
        means = [mean.producer(), variance.producer()]
        if any(n.attributes.get_int("keepdims", 1) != 1 for n in means):
            return "a mean without keepdims"
        axes = [_axes(n, rank) for n in means]
        if axes[0] is None or axes[0] != axes[1]:
            return "the two means reduce different or unknown axes"
        if axes[0] != list(range(rank - len(axes[0]), rank)):
            return "the normalized axes are not the last ones"
        return axes[0]

    @staticmethod
    def affine_shape(x, value, name: str, axes: list[int]) -> np.ndarray | str:
        """gamma/beta broadcast to the normalized shape, or why it cannot be (it varies over an
        axis that is not normalized, or it broadcasts the output to a larger shape)."""
        shape = x.shape
        if not all(isinstance(shape[a], int) for a in axes):
            return "normalized dimensions not static"
        array = constant_array(value)
        if array is None:
            return f"{name} is not constant"
        array = array.astype(np.float32)
        rank = len(shape)
        if array.ndim > rank:
            return f"{name} has more axes than the input"
        aligned = array.reshape((1,) * (rank - array.ndim) + array.shape)
        if any(aligned.shape[a] != 1 for a in range(rank) if a not in axes):
            return f"{name} varies over an axis that is not normalized"
        return np.ascontiguousarray(np.broadcast_to(aligned.reshape(aligned.shape[rank - len(axes):]),
                                                    [shape[a] for a in axes]))

    def refusal(self, x, two, epsilon, gamma, beta, mean, variance):
        if self.square_by_pow and not scalar_close(two, 2.0):
            return "the square's exponent is not 2"
        axes = self.normalized_axes(x, mean, variance)
        if isinstance(axes, str):
            return axes
        if constant_array(epsilon) is None or constant_array(epsilon).size != 1:
            return "epsilon is not a constant scalar"
        if self.affine:
            for name, value in (("gamma", gamma), ("beta", beta)):
                affine = self.affine_shape(x, value, name, axes)
                if isinstance(affine, str):
                    return affine
        return None

    def rewrite(self, op, x, two, epsilon, gamma, beta, mean, variance):
        axes = self.normalized_axes(x, mean, variance)
        normalized_shape = [x.shape[a] for a in axes]
        if self.affine:
            gamma_array, beta_array = (self.affine_shape(x, v, n, axes) for v, n in ((gamma, "gamma"), (beta, "beta")))
        else:
            gamma_array, beta_array = np.ones(normalized_shape, np.float32), np.zeros(normalized_shape, np.float32)
        return op.LayerNormalization(x, self.initializer(op, gamma_array, self.node_name("gamma")),
                                     self.initializer(op, beta_array, self.node_name("beta")),
                                     axis=axes[0], epsilon=float(constant_array(epsilon).reshape(-1)[0]),
                                     _name=self.node_name("layer_norm"))


RULES = [
    LayerNormSpelledOut.sweep(f"layer_norm({'pow' if by_pow else 'mul'}-{'reciprocal' if inverse else 'div'})"
                        f"{'+affine' if affine else ''}", by_pow, inverse, affine)
    for by_pow in (True, False) for inverse in (False, True) for affine in (True, False)
]
PASS = rule_pass("fuse_layer_norm", "layer normalization spelled in elementwise ops -> LayerNormalization", RULES)
