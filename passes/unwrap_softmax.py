"""unwrap_softmax: ``Reshape(Softmax(Flatten(x, axis=r-1)), shape of x)`` becomes
``Softmax(x, axis=-1)``.

Before opset 13 a Softmax flattened its input to 2-D around its axis; onnx's version converter
(pass 1, which Paddle2ONNX's opset-11/12 models go through) keeps that meaning by wrapping each one
in Flatten and Reshape. Over the last axis the wrapping changes nothing, so it is dropped: two
data-movement kernels less per softmax (PP-OCRv4's recognizer: its attention and its CTC head),
and the softmax is again the op that produces the model's output (``--keep-float-output``).
onnxscript has no such rule.
"""

from __future__ import annotations

from mnv3compile.passes.base import rule_pass
from mnv3compile.passes.rules import Rule


class UnwrapSoftmax(Rule):
    def pattern(self, op, x, shape):
        flat = op.Flatten(x, _outputs=["flat"])
        return op.Reshape(op.Softmax(flat, _outputs=["soft"]), shape)

    def refusal(self, x, shape, flat, soft):
        dims = x.shape
        if dims is None or not all(isinstance(d, int) for d in dims):
            return "input shape not static"
        rank = len(dims)
        if flat.producer().attributes.get_int("axis", 1) % rank != rank - 1:
            return "the flatten keeps more than the last axis apart"
        if soft.producer().attributes.get_int("axis", -1) % 2 != 1:
            return "the softmax is not over the flattened last axis"
        result = self.root.outputs[0].shape
        if result is None or list(result) != list(dims):
            return "the reshape does not restore the input's shape"
        return None

    def rewrite(self, op, x, shape, flat, soft):
        return op.Softmax(x, axis=-1, _name=self.node_name("softmax"))


RULES = [UnwrapSoftmax.sweep("reshape(softmax(flatten))")]
PASS = rule_pass("unwrap_softmax", "Flatten -> Softmax -> Reshape over the last axis -> one Softmax", RULES)
