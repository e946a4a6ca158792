"""Float division by a constant as multiplication by its reciprocal.

TVM's ONNX importer writes HardSwish as ``x * clip(x + 3, 0, 6) / 6``, and LLVM keeps the division
(without fast-math it is not the same to the last bit): one ``vdivps`` per output vector in the
epilogue of every h-swish conv, which issues once per ~4 cycles on Zen 3/4 against two FMAs per
cycle (Large fp32, AVX2: 15 kernels). ``x * (1 / c)`` differs from ``x / c`` by at most one unit in
the last place, far inside the float bundles' tolerance (1e-4 of the output's magnitude). The
int8 kernels have no float division (their epilogues are the lowering's own arithmetic), so they
are untouched, as is a division by a constant with a zero or by a tensor known only at run time.
The ONNX pass ``div_by_constant_to_mul`` does the same on the model, but this division is not in
the model: the importer writes it, after every ONNX pass has run.
"""

from __future__ import annotations

import numpy as np

from mnv3compile.relax.helpers import constant_value, dtype_of, rewrite_calls


def to_reciprocal_multiply(module):
    """``module`` with every float32 ``divide(x, constant)`` a ``multiply(x, 1 / constant)``."""
    from tvm import relax

    def reciprocal(call, builder):
        divisor = constant_value(call.args[1])
        if divisor is None or dtype_of(call) != "float32" or divisor.dtype != np.float32 or np.any(divisor == 0):
            return None
        inverse = (1.0 / divisor.astype(np.float64)).astype(np.float32)
        return relax.op.multiply(call.args[0], relax.const(inverse, "float32"))

    return rewrite_calls(module, ("relax.divide",), reciprocal)
