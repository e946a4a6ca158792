"""One layout for the whole network: channels last (NHWC), converted once at the input and once
at the output.

Why NHWC and not NCHW or NCHW{8,16}c: every MobileNetV3 channel count is a multiple of 8 (the
zoo's widths round to 8, and so do the published checkpoints), so with channels innermost every
kernel of the network vectorizes over channels without a tail: the depthwise convs (one vector
per pixel and tap), the squeeze-excite pooling and scaling, and the pointwise convs, which become a
GEMM over pixels x channels whose output rows are contiguous. For int8 it is the only layout of the
three where the reduction axis (input channels) is contiguous in memory, which dot-product
instructions (x86 ``vpmaddwd``/``vpdpbusd``, arm64 ``sdot``) need; it is also the layout of
XNNPACK and TFLite. NCHW{c} would need a different block size per ISA and a reorder between
blocks of different widths.

TVM's own ``ConvertLayout`` has no layout rule for ``clip``, ``nn.pad``, ``sum``, ``take`` or the
integer epilogue's shifts, and leaves a transpose on either side of each (140 in an int8
MobileNetV3-Small). This pass knows the few ops our networks are made of (``LAYOUT_RULES``, in
order); any other op gets its inputs back in NCHW, so the result is always correct, only slower.
A transpose of a 1x1-pixel tensor (after pooling) is a free reshape.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mnv3compile.relax.helpers import rank_of, shape_of

TO_NHWC = (0, 2, 3, 1)
TO_NCHW = (0, 3, 1, 2)

ELEMENTWISE = frozenset(f"relax.{name}" for name in (
    "add", "subtract", "multiply", "divide", "floor_divide", "maximum", "minimum", "power",
    "right_shift", "left_shift", "bitwise_and", "astype", "clip", "nn.relu", "sigmoid", "tanh", "exp",
    "round", "floor", "ceil", "negative", "abs", "sqrt", "where", "isnan", "equal", "less", "greater",
    "less_equal", "greater_equal"))


def _axis(axis: int) -> int:
    """Where an NCHW axis is in NHWC."""
    return TO_NHWC.index(axis % 4)


def _out_dtype(attrs) -> str | None:
    dtype = str(attrs.out_dtype)
    return None if dtype in ("", "None", "void") else dtype


class ChannelsLast:
    """What one rewrite needs: the NHWC form of values seen so far, and a builder to emit into."""

    def __init__(self, builder, nhwc: dict, remap: Callable):
        self.bb = builder
        self.nhwc = nhwc  # original Var -> its NHWC Var
        self.remap = remap  # an original value as the rewritten function sees it

    def to_nhwc(self, expr):
        """``expr`` (a rank-4 NCHW value) in NHWC: already converted, a transposed constant, or a
        transpose emitted here (the network's input: the one conversion at the entrance)."""
        from tvm import relax
        from tvm.ir import GenericConst
        from tvm.relax import op

        if isinstance(expr, relax.Var) and expr in self.nhwc:
            return self.nhwc[expr]
        if isinstance(expr, GenericConst):
            return relax.const(np.ascontiguousarray(expr.value.numpy().transpose(TO_NHWC)), str(expr.ty.dtype))
        return self.bb.emit(op.permute_dims(self.remap(expr), list(TO_NHWC)))

    def converted(self, expr) -> bool:
        from tvm import relax

        return isinstance(expr, relax.Var) and expr in self.nhwc


class NotThisLayout(Exception):
    """The op, as called, cannot run in NHWC (its inputs go back to NCHW)."""


def _broadcast_args(call, ctx: ChannelsLast) -> list:
    """Arguments of an elementwise op: rank-4 values in NHWC, scalars as they are. A rank-1..3
    operand would broadcast along other axes once the layout changes: refuse."""
    args = []
    for arg in call.args:
        rank = rank_of(arg)
        if rank == 4:
            args.append(ctx.to_nhwc(arg))
        elif rank is None or rank == 0 or int(np.prod(shape_of(arg))) == 1:  # scalars, prim values (clip's bounds)
            args.append(ctx.remap(arg))
        else:
            raise NotThisLayout
    return args


def rule_elementwise(call, ctx: ChannelsLast):
    from tvm import relax

    return relax.Call(call.op, _broadcast_args(call, ctx), call.attrs, call.ty_args)


def rule_elementwise_call_tir(call, ctx: ChannelsLast):
    """A TIR function the importer emitted for an elementwise op (Clip with tensor bounds): it runs
    unchanged on the NHWC buffer relabelled with the NCHW shape, as all its operands have the
    output's shape or are scalars."""
    from tvm import relax
    from tvm.relax import op

    func = ctx.bb.get()[call.args[0]]
    out_shape = shape_of(call)  # call_tir's own type is its output's
    if int(func.attrs.get("op_pattern", 99)) > 1 or rank_of(call) != 4:
        raise NotThisLayout
    operands = []
    for arg in call.args[1].fields:
        if rank_of(arg) == 4 and shape_of(arg) == out_shape:
            operands.append(ctx.bb.emit(op.reshape(ctx.to_nhwc(arg), out_shape)))
        elif rank_of(arg) == 0:
            operands.append(ctx.remap(arg))
        else:
            raise NotThisLayout
    result = ctx.bb.emit(relax.call_tir(call.args[0], relax.Tuple(operands), call.ty))
    return op.reshape(result, [out_shape[i] for i in TO_NHWC])


def rule_conv2d(call, ctx: ChannelsLast):
    from tvm import relax
    from tvm.ir import GenericConst
    from tvm.relax import op

    attrs = call.attrs
    if (attrs.data_layout, attrs.kernel_layout, attrs.out_layout) != ("NCHW", "OIHW", "NCHW"):
        raise NotThisLayout
    data, weight = call.args
    if isinstance(weight, GenericConst):  # packed at build time, never per inference
        weight = relax.const(np.ascontiguousarray(weight.value.numpy().transpose(2, 3, 1, 0)), str(weight.ty.dtype))
    else:
        weight = ctx.bb.emit(op.permute_dims(ctx.remap(weight), [2, 3, 1, 0]))  # FoldConstant folds it
    return op.nn.conv2d(ctx.to_nhwc(data), weight, strides=list(attrs.strides), padding=list(attrs.padding),
                        dilation=list(attrs.dilation), groups=int(attrs.groups), data_layout="NHWC",
                        kernel_layout="HWIO", out_layout="NHWC", out_dtype=_out_dtype(attrs))


def rule_pad(call, ctx: ChannelsLast):
    from tvm.relax import op

    widths = [int(w) for w in call.attrs.pad_width]
    pairs = [widths[2 * axis:2 * axis + 2] for axis in TO_NHWC]
    return op.nn.pad(ctx.to_nhwc(call.args[0]), [w for pair in pairs for w in pair],
                     pad_mode=str(call.attrs.pad_mode), pad_value=float(call.attrs.pad_value))


def rule_reduce(call, ctx: ChannelsLast):
    from tvm.relax import op

    if call.attrs.axis is None:
        raise NotThisLayout
    axes = sorted(_axis(int(a)) for a in call.attrs.axis)
    reduce = {"relax.sum": op.sum, "relax.mean": op.mean, "relax.max": op.max, "relax.min": op.min}[call.op.name]
    if not call.attrs.keepdims and axes != [1, 2]:
        raise NotThisLayout  # only a spatial reduction leaves the same [N, C] in either layout
    return reduce(ctx.to_nhwc(call.args[0]), axis=axes, keepdims=bool(call.attrs.keepdims))


def rule_concat(call, ctx: ChannelsLast):
    from tvm import relax
    from tvm.relax import op

    fields = call.args[0].fields if isinstance(call.args[0], relax.Tuple) else None
    if fields is None or any(rank_of(f) != 4 for f in fields):
        raise NotThisLayout
    return op.concat([ctx.to_nhwc(f) for f in fields], axis=_axis(int(call.attrs.axis)))


def rule_take(call, ctx: ChannelsLast):
    """A lookup table (1-D table, indices of any shape) is elementwise in its indices."""
    from tvm import relax

    table, indices = call.args
    if rank_of(table) != 1 or rank_of(indices) != 4:
        raise NotThisLayout
    return relax.Call(call.op, [ctx.remap(table), ctx.to_nhwc(indices)], call.attrs, call.ty_args)


def rule_quantize(call, ctx: ChannelsLast):
    from tvm.relax import op

    make = op.quantize if call.op.name == "relax.quantize" else op.dequantize
    data, scale, zero = call.args
    return make(ctx.to_nhwc(data), ctx.remap(scale), ctx.remap(zero), axis=_axis(int(call.attrs.axis)), out_dtype=str(call.attrs.out_dtype))


def rule_resize2d(call, ctx: ChannelsLast):
    from tvm.relax import op

    a = call.attrs
    if a.layout != "NCHW":
        raise NotThisLayout
    return op.image.resize2d(ctx.to_nhwc(call.args[0]), ctx.remap(call.args[1]), roi=[float(r) for r in a.roi], layout="NHWC",
                             method=a.method, coordinate_transformation_mode=a.coordinate_transformation_mode,
                             rounding_method=a.rounding_method, cubic_alpha=float(a.cubic_alpha),
                             cubic_exclude=int(a.cubic_exclude), extrapolation_value=float(a.extrapolation_value),
                             out_dtype=_out_dtype(a))


def rule_pool(call, ctx: ChannelsLast):
    from tvm.relax import op

    a = call.attrs
    if a.layout != "NCHW":
        raise NotThisLayout
    if call.op.name == "relax.nn.adaptive_avg_pool2d":
        return op.nn.adaptive_avg_pool2d(ctx.to_nhwc(call.args[0]), [int(s) for s in a.output_size],
                                         layout="NHWC", out_layout="NHWC")
    pool = op.nn.avg_pool2d if call.op.name == "relax.nn.avg_pool2d" else op.nn.max_pool2d
    extra = {"count_include_pad": bool(a.count_include_pad)} if call.op.name == "relax.nn.avg_pool2d" else {}
    return pool(ctx.to_nhwc(call.args[0]), [int(s) for s in a.pool_size], [int(s) for s in a.strides],
                [int(p) for p in a.padding], [int(d) for d in a.dilation], bool(a.ceil_mode), layout="NHWC",
                out_layout="NHWC", **extra)


Rule = Callable[[object, ChannelsLast], object]

# (which calls, how they are rewritten), tried in order. ``seed`` rules convert even when no input
# is converted yet (a conv starts the NHWC region); the others only continue one.
LAYOUT_RULES: list[tuple[Callable[[str], bool], Rule, bool]] = [
    (lambda name: name == "relax.nn.conv2d", rule_conv2d, True),
    (lambda name: name in ELEMENTWISE, rule_elementwise, False),
    (lambda name: name == "relax.call_tir", rule_elementwise_call_tir, False),
    (lambda name: name == "relax.nn.pad", rule_pad, False),
    (lambda name: name in ("relax.sum", "relax.mean", "relax.max", "relax.min"), rule_reduce, False),
    (lambda name: name == "relax.concat", rule_concat, False),
    (lambda name: name == "relax.take", rule_take, False),
    (lambda name: name in ("relax.quantize", "relax.dequantize"), rule_quantize, False),
    (lambda name: name == "relax.image.resize2d", rule_resize2d, False),
    (lambda name: name in ("relax.nn.avg_pool2d", "relax.nn.max_pool2d", "relax.nn.adaptive_avg_pool2d"),
     rule_pool, False),
]


def _rule_for(call) -> tuple[Rule, bool] | None:
    name = getattr(call.op, "name", None)
    for matches, rule, seed in LAYOUT_RULES:
        if name is not None and matches(name):
            return rule, seed
    return None


def _inputs(call) -> list:
    from tvm import relax

    values = []
    for arg in call.args:
        values.extend(arg.fields if isinstance(arg, relax.Tuple) else [arg])
    return values


def to_channels_last(module):
    """``module`` with every op of its networks that can run in NHWC running in NHWC."""
    from tvm import relax
    from tvm.relax import op

    module = relax.transform.AnnotateTIROpPattern()(module)  # which call_tir kernels are elementwise

    @relax.expr_functor.mutator
    class ChannelsLastRewrite(relax.PyExprMutator):
        def __init__(self, mod):
            super().__init__(mod)
            self.nhwc = {}

        def visit_var_binding_(self, binding):
            value = binding.value
            found = _rule_for(value) if isinstance(value, relax.Call) else None
            if found is None or rank_of(binding.var) != 4:
                return super().visit_var_binding_(binding)
            rule, seed = found
            ctx = ChannelsLast(self.builder_, self.nhwc, self.visit_expr)
            if not seed and not any(ctx.converted(a) for a in _inputs(value)):
                return super().visit_var_binding_(binding)
            try:
                nhwc = self.builder_.emit(rule(value, ctx))
            except NotThisLayout:
                return super().visit_var_binding_(binding)
            self.nhwc[binding.var] = nhwc
            n, h, w, c = shape_of(nhwc)
            back = op.reshape(nhwc, [n, c, h, w]) if h == w == 1 else op.permute_dims(nhwc, list(TO_NCHW))
            nchw = self.builder_.emit(back) if isinstance(binding.var, relax.DataflowVar) \
                else self.builder_.emit_output(back)  # the one conversion back, at the exit
            self.set_var_remap(binding.var, nchw)

    from mnv3compile.relax.helpers import rewrite_functions

    return relax.transform.DeadCodeElimination()(rewrite_functions(ChannelsLastRewrite(module), module))
