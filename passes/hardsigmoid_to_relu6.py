"""hardsigmoid_to_relu6: every hard-sigmoid becomes ``Mul(Clip(Add(y, 3), 0, 6), 1/6)``.

Spellings recognised: ``HardSigmoid(x; alpha, beta)``, ``Clip(Mul(x, alpha) + beta, 0, 1)``,
``Clip(x + beta, 0, 1)``, ``Clip(x + 3, 0, 6) / 6`` and ``Clip(x + 3, 0, 6) * c`` with c a rounded
1/6. Since clip(a*x + b, 0, 1) = clip(y + 3, 0, 6) / 6 with y = 6a*x + 6b - 3, the general case needs
y: for the MobileNetV3 constants (a = 1/6, b = 1/2) y = x; otherwise, when x comes from a Conv no one
else reads, 6a and 6b - 3 are folded into its weights and bias (Paddle's SE: a = 0.2); else an
explicit ``Add(Mul(x, 6a), 6b - 3)`` computes y.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from mnv3compile.passes.base import rule_pass
from mnv3compile.passes.conv import conv_weight_and_bias, rebuild_conv
from mnv3compile.passes.matcher import Const, Match, RewriteBuilder, Rule, Var, op

SIXTH = np.float32(1.0 / 6.0)


def relu6_hsigmoid_pattern(x, name: str | None = None):
    """The canonical form, as a pattern (also used by canonicalize_hswish and the fusion)."""
    return op.Mul(op.Clip(op.Add(x, Const("three", 3.0)), Const("zero", 0.0), Const("six", 6.0)),
                  Const("sixth", float(SIXTH)), name=name)


def emit_relu6_hsigmoid(b: RewriteBuilder, graph: ir.Graph, y: ir.Value) -> ir.Value:
    three, zero, six, sixth = (b.initializer(graph, np.array(v, np.float32), n)
                               for v, n in ((3.0, "three"), (0.0, "zero"), (6.0, "six"), (SIXTH, "sixth")))
    clipped = b.op("Clip", [b.op("Add", [y, three], "add3"), zero, six], "relu6")
    return b.op("Mul", [clipped, sixth], "div6")


def _linear_input(m: Match, b: RewriteBuilder, alpha: float, beta: float) -> ir.Value:
    """y = 6*alpha*x + 6*beta - 3, folded into the producing Conv where exact."""
    x, graph = m.values["x"], m.root.graph
    gain, offset = 6.0 * alpha, 6.0 * beta - 3.0
    if abs(gain - 1.0) < 1e-6 and abs(offset) < 1e-6:
        return x
    producer = x.producer()
    if (producer is not None and producer.op_type == "Conv" and len(x.uses()) == 1
            and not x.is_graph_output() and conv_weight_and_bias(producer) is not None):
        weight, bias = (a.astype(np.float64) for a in conv_weight_and_bias(producer))
        return rebuild_conv(b, graph, producer, weight * gain, bias * gain + offset,
                            f"{producer.name or 'conv'}/hsigmoid_scaled")
    scaled = x
    if abs(gain - 1.0) >= 1e-6:
        scaled = b.op("Mul", [x, b.initializer(graph, np.array(gain, np.float32), "gain")], "gain")
    if abs(offset) >= 1e-6:
        scaled = b.op("Add", [scaled, b.initializer(graph, np.array(offset, np.float32), "offset")], "offset")
    return scaled


def _from_hardsigmoid(m: Match, b: RewriteBuilder):
    node = m.nodes["hs"]
    y = _linear_input(m, b, node.attributes.get_float("alpha", 0.2), node.attributes.get_float("beta", 0.5))
    return emit_relu6_hsigmoid(b, m.root.graph, y)


def _from_clip01_affine(m: Match, b: RewriteBuilder):
    alpha = float(m.const("alpha").reshape(-1)[0]) if "alpha" in m.values else 1.0
    y = _linear_input(m, b, alpha, float(m.const("beta").reshape(-1)[0]))
    return emit_relu6_hsigmoid(b, m.root.graph, y)


def _from_relu6_over_six(m: Match, b: RewriteBuilder):
    return emit_relu6_hsigmoid(b, m.root.graph, m.values["x"])


def _not_canonical(m: Match) -> bool:
    return m.const("c").reshape(-1)[0] != SIXTH


x = Var("x")
RELU6_X3 = op.Clip(op.Add(x, Const("three", 3.0)), Const("zero", 0.0), Const("six", 6.0))
RULES = [
    Rule("HardSigmoid", op.HardSigmoid(x, name="hs"), _from_hardsigmoid),
    Rule("Clip(alpha*x+beta,0,1)", op.Clip(op.Add(op.Mul(x, Const("alpha")), Const("beta")), Const("lo", 0.0),
                                           Const("hi", 1.0)), _from_clip01_affine,
         check=lambda m: None if m.const("alpha").size == 1 and m.const("beta").size == 1 else "per-channel slope"),
    Rule("Clip(x+beta,0,1)", op.Clip(op.Add(x, Const("beta")), Const("lo", 0.0), Const("hi", 1.0)),
         _from_clip01_affine, check=lambda m: None if m.const("beta").size == 1 else "per-channel offset"),
    Rule("Clip(x+3,0,6)/6", op.Div(RELU6_X3, Const("c", 6.0)), _from_relu6_over_six),
    Rule("Clip(x+3,0,6)*(1/6)", op.Mul(RELU6_X3, Const("c", float(SIXTH), rtol=1e-5)), _from_relu6_over_six,
         when=_not_canonical),
]
PASS = rule_pass("hardsigmoid_to_relu6", "rewrite every hard-sigmoid as Mul(Clip(Add(x,3),0,6),1/6)", RULES)
