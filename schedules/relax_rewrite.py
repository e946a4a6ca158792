"""What the Relax rewrites in schedules/ (ChannelsLast, DotProducts, FloatAccumulation) share:
reading a call's operands, and running a mutator over every Relax function of a module."""

from __future__ import annotations


def constant_value(expr):
    """A tensor constant's array, else None."""
    from tvm.ir import GenericConst  # TVM 0.27's tensor constant

    return expr.value.numpy() if isinstance(expr, GenericConst) else None


def dtype_of(expr) -> str:
    return str(getattr(expr.ty, "dtype", ""))


def rewrite_functions(rewrite, module):
    """``module`` with every Relax function visited by ``rewrite`` (a PyExprMutator built on it)."""
    from tvm import relax

    for global_var, function in module.functions.items():
        if isinstance(function, relax.Function):
            rewrite.builder_.update_func(global_var, rewrite.visit_expr(function))
    return rewrite.builder_.get()
