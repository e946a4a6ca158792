"""min_max_to_clip: ``Min(Max(x, lo), hi)`` and ``Max(Min(x, hi), lo)`` with scalar constants
(lo <= hi) become ``Clip(x, lo, hi)``, a lone ``Max(x, lo)`` or ``Min(x, hi)`` a one-sided Clip.

TensorFlow exporters write ReLU6 and the ReLU6 inside h-swish / h-sigmoid this way; as Clip the
later passes (hardsigmoid_to_relu6, canonicalize_hswish, fuse_conv_activation) recognize them.
onnxscript's ``min_max_rule`` / ``max_min_rule`` want the tensor as the first operand (tf2onnx
also writes ``Min(6, x)``) and have no one-sided rule; run before ours they would leave such a
pair to become two Clips, so these are ours. The pair rules run first (each rule is its own
sweep), so a pair becomes one Clip.
"""

from __future__ import annotations

import numpy as np

from mnv3compile.passes.base import rule_pass
from mnv3compile.passes.graph_edit import constant_array
from mnv3compile.passes.rules import SKIP, Rule


def _scalar(value) -> float | None:
    array = constant_array(value)
    return float(array.reshape(())) if array is not None and array.size == 1 else None


class MinMaxClip(Rule):
    """``Min(Max(x, lo), hi)`` (``max_inside``) or ``Max(Min(x, hi), lo)``."""

    def __init__(self, name: str, max_inside: bool):
        super().__init__(name)
        self.max_inside = max_inside

    def pattern(self, op, x, lo, hi):
        return op.Min(op.Max(x, lo), hi) if self.max_inside else op.Max(op.Min(x, hi), lo)

    def refusal(self, x, lo, hi):
        if constant_array(lo) is None or constant_array(hi) is None:
            return SKIP
        low, high = _scalar(lo), _scalar(hi)
        if low is None or high is None:
            return "a bound is not a scalar"
        return "the lower bound is above the upper one (not a clip)" if low > high else None

    def rewrite(self, op, x, lo, hi):
        low, high = (self.initializer(op, np.array(_scalar(v), np.float32), self.node_name(n))
                     for v, n in ((lo, "min"), (hi, "max")))
        return op.Clip(x, low, high, _name=self.node_name("clip"))


class OneSidedClip(Rule):
    def __init__(self, name: str, op_type: str):
        super().__init__(name)
        self.op_type = op_type

    def pattern(self, op, x, bound):
        return getattr(op, self.op_type)(x, bound)

    def refusal(self, x, bound):
        if constant_array(bound) is None:
            return SKIP  # a Min/Max of two activations
        return None if _scalar(bound) is not None else "the bound is not a scalar"

    def rewrite(self, op, x, bound):
        value = self.initializer(op, np.array(_scalar(bound), np.float32),
                                 self.node_name("min" if self.op_type == "Max" else "max"))
        bounds = [value] if self.op_type == "Max" else [None, value]
        return op.Clip(x, *bounds, _name=self.node_name("clip"))


RULES = [MinMaxClip.sweep("Min(Max(x,lo),hi)", max_inside=True), MinMaxClip.sweep("Max(Min(x,hi),lo)", max_inside=False),
         OneSidedClip.sweep("Max(x,lo)", "Max"), OneSidedClip.sweep("Min(x,hi)", "Min")]
PASS = rule_pass("min_max_to_clip", "Min/Max with scalar constant bounds become Clip", RULES)
