"""What the Relax rewrites of this package share: reading an expression's constant, dtype, shape
and rank, recognizing a call, the operand dtype a result dtype implies, running a mutator over
every Relax function of a module, replacing the calls of given ops, and the clean-up after a
rewrite that answers with a value already bound."""

from __future__ import annotations

import numpy as np

# The operands' dtype of an op by its result's: float32 ops, and int8 ops accumulating in int32.
OPERAND_DTYPE = {"float32": np.float32, "int32": np.int8}


def constant_value(expr):
    """A tensor constant's array, else None."""
    from tvm.ir import GenericConst  # TVM 0.27's tensor constant

    return expr.value.numpy() if isinstance(expr, GenericConst) else None


def scalar_value(expr):
    """A one-element tensor constant's value (a Python int or float), else None."""
    value = constant_value(expr)
    return value.reshape(()).item() if value is not None and value.size == 1 else None


def dtype_of(expr) -> str:
    return str(getattr(expr.ty, "dtype", ""))


def shape_of(expr) -> tuple[int, ...]:
    """A tensor's static shape."""
    return tuple(int(d) for d in expr.ty.shape.values)


def rank_of(expr) -> int | None:
    """A tensor's rank; None for what is not a tensor (prim values, shapes)."""
    from tvm import relax

    ty = expr.ty
    return int(ty.ndim) if isinstance(ty, relax.TensorType) else None


def is_call(expr, name: str) -> bool:
    """``expr`` is a call of the op named ``name`` (e.g. "relax.reshape")."""
    from tvm import relax

    return isinstance(expr, relax.Call) and getattr(expr.op, "name", None) == name


def is_nhwc_conv(attrs) -> bool:
    """A conv2d's attributes say NHWC data and output, HWIO weight: the one layout of the network
    after ChannelsLast (mnv3compile/relax/channels_last.py), which the rewrites here take."""
    return (str(attrs.data_layout), str(attrs.kernel_layout), str(attrs.out_layout)) == ("NHWC", "HWIO", "NHWC")


def rewrite_functions(rewrite, module):
    """``module`` with every Relax function visited by ``rewrite`` (a PyExprMutator built on it)."""
    from tvm import relax

    for global_var, function in module.functions.items():
        if isinstance(function, relax.Function):
            rewrite.builder_.update_func(global_var, rewrite.visit_expr(function))
    return rewrite.builder_.get()


def rewrite_calls(module, ops: tuple[str, ...], rewrite):
    """``module`` with each call of an op named in ``ops`` (visited after its arguments) replaced by
    ``rewrite(call, builder)``, or kept where that returns None; ``builder`` emits what the
    replacement needs before it (``emit``, ``call_te``)."""
    from tvm import relax

    @relax.expr_functor.mutator
    class CallRewrite(relax.PyExprMutator):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            if getattr(call.op, "name", None) not in ops:
                return call
            replacement = rewrite(call, self.builder_)
            return call if replacement is None else replacement

    return rewrite_functions(CallRewrite(module), module)


def without_aliases(module):
    """``module`` after a rewrite that answered a call with a value already bound (``x`` for
    ``astype(astype(x, int32), float32)``): that leaves the value bound to a second name, and
    FuseOps does not fuse across such an alias (it cut a residual block in two, a float32 tensor
    between the kernels). CanonicalizeBindings reads the value where the alias was; what no one
    reads any more (the casts skipped) goes."""
    from tvm import relax

    return relax.transform.DeadCodeElimination()(relax.transform.CanonicalizeBindings()(module))
