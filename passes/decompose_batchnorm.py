"""decompose_batchnorm: a BatchNormalization that no Conv precedes becomes ``Add(Mul(x, k), t)``.

k = scale / sqrt(var + eps), t = shift - mean * k, shaped to broadcast over the channel axis.
Runs after fold_batchnorm so that only BNs that could not be folded reach it; later stages then
never see BatchNormalization. onnxscript has no such rule (its BN rules fuse into a producer).
"""

from __future__ import annotations

import numpy as np

from mnv3compile.passes.base import rule_pass
from mnv3compile.passes.graph_edit import constant_array
from mnv3compile.passes.rules import Rule


class DecomposeBatchNorm(Rule):
    def pattern(self, op, x, scale, shift, mean, var):
        return op.BatchNormalization(x, scale, shift, mean, var, _allow_other_attributes=True, _outputs=["y"])

    def refusal(self, x, scale, shift, mean, var, y):
        bn = y.producer()
        if len(bn.outputs) > 1 and any(v.uses() or v.is_graph_output() for v in bn.outputs[1:]):
            return "BatchNormalization in training mode (running statistics are read)"
        if any(constant_array(v) is None for v in (scale, shift, mean, var)):
            return "parameters are not constant"
        if x.shape is None:
            return "input rank unknown"
        return None

    def rewrite(self, op, x, scale, shift, mean, var, y):
        eps = y.producer().attributes.get_float("epsilon", 1e-5)
        scale, shift, mean, var = (constant_array(v).astype(np.float64) for v in (scale, shift, mean, var))
        k = scale / np.sqrt(var + eps)
        t = shift - mean * k
        broadcast = (-1,) + (1,) * (len(x.shape) - 2)
        k_value = self.initializer(op, k.reshape(broadcast).astype(np.float32), self.node_name("scale"))
        t_value = self.initializer(op, t.reshape(broadcast).astype(np.float32), self.node_name("shift"))
        return op.Add(op.Mul(x, k_value, _name=self.node_name("mul")), t_value, _name=self.node_name("add"))


RULES = [DecomposeBatchNorm.sweep("bn")]
PASS = rule_pass("decompose_batchnorm", "turn BatchNormalization not after a Conv into Mul+Add", RULES)
