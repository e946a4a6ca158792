"""fold_pad_into_conv: ``Conv(Pad(x, pads, 0))`` -> ``Conv(x)`` with the pads added to its own.

TF-converted models (EfficientNet-Lite's "same" padding) pad explicitly before the convolution.
Exact when the Pad is constant-mode with value 0, pads only the spatial axes, by non-negative amounts,
and only this Conv reads it.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from mnv3compile.passes.base import rule_pass
from mnv3compile.passes.matcher import Const, Match, RewriteBuilder, Rule, Var, op


def _spatial_pads(m: Match) -> list[int] | None:
    pads = m.const("pads").astype(np.int64).reshape(-1)
    rank = pads.size // 2
    begin, end = pads[:rank], pads[rank:]
    if rank < 3 or np.any(pads < 0) or begin[:2].any() or end[:2].any():
        return None
    return [int(v) for v in begin[2:]] + [int(v) for v in end[2:]]


def _check(m: Match) -> str | None:
    pad = m.nodes["pad"]
    mode = pad.attributes.get_string("mode", "constant")
    if mode != "constant":
        return f"Pad mode {mode}"
    if "value" in m.values and np.any(m.const("value") != 0):
        return "Pad value is not 0"
    if _spatial_pads(m) is None:
        return "Pad touches batch/channel axes or is negative"
    conv = m.nodes["conv"]
    auto_pad = conv.attributes.get_string("auto_pad", "NOTSET")
    if auto_pad not in ("NOTSET", ""):
        return f"Conv auto_pad {auto_pad}"
    return None


def _rewrite(m: Match, b: RewriteBuilder):
    conv = m.nodes["conv"]
    extra = _spatial_pads(m)
    own = list(conv.attributes.get_ints("pads", [0] * len(extra)))
    attributes = {k: v for k, v in conv.attributes.items() if k != "pads"}
    node = ir.Node("", "Conv", [m.values["x"], *conv.inputs[1:]],
                   attributes=[*attributes.values(), ir.AttrInt64s("pads", [a + e for a, e in zip(own, extra)])],
                   name=conv.name)
    b.nodes.append(node)
    return node.outputs[0]


def _rules() -> list[Rule]:
    rules = []
    for pad_inputs in ((Const("pads"),), (Const("pads"), Const("value"))):
        for conv_rest in ((Const("w"),), (Const("w"), Const("b"))):
            pattern = op.Conv(op.Pad(Var("x"), *pad_inputs, name="pad"), *conv_rest, name="conv")
            rules.append(Rule(f"conv(pad{len(pad_inputs)})+{len(conv_rest)}", pattern, _rewrite, _check))
    return rules


RULES = _rules()
PASS = rule_pass("fold_pad_into_conv", "fold a zero Pad before a Conv into the Conv's pads", RULES)
