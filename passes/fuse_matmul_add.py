"""fuse_matmul_add: ``Add(MatMul(x, W), b)`` becomes ``Gemm(x, W, b)`` (Paddle's classifier head), so
the layer is one op with an int32 bias after quantization, like torch's ``Linear`` export.

2-D x: onnxscript's kept rules (``matmul_add_to_gemm_rule`` and its transposed-operand
variants). An x of more axes (a transformer's tokens, PP-OCRv4's SVTR neck: 1 x T x C) with a
static shape, constant 2-D W and a bias over the output columns, which the library leaves alone,
is flattened to rows around the Gemm here: ``Reshape(Gemm(Reshape(x, [-1, K]), W, b), [..., N])``;
reshapes move no data.
"""

from __future__ import annotations

import numpy as np
from onnxscript.rewriter.rules.common import (matmul_add_to_gemm_rule, transpose_a_matmul_add_to_gemm_rule,
                                              transpose_ab_matmul_add_to_gemm_rule,
                                              transpose_b_matmul_add_to_gemm_rule)

from mnv3compile.passes.base import rule_pass
from mnv3compile.passes.graph_edit import constant_array
from mnv3compile.passes.rules import SKIP, Rule


class TokensMatMulAddToGemm(Rule):
    def pattern(self, op, x, w, b):
        return op.Add(op.MatMul(x, w), b)

    def refusal(self, x, w, b):
        shape = x.shape
        if shape is None or len(shape) <= 2 or constant_array(w) is None or constant_array(b) is None:
            return SKIP  # 2-D: the library's rule; activations: a MatMul of two activations
        if not all(isinstance(d, int) for d in shape):
            return "MatMul input of more than 2 axes without a static shape"
        weight, bias = constant_array(w), constant_array(b)
        if weight.ndim != 2 or bias.size not in (1, weight.shape[1]) or any(d != 1 for d in bias.shape[:-1]):
            return "bias does not broadcast over the output columns only"
        if bias.ndim > len(shape):
            return "bias has more axes than the output"
        return None

    def rewrite(self, op, x, w, b):
        weight, bias = constant_array(w), constant_array(b).reshape(-1)
        if bias.size == 1:
            bias = bias.repeat(weight.shape[1])
        rows_shape = self.initializer(op, np.array([-1, weight.shape[0]], np.int64), self.node_name("rows"))
        rows = op.Reshape(x, rows_shape, _name=self.node_name("rows"))
        gemm = op.Gemm(rows, w, self.initializer(op, bias, self.node_name("bias")), _name=self.node_name("gemm"))
        output_shape = np.array([*x.shape[:-1], weight.shape[1]], np.int64)
        return op.Reshape(gemm, self.initializer(op, output_shape, self.node_name("shape")),
                          _name=self.node_name("unflatten"))


RULES = [matmul_add_to_gemm_rule, transpose_a_matmul_add_to_gemm_rule, transpose_b_matmul_add_to_gemm_rule,
         transpose_ab_matmul_add_to_gemm_rule, TokensMatMulAddToGemm.sweep("matmul+add over tokens")]
PASS = rule_pass("fuse_matmul_add", "turn MatMul + bias Add into Gemm", RULES)
