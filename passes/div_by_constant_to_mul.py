"""div_by_constant_to_mul: ``Div(x, c)`` with a constant ``c`` becomes ``Mul(x, 1 / c)``.

TensorFlow and Paddle exporters divide by constants (``x / 6``, a mean's ``/ N``); the quantizer
has Mul (an int8 table or an integer multiply) and no Div. Runs after the h-sigmoid and h-swish
passes, whose patterns know the ``/ 6`` spellings themselves. A constant with a zero is left alone.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from mnv3compile.passes.base import rule_pass
from mnv3compile.passes.matcher import Const, Match, RewriteBuilder, Rule, Var, op


def _check(m: Match) -> str | None:
    divisor = m.const("c")
    if not np.issubdtype(divisor.dtype, np.floating):
        return "an integer division"
    return "the divisor has a zero" if np.any(divisor == 0) else None


def _rewrite(m: Match, b: RewriteBuilder) -> ir.Value:
    divisor = m.const("c")
    reciprocal = b.initializer(m.root.graph, (1.0 / divisor.astype(np.float64)).astype(divisor.dtype), "reciprocal")
    return b.op("Mul", [m.values["x"], reciprocal], "mul")


RULES = [Rule("Div(x,c)", op.Div(Var("x"), Const("c")), _rewrite, _check)]
PASS = rule_pass("div_by_constant_to_mul", "Div by a constant becomes Mul by its reciprocal", RULES)
