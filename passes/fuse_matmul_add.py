"""fuse_matmul_add: ``Add(MatMul(x, W), b)`` with constant 2-D W and a bias over its columns
becomes ``Gemm(x, W, b)`` (Paddle's classifier head), so the layer is one op with an int32 bias
after quantization, like torch's ``Linear`` export. An x of more axes (a transformer's tokens,
PP-OCRv4's SVTR neck: 1 x T x C) with a static shape is flattened to rows around the Gemm:
``Reshape(Gemm(Reshape(x, [-1, K]), W, b), [..., N])``; reshapes move no data.
"""

from __future__ import annotations

import numpy as np

from mnv3compile.passes.base import rule_pass
from mnv3compile.passes.matcher import Const, Match, RewriteBuilder, Rule, Var, op


def _check(m: Match) -> str | None:
    shape = m.values["x"].shape
    if shape is None or len(shape) < 2:
        return "MatMul input rank unknown or below 2"
    if len(shape) > 2 and not all(isinstance(d, int) for d in shape):
        return "MatMul input of more than 2 axes without a static shape"
    weight, bias = m.const("w"), m.const("b")
    if weight.ndim != 2 or bias.size not in (1, weight.shape[1]) or any(d != 1 for d in bias.shape[:-1]):
        return "bias does not broadcast over the output columns only"
    if bias.ndim > len(shape):
        return "bias has more axes than the output"
    return None


def _rewrite(m: Match, b: RewriteBuilder):
    graph = m.root.graph
    weight = m.const("w")
    bias = m.const("b").reshape(-1)
    if bias.size == 1:
        bias = bias.repeat(weight.shape[1])
    x, shape = m.values["x"], m.values["x"].shape
    rows = x
    if len(shape) > 2:
        rows = b.op("Reshape", [x, b.initializer(graph, np.array([-1, weight.shape[0]], np.int64), "rows")], "rows")
    gemm = b.op("Gemm", [rows, m.values["w"], b.initializer(graph, bias, "bias")], "gemm")
    if len(shape) == 2:
        return gemm
    output_shape = np.array([*shape[:-1], weight.shape[1]], np.int64)
    return b.op("Reshape", [gemm, b.initializer(graph, output_shape, "shape")], "unflatten")


RULES = [Rule("matmul+add", op.Add(op.MatMul(Var("x"), Const("w")), Const("b")), _rewrite, _check)]
PASS = rule_pass("fuse_matmul_add", "turn MatMul + constant bias Add into Gemm", RULES)
