"""unwrap_softmax: ``Reshape(Softmax(Flatten(x, axis=r-1)), shape of x)`` becomes
``Softmax(x, axis=-1)``.

Before opset 13 a Softmax flattened its input to 2-D around its axis; onnx's version converter
(pass 1, which Paddle2ONNX's opset-11/12 models go through) keeps that meaning by wrapping each one
in Flatten and Reshape. Over the last axis the wrapping changes nothing, so it is dropped: two
data-movement kernels less per softmax (PP-OCRv4's recognizer: its attention and its CTC head),
and the softmax is again the op that produces the model's output (``--keep-float-output``).
"""

from __future__ import annotations

from mnv3compile.passes.base import rule_pass
from mnv3compile.passes.matcher import Const, Match, RewriteBuilder, Rule, Var, op


def _check(m: Match) -> str | None:
    shape = m.values["x"].shape
    if shape is None or not all(isinstance(d, int) for d in shape):
        return "input shape not static"
    rank = len(shape)
    if m.nodes["flatten"].attributes.get_int("axis", 1) % rank != rank - 1:
        return "the flatten keeps more than the last axis apart"
    if m.nodes["softmax"].attributes.get_int("axis", -1) % 2 != 1:
        return "the softmax is not over the flattened last axis"
    result = m.root.outputs[0].shape
    if result is None or list(result) != list(shape):
        return "the reshape does not restore the input's shape"
    return None


def _rewrite(m: Match, b: RewriteBuilder):
    return b.op("Softmax", [m.values["x"]], "softmax", axis=-1)


RULES = [Rule("reshape(softmax(flatten))",
              op.Reshape(op.Softmax(op.Flatten(Var("x"), name="flatten"), name="softmax"), Const("shape")),
              _rewrite, _check)]
PASS = rule_pass("unwrap_softmax", "Flatten -> Softmax -> Reshape over the last axis -> one Softmax", RULES)
