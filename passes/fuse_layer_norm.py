"""fuse_layer_norm: a layer normalization spelled out in elementwise ops becomes one
``LayerNormalization`` (opset 17).

Paddle2ONNX (PP-OCRv4's recognizer: its SVTR neck), older torch exports and tf2onnx write
LayerNorm as ``d = x - ReduceMean(x)``, ``var = ReduceMean(d^2)`` (``Pow(d, 2)`` or ``d * d``),
``y = d / Sqrt(var + eps)`` (or ``d * Reciprocal(...)``), then ``y * gamma + beta``. Nine ops that
the quantizer would have to put in int8 one by one (the squared deviation and the variance
lose most of their precision there); as one op the statistics stay inside one kernel that reads
and writes int8. It runs before ``sink_transposes`` so a layout Transpose never splits one apart.
"""

from __future__ import annotations

import numpy as np

from mnv3compile.passes.base import rule_pass
from mnv3compile.passes.matcher import Const, Match, RewriteBuilder, Rule, Var, op, reduce_axes


def _deviation():
    return op.Sub(Var("x"), op.ReduceMean(Var("x"), name="mean"), name="deviation")


def _normalized(square, scale_by_inverse: bool):
    deviation = _deviation()
    variance = op.ReduceMean(square(deviation), name="variance")
    std = op.Sqrt(op.Add(variance, Const("epsilon")))
    if scale_by_inverse:
        return op.Mul(deviation, op.Reciprocal(std), name="normalized")
    return op.Div(deviation, std, name="normalized")


SQUARES = (lambda d: op.Pow(d, Const("two", 2.0)), lambda d: op.Mul(d, d))


def _axes(node, rank: int) -> list[int] | None:
    axes = reduce_axes(node)
    return None if axes is None else sorted(a % rank for a in axes)


def _normalized_axes(m: Match) -> list[int] | str:
    """The axes both means reduce (a suffix of the input's), or why the match is refused."""
    shape = m.values["x"].shape
    if shape is None:
        return "input rank unknown"
    rank = len(shape)
    means = [m.nodes["mean"], m.nodes["variance"]]
    if any(n.attributes.get_int("keepdims", 1) != 1 for n in means):
        return "a mean without keepdims"
    axes = [_axes(n, rank) for n in means]
    if axes[0] is None or axes[0] != axes[1]:
        return "the two means reduce different or unknown axes"
    if axes[0] != list(range(rank - len(axes[0]), rank)):
        return "the normalized axes are not the last ones"
    return axes[0]


def _affine_shape(m: Match, name: str, axes: list[int]) -> np.ndarray | str:
    """gamma/beta broadcast to the normalized shape, or why it cannot be (it varies over an axis
    that is not normalized, or it broadcasts the output to a larger shape)."""
    shape = m.values["x"].shape
    if not all(isinstance(shape[a], int) for a in axes):
        return "normalized dimensions not static"
    array = m.const(name).astype(np.float32)
    rank = len(shape)
    if array.ndim > rank:
        return f"{name} has more axes than the input"
    aligned = array.reshape((1,) * (rank - array.ndim) + array.shape)
    if any(aligned.shape[a] != 1 for a in range(rank) if a not in axes):
        return f"{name} varies over an axis that is not normalized"
    return np.ascontiguousarray(np.broadcast_to(aligned.reshape(aligned.shape[rank - len(axes):]),
                                                [shape[a] for a in axes]))


def _check(m: Match) -> str | None:
    axes = _normalized_axes(m)
    if isinstance(axes, str):
        return axes
    if m.const("epsilon").size != 1:
        return "epsilon is not a scalar"
    for name in ("gamma", "beta"):
        if name in m.values:
            affine = _affine_shape(m, name, axes)
            if isinstance(affine, str):
                return affine
    return None


def _rewrite(m: Match, b: RewriteBuilder):
    graph = m.root.graph
    axes = _normalized_axes(m)
    normalized_shape = [m.values["x"].shape[a] for a in axes]
    gamma = _affine_shape(m, "gamma", axes) if "gamma" in m.values else np.ones(normalized_shape, np.float32)
    beta = _affine_shape(m, "beta", axes) if "beta" in m.values else np.zeros(normalized_shape, np.float32)
    return b.op("LayerNormalization", [m.values["x"], b.initializer(graph, gamma, "gamma"),
                                       b.initializer(graph, beta, "beta")], "layer_norm",
                axis=axes[0], epsilon=float(m.const("epsilon").reshape(-1)[0]))


def _rules() -> list[Rule]:
    rules = []
    for square_index, square in enumerate(SQUARES):
        for inverse in (False, True):
            normalized = _normalized(square, inverse)
            spelling = f"{'pow' if square_index == 0 else 'mul'}-{'reciprocal' if inverse else 'div'}"
            affine = op.Add(op.Mul(normalized, Const("gamma")), Const("beta"))
            rules.append(Rule(f"layer_norm({spelling})+affine", affine, _rewrite, _check))
            rules.append(Rule(f"layer_norm({spelling})", normalized, _rewrite, _check))
    return rules


RULES = _rules()
PASS = rule_pass("fuse_layer_norm", "layer normalization spelled in elementwise ops -> LayerNormalization", RULES)
