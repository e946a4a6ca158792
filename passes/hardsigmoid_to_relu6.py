"""hardsigmoid_to_relu6: every hard-sigmoid becomes ``Mul(Clip(Add(y, 3), 0, 6), 1/6)``.

Spellings recognised: ``HardSigmoid(x; alpha, beta)``, ``Clip(Mul(x, alpha) + beta, 0, 1)``,
``Clip(x + beta, 0, 1)``, ``Clip(x + 3, 0, 6) / 6`` and ``Clip(x + 3, 0, 6) * c`` with c a rounded
1/6. Since clip(a*x + b, 0, 1) = clip(y + 3, 0, 6) / 6 with y = 6a*x + 6b - 3, the general case needs
y: for the MobileNetV3 constants (a = 1/6, b = 1/2) y = x; otherwise, when x comes from a Conv no one
else reads, 6a and 6b - 3 are folded into its weights and bias (Paddle's SE: a = 0.2); else an
explicit ``Add(Mul(x, 6a), 6b - 3)`` computes y. onnxscript has the opposite rule (ReLU6 / 6 ->
HardSigmoid); ours exists because the quantizer keeps h-sigmoid integer in this ReLU6 form.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from mnv3compile.passes.base import rule_pass
from mnv3compile.passes.canonical import SIXTH, is_relu6_of_x_plus_3, relu6_of_x_plus_3
from mnv3compile.passes.conv import conv_weight_and_bias, rebuild_conv
from mnv3compile.passes.graph_edit import constant_array, scalar_close
from mnv3compile.passes.rules import SKIP, Rule


class ToRelu6HSigmoid(Rule):
    """Base: ``emit`` writes the canonical form of y; ``linear_input`` makes y = 6a*x + 6b - 3."""

    def emit(self, op, y: ir.Value) -> ir.Value:
        three, zero, six, sixth = (self.initializer(op, np.array(v, np.float32), self.node_name(n))
                                   for v, n in ((3.0, "three"), (0.0, "zero"), (6.0, "six"), (SIXTH, "sixth")))
        clipped = op.Clip(op.Add(y, three, _name=self.node_name("add3")), zero, six, _name=self.node_name("relu6"))
        return op.Mul(clipped, sixth, _name=self.node_name("div6"))

    def linear_input(self, op, x: ir.Value, alpha: float, beta: float) -> ir.Value:
        gain, offset = 6.0 * alpha, 6.0 * beta - 3.0
        if abs(gain - 1.0) < 1e-6 and abs(offset) < 1e-6:
            return x
        producer = x.producer()
        if (producer is not None and producer.op_type == "Conv" and len(x.uses()) == 1
                and not x.is_graph_output() and conv_weight_and_bias(producer) is not None):
            weight, bias = (a.astype(np.float64) for a in conv_weight_and_bias(producer))
            return rebuild_conv(self, op, producer, weight * gain, bias * gain + offset,
                                f"{producer.name or 'conv'}/hsigmoid_scaled")
        scaled = x
        if abs(gain - 1.0) >= 1e-6:
            scaled = op.Mul(x, self.initializer(op, np.array(gain, np.float32), self.node_name("gain")),
                            _name=self.node_name("gain"))
        if abs(offset) >= 1e-6:
            scaled = op.Add(scaled, self.initializer(op, np.array(offset, np.float32), self.node_name("offset")),
                            _name=self.node_name("offset"))
        return scaled


class FromHardSigmoid(ToRelu6HSigmoid):
    def pattern(self, op, x):
        return op.HardSigmoid(x, _outputs=["y"])

    def rewrite(self, op, x, y):
        node = y.producer()
        return self.emit(op, self.linear_input(op, x, node.attributes.get_float("alpha", 0.2),
                                               node.attributes.get_float("beta", 0.5)))


class FromClip01(ToRelu6HSigmoid):
    """``Clip(x * alpha + beta, 0, 1)`` (spelling "slope") or ``Clip(x + beta, 0, 1)``."""

    @property
    def with_slope(self) -> bool:
        return self.spelling == "slope"

    def pattern(self, op, x, alpha, beta, lo, hi):
        if self.with_slope:
            return op.Clip(op.Add(op.Mul(x, alpha), beta), lo, hi)
        return op.Clip(op.Add(x, beta), lo, hi)

    def refusal(self, x, beta, lo, hi, alpha=None):
        if not (scalar_close(lo, 0.0) and scalar_close(hi, 1.0)) or constant_array(beta) is None:
            return SKIP
        if self.with_slope and constant_array(alpha) is None:
            return SKIP
        if constant_array(beta).size != 1 or (self.with_slope and constant_array(alpha).size != 1):
            return "per-channel slope or offset"
        return None

    def rewrite(self, op, x, beta, lo, hi, alpha=None):
        slope = float(constant_array(alpha).reshape(-1)[0]) if self.with_slope else 1.0
        return self.emit(op, self.linear_input(op, x, slope, float(constant_array(beta).reshape(-1)[0])))


class FromRelu6OverSix(ToRelu6HSigmoid):
    """``Clip(x + 3, 0, 6) / 6`` (spelling "divide") or ``Clip(x + 3, 0, 6) * c``, c a rounded 1/6."""

    @property
    def divide(self) -> bool:
        return self.spelling == "divide"

    def pattern(self, op, x, three, zero, six, c):
        relu6 = relu6_of_x_plus_3(op, x, three, zero, six)
        return op.Div(relu6, c) if self.divide else op.Mul(relu6, c)

    def refusal(self, x, three, zero, six, c):
        if not is_relu6_of_x_plus_3(three, zero, six):
            return SKIP
        if self.divide:
            return None if scalar_close(c, 6.0) else SKIP
        if not scalar_close(c, float(SIXTH)) or constant_array(c).reshape(-1)[0] == SIXTH:
            return SKIP  # not 1/6, or exactly the canonical float32 1/6 already
        return None

    def rewrite(self, op, x, three, zero, six, c):
        return self.emit(op, x)


RULES = [
    FromHardSigmoid.sweep("HardSigmoid"),
    FromClip01.sweep("Clip(alpha*x+beta,0,1)", "slope"),
    FromClip01.sweep("Clip(x+beta,0,1)", "offset"),
    FromRelu6OverSix.sweep("Clip(x+3,0,6)/6", "divide"),
    FromRelu6OverSix.sweep("Clip(x+3,0,6)*(1/6)", "multiply"),
]
PASS = rule_pass("hardsigmoid_to_relu6", "rewrite every hard-sigmoid as Mul(Clip(Add(x,3),0,6),1/6)", RULES)
