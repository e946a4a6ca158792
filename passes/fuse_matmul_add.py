"""fuse_matmul_add: ``Add(MatMul(x, W), b)`` with constant 2-D W and a bias over its columns
becomes ``Gemm(x, W, b)`` when x is 2-D (Paddle's classifier head), so the classifier is one layer
with an int32 bias after quantization, like torch's ``Linear`` export.
"""

from __future__ import annotations

from mnv3compile.passes.base import rule_pass
from mnv3compile.passes.matcher import Const, Match, RewriteBuilder, Rule, Var, op


def _check(m: Match) -> str | None:
    shape = m.values["x"].shape
    if shape is None or len(shape) != 2:
        return "MatMul input is not known to be 2-D"
    weight, bias = m.const("w"), m.const("b")
    if weight.ndim != 2 or bias.size not in (1, weight.shape[1]) or bias.ndim > 2 or (bias.ndim == 2 and bias.shape[0] != 1):
        return "bias does not broadcast over the output columns only"
    return None


def _rewrite(m: Match, b: RewriteBuilder):
    graph = m.root.graph
    bias = m.const("b").reshape(-1)
    if bias.size == 1:
        bias = bias.repeat(m.const("w").shape[1])
    return b.op("Gemm", [m.values["x"], m.values["w"], b.initializer(graph, bias, "bias")], "gemm")


RULES = [Rule("matmul+add", op.Add(op.MatMul(Var("x"), Const("w")), Const("b")), _rewrite, _check)]
PASS = rule_pass("fuse_matmul_add", "turn MatMul + constant bias Add into Gemm", RULES)
