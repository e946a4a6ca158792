"""min_max_to_clip: ``Min(Max(x, lo), hi)`` and ``Max(Min(x, hi), lo)`` with scalar constants
(lo <= hi) become ``Clip(x, lo, hi)``, a lone ``Max(x, lo)`` or ``Min(x, hi)`` a one-sided Clip.

TensorFlow exporters write ReLU6 and the ReLU6 inside h-swish / h-sigmoid this way; as Clip the
later passes (hardsigmoid_to_relu6, canonicalize_hswish, fuse_conv_activation) recognize them.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from mnv3compile.passes.base import rule_pass
from mnv3compile.passes.matcher import Const, Match, RewriteBuilder, Rule, Var, op


def _scalar(m: Match, name: str) -> float | None:
    array = m.const(name)
    return float(array.reshape(())) if array.size == 1 else None


def _check_pair(m: Match) -> str | None:
    low, high = _scalar(m, "lo"), _scalar(m, "hi")
    if low is None or high is None:
        return "a bound is not a scalar"
    if low > high:
        return "the lower bound is above the upper one (not a clip)"
    return None


def _check_one(m: Match) -> str | None:
    return None if _scalar(m, "bound") is not None else "the bound is not a scalar"


def _bound(m: Match, b: RewriteBuilder, name: str, suffix: str) -> ir.Value:
    return b.initializer(m.root.graph, np.array(_scalar(m, name), np.float32), suffix)


def _clip_both(m: Match, b: RewriteBuilder) -> ir.Value:
    return b.op("Clip", [m.values["x"], _bound(m, b, "lo", "min"), _bound(m, b, "hi", "max")], "clip")


def _clip_low(m: Match, b: RewriteBuilder) -> ir.Value:
    return b.op("Clip", [m.values["x"], _bound(m, b, "bound", "min")], "clip")


def _clip_high(m: Match, b: RewriteBuilder) -> ir.Value:
    return b.op("Clip", [m.values["x"], None, _bound(m, b, "bound", "max")], "clip")


x = Var("x")
RULES = [
    Rule("Min(Max(x,lo),hi)", op.Min(op.Max(x, Const("lo")), Const("hi")), _clip_both, _check_pair),
    Rule("Max(Min(x,hi),lo)", op.Max(op.Min(x, Const("hi")), Const("lo")), _clip_both, _check_pair),
    Rule("Max(x,lo)", op.Max(x, Const("bound")), _clip_low, _check_one),
    Rule("Min(x,hi)", op.Min(x, Const("bound")), _clip_high, _check_one),
]
PASS = rule_pass("min_max_to_clip", "Min/Max with scalar constant bounds become Clip", RULES)
