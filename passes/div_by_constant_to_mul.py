"""div_by_constant_to_mul: ``Div(x, c)`` with a constant ``c`` becomes ``Mul(x, 1 / c)``.

TensorFlow and Paddle exporters divide by constants (``x / 6``, a mean's ``/ N``); the quantizer
has Mul (an int8 table or an integer multiply) and no Div. Runs after the h-sigmoid and h-swish
passes, whose patterns know the ``/ 6`` spellings themselves. A constant with a zero is left alone.
onnxscript has only ``div_by_1_rule``.
"""

from __future__ import annotations

import numpy as np

from mnv3compile.passes.base import rule_pass
from mnv3compile.passes.graph_edit import constant_array
from mnv3compile.passes.rules import SKIP, Rule


class DivByConstant(Rule):
    def pattern(self, op, x, c):
        return op.Div(x, c)

    def refusal(self, x, c):
        divisor = constant_array(c)
        if divisor is None:
            return SKIP
        if not np.issubdtype(divisor.dtype, np.floating):
            return "an integer division"
        return "the divisor has a zero" if np.any(divisor == 0) else None

    def rewrite(self, op, x, c):
        divisor = constant_array(c)
        reciprocal = (1.0 / divisor.astype(np.float64)).astype(divisor.dtype)
        return op.Mul(x, self.initializer(op, reciprocal, self.node_name("reciprocal")), _name=self.node_name("mul"))


RULES = [DivByConstant.sweep("Div(x,c)")]
PASS = rule_pass("div_by_constant_to_mul", "Div by a constant becomes Mul by its reciprocal", RULES)
