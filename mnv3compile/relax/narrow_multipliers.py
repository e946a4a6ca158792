"""Per-channel fixed-point multipliers stored as int32, so requantization multiplies 32 x 32 -> 64.

The integer lowering computes ``round(acc * M)`` as ``(int64(acc) * m + r) >> s`` with ``m`` an
int64 constant (``fixed_point``). LLVM cannot tell that ``m`` fits in 32 bits once it is loaded
from an int64 buffer, so on x86 it emulates a 64 x 64-bit multiply (three ``vpmuludq``, shifts and
adds per four lanes: most of an AVX2 int8 pointwise kernel's instructions). Stored as int32 and
sign-extended in the kernel, the product becomes one ``vpmuldq`` (AVX2) / ``smull`` (arm64) per
lane pair. Relax's FoldConstant folds any ``astype`` of a constant back to int64, so this pass
runs after it and expresses the product as a small TE function FuseOps then fuses into the
kernel; the arithmetic is unchanged (bit-identical results).
"""

from __future__ import annotations

import numpy as np

INT32 = np.iinfo(np.int32)


def _narrowable(expr) -> np.ndarray | None:
    """The values of an int64 constant that all fit in int32, as int32; else None."""
    from tvm.ir import GenericConst  # TVM 0.27: a tensor constant

    if not isinstance(expr, GenericConst) or str(expr.value.dtype) != "int64":
        return None
    values = expr.value.numpy()
    if values.size == 0 or values.min() < INT32.min or values.max() > INT32.max:
        return None
    return values.astype(np.int32)


def _widening_multiply(x, narrow):
    """TE: ``x * int64(narrow)`` with numpy broadcasting of ``narrow`` against ``x``."""
    from tvm import te

    offset = len(x.shape) - len(narrow.shape)

    def value(*index):
        at = [0 if int(extent) == 1 else index[offset + axis] for axis, extent in enumerate(narrow.shape)]
        return x(*index) * narrow(*at).astype("int64")

    return te.compute(x.shape, value, name="widening_multiply")


def narrow_multipliers(module):
    """``module`` with every ``multiply(int64 tensor, int64 constant that fits int32)`` done as a
    sign-extending multiply by an int32 constant."""
    from tvm import relax

    @relax.expr_functor.mutator
    class NarrowMultipliers(relax.PyExprMutator):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            if getattr(call.op, "name", None) != "relax.multiply" or len(call.args) != 2:
                return call
            for tensor, constant in (call.args, call.args[::-1]):
                narrow = _narrowable(constant)
                ty = tensor.ty
                if narrow is not None and _narrowable(tensor) is None and isinstance(ty, relax.TensorType) \
                        and str(ty.dtype) == "int64" and int(ty.ndim) >= narrow.ndim:
                    return self.builder_.call_te(_widening_multiply, tensor, relax.const(narrow, "int32"),
                                                 primfunc_name_hint="multiply_int32")
            return call

    rewrite = NarrowMultipliers(module)
    for global_var, function in module.functions.items():
        if isinstance(function, relax.Function):
            rewrite.builder_.update_func(global_var, rewrite.visit_expr(function))
    return rewrite.builder_.get()
