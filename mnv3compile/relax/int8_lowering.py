"""Integer lowering: the imported QDQ graph (dequantize -> float ops -> quantize) becomes integer Relax.

TVM 0.27 imports a QDQ model as fake quantization: every group of float ops between dequantize and
quantize stays float. This pass finds each such *group* (the float region that feeds one
``R.quantize``, whose other ends are ``R.dequantize`` of int8 tensors or of constants) and replaces
it with integer ops, chosen by the group's shape from the ordered list ``GROUP_LOWERINGS``:

- ``conv2d``: int8 x int8 -> int32 convolution (zero padding done with the input's zero point, the
  zero point's weight sum folded into the int32 bias), then an epilogue to int8;
- ``conv2d_transpose``: int32 input steps (q - zero) times int8 weights, into int32, then the epilogue;
- ``matmul``: the same for Gemm/MatMul (classifier); ``matmul-of-activations``: two int8 tensors
  (attention), int32 steps times int32 steps;
- ``add`` / ``multiply``: residual adds and the squeeze-excite channel scale, each input rescaled
  in the epilogue; ``mean``: int32 sum, one rescale;
- ``layout``: reshape/transpose/max-pool/... done on int8 directly (a table if the scales differ);
- ``resize``, ``average-pool``: interpolated/averaged in float32 on the int8 steps, rounded once;
- ``layer-norm``: int8 in and out, the statistics in float32 on the steps, rounded once;
- ``softmax``: a table of exp(q - max q) in Q20, an int64 sum and one rounded division;
- ``lookup-table``: any elementwise chain of one int8 tensor (h-sigmoid, h-swish, sigmoid, ...) is
  a 256-entry int8 table computed here in float32, so it equals onnxruntime's result exactly.

Epilogues (bias, ReLU/ReLU6/h-sigmoid/h-swish) are recognized by what they compute
(``elementwise.recognize``) and applied to the int32 accumulator before it is rounded to int8 (a
256-entry table is not possible there: the accumulator is not int8, and onnxruntime does not round
it before the activation). ``REQUANTIZATIONS`` are the two ways to do it:

- ``float`` (default): the accumulator is converted to float32, multiplied by its per-channel
  scale, the activation applied, rounded half to even and saturated to int8 -- XNNPACK's and
  onnxruntime's (MLAS) requantization. Tensors between kernels stay int8; float32 lives only in
  vector registers inside an epilogue, where a float multiply is as cheap as an integer one.
- ``fixed-point``: integer arithmetic only (``fixed_point``: 31-bit multipliers, int64 products,
  rounding shifts; gemmlowp's and TFLite's reference semantics), for hardware without a fast FPU or
  when bit-reproducibility across CPUs matters more than speed. It costs int64 multiplies that
  AVX2 and NEON do not have as vectors, so it runs slower than ``float`` (docs/experiments.md,
  "int8 lowering"). FuseOps later puts each group's ops
into one kernel. A group none of the lowerings take stays as it was (dequantize -> float ->
quantize) and is reported by name: never a crash, never silently wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax
from tvm.ir import Constant, GenericConst  # TVM 0.27: GenericConst is a tensor constant, Constant any
from tvm.relax import op

from mnv3compile.relax.epilogues import AffineClip, Gated, NotElementwise, Sigmoid, evaluate, recognize
from mnv3compile.relax.fixed_point import fixed_point, lookup_table
from mnv3compile.relax.helpers import dtype_of, is_call, scalar_value, shape_of

GATE_BITS = 20  # h-swish: the gate clip(v/6 + 1/2, 0, 1) in Q20
PRODUCT_BITS = 10  # h-swish: fractional bits kept of accumulator * gate
FRACTION_BITS = 16  # extra precision of sums whose rounding cannot be single (adds, offsets)
LAYOUT_OPS = {"relax.reshape", "relax.permute_dims", "relax.squeeze", "relax.expand_dims", "relax.flatten",
              "relax.nn.max_pool2d", "relax.strided_slice"}


class Unsupported(Exception):
    """This lowering does not apply to the group (the message says why)."""


@dataclass
class Leaf:
    """An int8 tensor entering the group through ``dequantize``."""

    dequantized: object  # the float var bound to R.dequantize(int8, scale, zero)
    int8: object  # the int8 var
    scale: float
    zero: int


@dataclass
class Group:
    root: object  # the float expression R.quantize reads
    bindings: dict  # var -> value of the whole function
    leaves: list[Leaf]
    calls: list  # every call inside the group (not leaves, not constants)
    scale: float  # output
    zero: int
    shape: tuple

    def calls_named(self, name: str) -> list:
        return [c for c in self.calls if c.op.name == name]

    def leaf_of(self, expr) -> Leaf | None:
        return next((leaf for leaf in self.leaves if leaf.dequantized.same_as(expr)), None)

    def uses(self, var) -> int:
        return sum(1 for c in self.calls for a in _flat_args(c) if a.same_as(var))


@dataclass
class LoweringReport:
    integer_groups: dict[str, int] = field(default_factory=dict)  # lowering name -> groups
    fallbacks: list[str] = field(default_factory=list)  # one line per group left fake-quantized

    @property
    def integer(self) -> int:
        return sum(self.integer_groups.values())

    def to_json(self) -> dict:
        return {"integer_groups": self.integer, "by_kind": dict(self.integer_groups),
                "fallback_groups": len(self.fallbacks), "fallbacks": list(self.fallbacks)}


def _flat_args(call) -> list:
    out = []
    for arg in call.args:
        out.extend(arg.fields if isinstance(arg, relax.Tuple) else [arg])
    return out


# ----------------------------------------------------------------------------------------------
# Finding the group behind one R.quantize
# ----------------------------------------------------------------------------------------------

def find_group(quantize, bindings: dict) -> Group:
    scale, zero = scalar_value(quantize.args[1]), scalar_value(quantize.args[2])
    if scale is None or zero is None or str(quantize.attrs.out_dtype) != "int8":
        raise Unsupported("the output is not per-tensor int8")
    leaves: dict = {}
    calls: list = []
    seen: set = set()

    def walk(expr):
        if isinstance(expr, GenericConst):
            return
        if isinstance(expr, relax.Tuple):
            for item in expr.fields:
                walk(item)
            return
        if isinstance(expr, relax.Var):
            if expr in bindings:
                value = bindings[expr]
                if is_call(value, "relax.dequantize"):
                    if isinstance(value.args[0], GenericConst):
                        return  # a weight or bias
                    if dtype_of(value.args[0]) != "int8":
                        raise Unsupported("an input is not int8")
                    s, z = scalar_value(value.args[1]), scalar_value(value.args[2])
                    if s is None or z is None:
                        raise Unsupported("an input is quantized per channel")
                    leaves.setdefault(expr, Leaf(expr, value.args[0], float(s), int(z)))
                    return
                if expr in seen:
                    return
                seen.add(expr)
                walk(value)
                return
            raise Unsupported(f"it reads the float tensor {expr.name!r}")
        if isinstance(expr, relax.Call):
            if not hasattr(expr.op, "name"):
                raise Unsupported("it calls a function")
            calls.append(expr)
            for arg in expr.args:
                if not isinstance(arg, tvm.ir.GlobalVar):  # call_tir's kernel
                    walk(arg)
            return
        if isinstance(expr, (relax.ShapeExpr, Constant)):
            return
        raise Unsupported(f"it contains {type(expr).__name__}")

    walk(quantize.args[0])
    if not leaves:
        raise Unsupported("it has no int8 input")
    return Group(quantize.args[0], bindings, list(leaves.values()), calls, float(scale), int(zero),
                 shape_of(quantize))


def _resolve(expr, bindings):
    while isinstance(expr, relax.Var) and expr in bindings:
        expr = bindings[expr]
    return expr


def dequantized_constant(expr, bindings) -> np.ndarray:
    """The float value of a constant subexpression (dequantized weights, reshaped biases)."""
    quantized, scale, zero = constant_parts(expr, bindings)
    return (quantized.astype(np.float64) - zero) * scale


def constant_parts(expr, bindings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(integer values, scale, zero point) of a constant subexpression, each broadcast to the value's
    shape and carried through the layout ops between the constant and its use."""

    node = _resolve(expr, bindings)
    if isinstance(node, GenericConst):
        array = node.value.numpy().astype(np.float64)
        return array, np.ones_like(array), np.zeros_like(array)
    if is_call(node, "relax.dequantize") and isinstance(node.args[0], GenericConst):
        q = node.args[0].value.numpy()
        shape = [1] * q.ndim
        scale = node.args[1].value.numpy().astype(np.float64)
        zero = node.args[2].value.numpy().astype(np.float64)
        if scale.size > 1:
            shape[int(node.attrs.axis) % q.ndim] = -1
        return (q.astype(np.float64), np.broadcast_to(scale.reshape(shape if scale.size > 1 else ()), q.shape),
                np.broadcast_to(zero.reshape(shape if zero.size > 1 else ()), q.shape))
    if is_call(node, "relax.reshape"):
        parts = constant_parts(node.args[0], bindings)
        target = shape_of(node)
        return tuple(np.reshape(p, target) for p in parts)
    if is_call(node, "relax.permute_dims"):
        parts = constant_parts(node.args[0], bindings)
        axes = None if node.attrs.axes is None else [int(a) for a in node.attrs.axes]
        return tuple(np.transpose(p, axes) for p in parts)
    raise Unsupported("a weight is not a constant")


def _per_channel(values: np.ndarray, axis: int, what: str) -> np.ndarray:
    """``values`` (broadcast over a weight) as one number per channel along ``axis``."""
    moved = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
    if not np.all(moved == moved[:, :1]):
        raise Unsupported(f"the {what} is not per output channel")
    return moved[:, 0]


# ----------------------------------------------------------------------------------------------
# Emitting integer arithmetic
# ----------------------------------------------------------------------------------------------

# How an epilogue turns an integer accumulator into int8 (see the module docstring).
REQUANTIZATIONS = ("float", "fixed-point")


class Emitter:
    """Integer Relax expressions through a BlockBuilder, with the requantization helpers."""

    def __init__(self, builder, requantize: str = "float"):
        self.bb = builder
        self.requantize = requantize

    def emit(self, expr):
        return self.bb.emit(expr)

    @staticmethod
    def const(array, dtype: str):
        return relax.const(np.asarray(array).astype(dtype), dtype)

    def cast(self, expr, dtype: str):
        return expr if dtype_of(expr) == dtype else self.emit(op.astype(expr, dtype))

    def centered(self, expr, zero: int, dtype: str = "int32"):
        """``q - zero`` in ``dtype``."""

        wide = self.cast(expr, dtype)
        return wide if zero == 0 else self.emit(op.subtract(wide, self.const(zero, dtype)))

    def float_steps(self, leaf: Leaf, remap: Callable):
        """``q - zero`` of an int8 input, in float32 (what the ops computed in float run on)."""
        return self.emit(op.astype(self.centered(remap(leaf.int8), leaf.zero), "float32"))

    def rounding_shift(self, expr, bits: int):
        """round(expr / 2**bits), half towards +infinity: (expr + 2**(bits-1)) >> bits."""
        rounded = op.add(expr, self.const(1 << (bits - 1), "int64"))
        return self.emit(op.right_shift(rounded, self.const(bits, "int64")))

    def scaled(self, expr, real: np.ndarray, channel_shape: tuple, bits: int = 31, offset: np.ndarray | None = None):
        """round((expr + offset) * real) in int64 (``real`` and the integer ``offset`` per channel,
        reshaped to ``channel_shape``), for |expr + offset| < 2**(62 - bits).

        The offset (a conv's bias) is multiplied here, at compile time, and added to the product
        with the rounding term: ``expr`` itself then reaches the multiply as a sign-extended int32,
        which LLVM turns into one 32 x 32 -> 64-bit multiply (vpmuldq, smull); ``int64(acc + bias)``
        is an add of two extended values to it, and arm64 has no 64-bit vector multiply."""
        fp = fixed_point(real, bits)
        multiplier = fp.multiplier.reshape(channel_shape)
        product = op.multiply(self.cast(expr, "int64"), self.const(multiplier, "int64"))
        if offset is None:
            return self.rounding_shift(product, fp.shift)
        constant = np.asarray(offset, np.int64).reshape(channel_shape) * multiplier + fp.rounding
        return self.emit(op.right_shift(op.add(product, self.const(constant, "int64")), self.const(fp.shift, "int64")))

    def to_int8(self, steps, zero: int):
        """int8 of ``steps + zero`` (saturating)."""

        shifted = op.add(steps, self.const(zero, dtype_of(steps))) if zero else steps
        return self.emit(op.astype(op.clip(shifted, -128, 127), "int8"))

    def epilogue(self, terms: list[tuple[object, np.ndarray]], function, scale: float, zero: int,
                 channel_shape: tuple, bias: np.ndarray | None = None):
        """int8 output of ``function(sum of term * real)`` quantized to (scale, zero). Each term is an
        integer tensor (|x| < 2**31) and the real multiplier that makes it a float value; ``bias``
        (integer, per channel) is added to the single term of a conv or matmul."""

        # What this cannot compute, the lowering's match refused (check_epilogue) before any emission.
        if self.requantize == "float":
            return self.float_epilogue(terms, function, scale, zero, channel_shape, bias)
        if isinstance(function, Gated):
            (acc, real), gate = terms[0], function.gate
            gate_q = self.scaled(acc, gate.slope * real * 2.0**GATE_BITS, channel_shape, offset=bias)
            gate_q = op.add(gate_q, self.const(round(gate.offset * 2**GATE_BITS), "int64"))
            gate_q = self.emit(op.clip(gate_q, 0, 2**GATE_BITS))
            # The gate fits in int32: said so to LLVM (a sign-extended int32), its products with the
            # accumulator and the bias become 32 x 32 -> 64-bit multiplies.
            gate_q = self.cast(self.cast(gate_q, "int32"), "int64")
            # (acc + bias) * gate with PRODUCT_BITS fractional bits (an accumulator unit can be ~1/50
            # of an output step: rounding to whole units would move results by that much); < 2**41.
            product = op.multiply(self.cast(acc, "int64"), gate_q)  # < 2**31 * 2**20
            if bias is not None:
                bias_term = op.multiply(self.const(np.asarray(bias).reshape(channel_shape), "int64"), gate_q)
                product = op.add(product, bias_term)
            product = self.rounding_shift(product, GATE_BITS - PRODUCT_BITS)
            steps = self.scaled(product, real / scale / 2.0**PRODUCT_BITS, channel_shape, bits=31 - PRODUCT_BITS)
            return self.to_int8(steps, zero)
        assert isinstance(function, AffineClip)
        offset = function.offset / scale
        # One rounding when the offset is a whole number of steps (ReLU, ReLU6, identity, h-sigmoid
        # at scale 1/256): clip(round(x), round(lo), round(hi)) == round(clip(x, lo, hi)).
        fraction = 0 if len(terms) == 1 and abs(offset - round(offset)) < 1e-9 else FRACTION_BITS
        unit = 2.0**fraction
        total = None
        for acc, real in terms:
            term = self.scaled(acc, function.slope * real / scale * unit, channel_shape, offset=bias)
            total = term if total is None else self.emit(op.add(total, term))
        if round(offset * unit):
            total = self.emit(op.add(total, self.const(round(offset * unit), "int64")))
        low = -2**62 if np.isinf(function.low) else round(function.low / scale * unit)
        high = 2**62 if np.isinf(function.high) else round(function.high / scale * unit)
        if low > -2**62 or high < 2**62:
            total = self.emit(op.clip(total, low, high))
        if fraction:
            total = self.rounding_shift(total, fraction)
        return self.to_int8(total, zero)

    def float_epilogue(self, terms, function, scale: float, zero: int, channel_shape: tuple,
                       bias: np.ndarray | None = None):
        """The epilogue with the requantization in float32 (XNNPACK's and MLAS's choice)."""
        total = None
        sigmoid = isinstance(function, Sigmoid)
        for acc, real in terms:
            # A sigmoid needs the real value; the other activations work in output steps.
            steps_per_unit = np.asarray(real if sigmoid else real / scale, np.float64)
            if isinstance(function, AffineClip):
                steps_per_unit = steps_per_unit * function.slope
            shape = channel_shape if steps_per_unit.ndim else ()
            term = op.multiply(op.astype(acc, "float32"), self.const(steps_per_unit.reshape(shape), "float32"))
            if bias is not None and np.any(bias):  # in float: acc + bias may not fit int32
                term = op.add(term, self.const((np.asarray(bias) * steps_per_unit).reshape(channel_shape), "float32"))
            total = term if total is None else op.add(total, term)
        low, high = -np.inf, np.inf  # what the activation bounds the total to, in output steps
        if sigmoid:
            total = op.multiply(op.sigmoid(total), self.const(1.0 / scale, "float32"))
            low, high = 0.0, 1.0 / scale
        elif isinstance(function, Gated):
            gate = function.gate
            opened = op.add(op.multiply(total, self.const(gate.slope * scale, "float32")),
                            self.const(gate.offset, "float32"))
            total = op.multiply(total, op.clip(opened, gate.low, gate.high))
        else:
            if function.offset:
                total = op.add(total, self.const(function.offset / scale, "float32"))
            low, high = function.low / scale, function.high / scale
            total = self.bounded(total, low, high, "float32")
        steps = op.round(total)  # half to even, as onnxruntime and XNNPACK round
        if zero:
            steps = op.add(steps, self.const(zero, "float32"))
        # Saturate only the sides the activation leaves open: after a ReLU, round(total) + zero
        # cannot fall below -128 (one vector op less per 16 outputs in epilogue-bound kernels).
        # Rounding is monotonic, so the activation's bounds (as the float32 the kernel compares
        # against) bound the rounded steps too.
        open_low = -128 if np.round(np.float32(low)) + zero < -128 else -np.inf
        open_high = 127 if np.round(np.float32(high)) + zero > 127 else np.inf
        return self.emit(op.astype(self.bounded(steps, open_low, open_high, "float32"), "int8"))

    def bounded(self, expr, low: float, high: float, dtype: str):
        """``expr`` clipped to [low, high], an infinite side left out (one min or max, not both)."""
        if np.isfinite(low) and np.isfinite(high):
            return op.clip(expr, low, high)
        if np.isfinite(low):
            return op.maximum(expr, self.const(low, dtype))
        if np.isfinite(high):
            return op.minimum(expr, self.const(high, dtype))
        return expr

    def table(self, int8, table: np.ndarray):
        """``table[q + 128]`` without an index computation (which FuseOps would leave as a kernel of
        its own): the table rotated by 128 and indexed by q itself, wrapping negatives to q + 256."""
        rotated = np.roll(table, 128)
        return self.emit(op.take(self.const(rotated, "int8"), int8, axis=0, mode="wrap"))


def check_epilogue(function, requantize: str, terms: int, bias: bool) -> None:
    """Unsupported when ``Emitter.epilogue`` cannot compute ``function`` of ``terms`` terms with
    this requantization: a lowering's match calls it, so emission never starts on a group it then
    refuses."""
    if bias and terms != 1:
        raise Unsupported("a bias on a sum of terms")
    if requantize == "float":
        return
    if isinstance(function, Sigmoid):
        raise Unsupported("a sigmoid epilogue needs the float requantization (no integer exp)")
    if isinstance(function, Gated) and terms != 1:
        raise Unsupported("a gated activation of a sum")


def _epilogue_function(group: Group, pre_var) -> AffineClip | Gated | Sigmoid:
    if pre_var.same_as(group.root):
        return AffineClip(1.0, 0.0, -np.inf, np.inf)
    try:
        function = recognize(lambda v: evaluate(group.root, group.bindings, pre_var, v))
    except NotElementwise as exc:
        raise Unsupported(f"its activation is not elementwise ({exc})") from None
    if function is None:
        raise Unsupported("its activation is neither a clipped line (ReLU, ReLU6, h-sigmoid), h-swish nor a sigmoid")
    return function


def _single_user_add(group: Group, var):
    """The ``add(var, constant)`` that consumes ``var`` alone (a bias), as (add var, constant expr)."""
    if group.uses(var) != 1:
        return None
    for call in group.calls_named("relax.add"):
        a, b = call.args
        other = b if a.same_as(var) else a if b.same_as(var) else None
        if other is not None and isinstance(other, (relax.Var, GenericConst)):
            try:
                dequantized_constant(other, group.bindings)
            except Unsupported:
                return None
            return _binding_var(group, call), other
    return None


def _bias_and_epilogue(group: Group, out_var, channels: int, channel_axis: int):
    """(bias per channel as float, epilogue function) of the ops after a conv/matmul ``out_var``."""
    bias = np.zeros(channels)
    pre = out_var
    found = _single_user_add(group, out_var)
    if found is not None:
        add_var, constant = found
        value = dequantized_constant(constant, group.bindings)
        rank = len(shape_of(out_var))
        aligned = channel_axis - (rank - value.ndim)  # numpy broadcasting aligns trailing axes
        per_channel = 0 <= aligned < value.ndim and value.shape[aligned] == channels
        if value.ndim > rank or not (value.size == 1 or (per_channel and value.size == channels)):
            raise Unsupported("its bias is not per channel")
        bias = np.broadcast_to(value.reshape(-1), (channels,)).astype(np.float64)
        pre = add_var
    return bias, _epilogue_function(group, pre)


def _binding_var(group: Group, call):
    return next(v for v, value in group.bindings.items() if value.same_as(call))


# ----------------------------------------------------------------------------------------------
# The lowerings, one per group shape: ``match_*(group, requantize)`` checks everything and raises
# Unsupported with the reason, or returns the plan, ``plan(em, remap)``, which only emits (as the
# ONNX passes separate refusal from rewrite: a refused group leaves nothing behind).
# ----------------------------------------------------------------------------------------------

Plan = Callable[["Emitter", Callable], object]  # (emitter, remap) -> the group's int8 value

def _only(group: Group, name: str, allowed_extra: set[str]):
    found = group.calls_named(name)
    if len(found) != 1:
        raise Unsupported(f"no single {name.split('.')[-1]}")
    others = {c.op.name for c in group.calls if not c.same_as(found[0])}
    heavy = others & {"relax.nn.conv2d", "relax.matmul", "relax.nn.conv2d_transpose", "relax.mean",
                      "relax.nn.avg_pool2d", "relax.image.resize2d", "relax.concat"}
    if heavy - allowed_extra:
        raise Unsupported(f"it also contains {', '.join(sorted(heavy))}")
    return found[0]


def _windowed_conv(group: Group, name: str, kernel_layout: str, channel_axis: int):
    """(call, its int8 input leaf, int8 weights, per-output-channel weight scale) of the group's one
    NCHW conv or transposed conv with a zero-point-free constant weight, else Unsupported."""
    conv = _only(group, name, set())
    attrs = conv.attrs
    if str(attrs.data_layout) != "NCHW" or str(attrs.kernel_layout) != kernel_layout:
        raise Unsupported(f"its layout is not NCHW/{kernel_layout}")
    leaf = group.leaf_of(conv.args[0])
    if leaf is None:
        raise Unsupported(f"the {name.split('.')[-1]} input is not a dequantized int8 tensor")
    q_w, s_w, z_w = constant_parts(conv.args[1], group.bindings)
    if np.any(z_w != 0):
        raise Unsupported("its weights have a zero point")
    return conv, leaf, q_w, _per_channel(s_w, channel_axis, "weight scale")


def match_conv2d(group: Group, requantize: str) -> Plan:
    conv, leaf, q_w, weight_scale = _windowed_conv(group, "relax.nn.conv2d", "OIHW", 0)
    attrs = conv.attrs
    channels = q_w.shape[0]
    bias, function = _bias_and_epilogue(group, _binding_var(group, conv), channels, 1)
    accumulator_scale = leaf.scale * weight_scale
    bias_q = np.round(bias / accumulator_scale) - leaf.zero * q_w.reshape(channels, -1).sum(axis=1)
    if np.abs(bias_q).max(initial=0) >= 2**31:
        raise Unsupported("its bias does not fit int32")
    check_epilogue(function, requantize, 1, True)

    def emit(em: Emitter, remap: Callable):
        data = remap(leaf.int8)
        padding = [int(p) for p in attrs.padding]
        if leaf.zero != 0 and any(padding):
            # Zero in real terms is the zero point, not 0: pad with it (top, left, bottom, right).
            data = em.emit(op.nn.pad(data, [0, 0, 0, 0, padding[0], padding[2], padding[1], padding[3]],
                                     pad_value=float(leaf.zero)))
            padding = [0, 0, 0, 0]
        acc = em.emit(op.nn.conv2d(data, em.const(q_w, "int8"), strides=[int(s) for s in attrs.strides],
                                   padding=padding, dilation=[int(d) for d in attrs.dilation],
                                   groups=int(attrs.groups), out_dtype="int32"))
        return em.epilogue([(acc, accumulator_scale)], function, group.scale, group.zero, (1, channels, 1, 1),
                           bias=bias_q)

    return emit


def match_conv2d_transpose(group: Group, requantize: str) -> Plan:
    """A transposed conv (PaddleOCR's DB head upsampling): int32 input steps q - zero times int8
    weights, accumulated in int32. The zero point cannot be folded into the bias as for a conv:
    how many taps reach an output depends on where it lies (the border, the stride's phase)."""
    conv, leaf, q_w, weight_scale = _windowed_conv(group, "relax.nn.conv2d_transpose", "IOHW", 1)
    attrs = conv.attrs
    if int(attrs.groups) != 1:
        raise Unsupported("a grouped transposed conv")
    channels = q_w.shape[1]
    bias, function = _bias_and_epilogue(group, _binding_var(group, conv), channels, 1)
    accumulator_scale = leaf.scale * weight_scale
    bias_q = np.round(bias / accumulator_scale)
    if np.abs(bias_q).max(initial=0) >= 2**31:
        raise Unsupported("its bias does not fit int32")
    check_epilogue(function, requantize, 1, True)

    def emit(em: Emitter, remap: Callable):
        steps = em.centered(remap(leaf.int8), leaf.zero)  # int32
        acc = em.emit(op.nn.conv2d_transpose(steps, em.const(q_w, "int32"), strides=[int(v) for v in attrs.strides],
                                             padding=[int(v) for v in attrs.padding],
                                             output_padding=[int(v) for v in attrs.output_padding],
                                             dilation=[int(v) for v in attrs.dilation], groups=1, data_layout="NCHW",
                                             kernel_layout="IOHW", out_dtype="int32"))
        return em.epilogue([(acc, accumulator_scale)], function, group.scale, group.zero, (1, channels, 1, 1),
                           bias=bias_q)

    return emit


def match_matmul(group: Group, requantize: str) -> Plan:
    matmul = _only(group, "relax.matmul", set())
    leaf = group.leaf_of(matmul.args[0])
    if leaf is None or len(shape_of(matmul.args[0])) != 2:
        raise Unsupported("the matmul input is not a dequantized int8 matrix")
    q_w, s_w, z_w = constant_parts(matmul.args[1], group.bindings)
    if q_w.ndim != 2 or np.any(z_w != 0):
        raise Unsupported("its weight is not a zero-point-free int8 matrix")
    weight_scale = _per_channel(s_w, 1, "weight scale")
    channels = q_w.shape[1]
    bias, function = _bias_and_epilogue(group, _binding_var(group, matmul), channels, 1)
    accumulator_scale = leaf.scale * weight_scale
    bias_q = np.round(bias / accumulator_scale) - leaf.zero * q_w.sum(axis=0)
    check_epilogue(function, requantize, 1, True)

    def emit(em: Emitter, remap: Callable):
        acc = em.emit(op.matmul(remap(leaf.int8), em.const(q_w, "int8"), out_dtype="int32"))
        return em.epilogue([(acc, accumulator_scale)], function, group.scale, group.zero, (1, channels), bias=bias_q)

    return emit


def match_matmul_of_activations(group: Group, requantize: str) -> Plan:
    """A product of two int8 tensors (attention's Q.K^T and P.V): int32 steps multiplied and summed
    in int32 (|q - z| <= 255, so 2**15 terms fit), one rescale by both scales."""
    call, (a, b) = _binary(group, "relax.matmul")
    if int(shape_of(call.args[0])[-1]) > 2**15:
        raise Unsupported("its inner dimension could overflow int32")
    function = _epilogue_function(group, _binding_var(group, call))
    check_epilogue(function, requantize, 1, False)

    def emit(em: Emitter, remap: Callable):
        product = em.emit(op.matmul(em.centered(remap(a.int8), a.zero), em.centered(remap(b.int8), b.zero),
                                    out_dtype="int32"))
        return em.epilogue([(product, np.array(a.scale * b.scale))], function, group.scale, group.zero, ())

    return emit


def _binary(group: Group, name: str):
    call = _only(group, name, set())
    leaves = [group.leaf_of(a) for a in call.args]
    if None in leaves:
        raise Unsupported(f"the {name.split('.')[-1]} does not read two int8 tensors")
    return call, leaves


def match_add(group: Group, requantize: str) -> Plan:
    call, leaves = _binary(group, "relax.add")
    function = _epilogue_function(group, _binding_var(group, call))
    check_epilogue(function, requantize, len(leaves), False)

    def emit(em: Emitter, remap: Callable):
        terms = [(em.centered(remap(leaf.int8), leaf.zero), np.array(leaf.scale)) for leaf in leaves]
        return em.epilogue(terms, function, group.scale, group.zero, ())

    return emit


def match_multiply(group: Group, requantize: str) -> Plan:
    call, (a, b) = _binary(group, "relax.multiply")
    function = _epilogue_function(group, _binding_var(group, call))
    check_epilogue(function, requantize, 1, False)

    def emit(em: Emitter, remap: Callable):
        product = em.emit(op.multiply(em.centered(remap(a.int8), a.zero), em.centered(remap(b.int8), b.zero)))
        return em.epilogue([(product, np.array(a.scale * b.scale))], function, group.scale, group.zero, ())

    return emit


def match_mean(group: Group, requantize: str) -> Plan:
    mean = _only(group, "relax.mean", set())
    leaf = group.leaf_of(mean.args[0])
    if leaf is None:
        raise Unsupported("the mean does not read an int8 tensor")
    axes = [int(a) for a in mean.attrs.axis] if mean.attrs.axis is not None else None
    shape = shape_of(mean.args[0])
    count = int(np.prod([shape[a] for a in axes])) if axes is not None else int(np.prod(shape))
    function = _epilogue_function(group, _binding_var(group, mean))
    check_epilogue(function, requantize, 1, False)

    def emit(em: Emitter, remap: Callable):
        total = em.emit(op.sum(em.centered(remap(leaf.int8), leaf.zero), axis=axes,
                               keepdims=bool(mean.attrs.keepdims)))
        return em.epilogue([(total, np.array(leaf.scale / count))], function, group.scale, group.zero, ())

    return emit


def _rebuild(expr, group: Group, em: Emitter, replace: dict):
    """``expr`` again with int8 leaves in place of their dequantized floats (layout ops only)."""

    for leaf in group.leaves:
        if leaf.dequantized.same_as(expr):
            return replace[leaf.dequantized]
    node = _resolve(expr, group.bindings)
    if isinstance(node, relax.Tuple):  # concat's operands
        return relax.Tuple([_rebuild(field, group, em, replace) for field in node.fields])
    if isinstance(node, relax.Call):
        args = [_rebuild(a, group, em, replace) if isinstance(a, (relax.Var, relax.Call, relax.Tuple)) else a
                for a in node.args]
        return em.emit(relax.Call(node.op, args, node.attrs, node.ty_args))
    return node


def _requantize_table(leaf: Leaf, scale: float, zero: int) -> np.ndarray:
    return lookup_table(lambda x: x, leaf.scale, leaf.zero, scale, zero)


def match_layout(group: Group, requantize: str) -> Plan:
    if len(group.leaves) != 1 or any(c.op.name not in LAYOUT_OPS for c in group.calls):
        raise Unsupported("it is not data movement of one tensor")
    (leaf,) = group.leaves
    same = (leaf.scale, leaf.zero) == (group.scale, group.zero)
    table = None if same else _requantize_table(leaf, group.scale, group.zero)

    def emit(em: Emitter, remap: Callable):
        moved = _rebuild(group.root, group, em, {leaf.dequantized: remap(leaf.int8)})
        return moved if table is None else em.table(moved, table)

    return emit


def _linear_in_steps(group: Group, requantize: str, name: str, what: str) -> Plan:
    """A resize or average pool (weights that sum to 1) of one int8 tensor, computed in float32
    on q - zero: that is the real op in input steps (a zero-padded border is the real zero);
    rescaled to the output's steps and rounded once."""
    call = _only(group, name, {name})
    leaf = group.leaf_of(call.args[0])
    if leaf is None or len(group.calls) != 1:
        raise Unsupported(f"it is not {what} of one int8 tensor")
    if requantize != "float":
        raise Unsupported(f"{what} needs the float requantization")

    def emit(em: Emitter, remap: Callable):
        steps = em.float_steps(leaf, remap)
        result = em.emit(relax.Call(call.op, [steps, *call.args[1:]], call.attrs, call.ty_args))
        return em.epilogue([(result, np.array(leaf.scale))], AffineClip(1.0, 0.0, -np.inf, np.inf), group.scale,
                           group.zero, ())

    return emit


def match_resize(group: Group, requantize: str) -> Plan:
    """LR-ASPP's bilinear upsampling, a DB head's nearest one."""
    return _linear_in_steps(group, requantize, "relax.image.resize2d", "a resize")


def match_average_pool(group: Group, requantize: str) -> Plan:
    """A windowed average pool (PP-OCRv4's recognizer squeezes its height with one)."""
    return _linear_in_steps(group, requantize, "relax.nn.avg_pool2d", "an average pool")


def match_layer_norm(group: Group, requantize: str) -> Plan:
    """LayerNorm of one int8 tensor: int8 in, int8 out, its statistics in float32 inside the kernel.
    It is invariant to its input's scale but for epsilon, so it runs on the steps q - zero with
    epsilon / scale^2; gamma and beta are float constants, applied before the single rounding."""
    norm = _only(group, "relax.nn.layer_norm", set())
    leaf = group.leaf_of(norm.args[0])
    if leaf is None:
        raise Unsupported("the layer norm does not read an int8 tensor")
    if requantize != "float":
        raise Unsupported("a layer norm needs the float requantization")
    gamma, beta = (dequantized_constant(a, group.bindings).astype(np.float32) for a in norm.args[1:3])
    attrs = norm.attrs
    function = _epilogue_function(group, _binding_var(group, norm))
    check_epilogue(function, requantize, 1, False)

    def emit(em: Emitter, remap: Callable):
        steps = em.float_steps(leaf, remap)
        normalized = em.emit(op.nn.layer_norm(steps, em.const(gamma, "float32"), em.const(beta, "float32"),
                                              [int(a) for a in attrs.axes], float(attrs.epsilon) / leaf.scale**2,
                                              bool(attrs.center), bool(attrs.scale)))
        return em.epilogue([(normalized, np.array(1.0))], function, group.scale, group.zero, ())

    return emit


def match_concat(group: Group, requantize: str) -> Plan:
    concat = _only(group, "relax.concat", set())
    if len(group.calls) != 1:
        raise Unsupported("more than a concat")
    tables = {leaf.dequantized: None if (leaf.scale, leaf.zero) == (group.scale, group.zero)
              else _requantize_table(leaf, group.scale, group.zero) for leaf in group.leaves}

    def emit(em: Emitter, remap: Callable):
        replace = {}
        for leaf in group.leaves:
            value, table = remap(leaf.int8), tables[leaf.dequantized]
            replace[leaf.dequantized] = value if table is None else em.table(value, table)
        return _rebuild(concat, group, em, replace)

    return emit


def match_lookup_table(group: Group, requantize: str) -> Plan:
    if len(group.leaves) != 1:
        raise Unsupported("it reads more than one int8 tensor")
    (leaf,) = group.leaves
    if shape_of(leaf.dequantized) != group.shape:
        raise Unsupported("it changes the shape")
    try:
        table = lookup_table(lambda x: evaluate(group.root, group.bindings, leaf.dequantized, x),
                             leaf.scale, leaf.zero, group.scale, group.zero)
    except NotElementwise as exc:
        raise Unsupported(f"it is not elementwise ({exc})") from None
    return lambda em, remap: em.table(remap(leaf.int8), table)


SOFTMAX_EXP_BITS = 20  # exp(x - max) in Q20


def match_softmax(group: Group, requantize: str) -> Plan:
    """softmax(s*(q - z)) = e / sum(e), e = exp(s*(q - max q)): q - max q is one of 256 values, so e
    comes from a Q20 table; the int64 division rounds once (half up) to output steps."""
    softmax = _only(group, "relax.nn.softmax", set())
    leaf = group.leaf_of(softmax.args[0])
    if leaf is None or len(group.calls) != 1:
        raise Unsupported("it is not a softmax of one int8 tensor")
    axis = int(softmax.attrs.axis)
    exps = np.round(np.exp(-leaf.scale * np.arange(256)) * 2**SOFTMAX_EXP_BITS).astype(np.int64)
    fp = fixed_point(1.0 / group.scale)  # steps = e / total * (1/scale)

    def emit(em: Emitter, remap: Callable):
        q = em.cast(remap(leaf.int8), "int32")
        below_max = em.emit(op.subtract(op.max(q, axis=[axis], keepdims=True), q))  # 0..255
        e = em.emit(op.take(em.const(exps, "int64"), below_max, axis=0, mode="clip"))
        total = em.emit(op.sum(e, axis=[axis], keepdims=True))
        numerator = op.add(op.multiply(e, em.const(fp.multiplier, "int64")),
                           op.multiply(total, em.const(fp.rounding, "int64")))
        steps = em.emit(op.floor_divide(numerator, op.multiply(total, em.const(1 << fp.shift, "int64"))))
        return em.to_int8(steps, group.zero)

    return emit


# Tried in this order; the first that applies lowers the group.
GROUP_LOWERINGS: list[tuple[str, Callable[[Group, str], Plan]]] = [
    ("conv2d", match_conv2d),
    ("conv2d_transpose", match_conv2d_transpose),
    ("matmul", match_matmul),
    ("matmul-of-activations", match_matmul_of_activations),
    ("add", match_add),
    ("multiply", match_multiply),
    ("mean", match_mean),
    ("concat", match_concat),
    ("resize", match_resize),
    ("average-pool", match_average_pool),
    ("layer-norm", match_layer_norm),
    ("softmax", match_softmax),
    ("layout", match_layout),
    ("lookup-table", match_lookup_table),
]


def match_group(group: Group, requantize: str) -> tuple[str, Plan]:
    """(lowering name, plan) of the first lowering that takes the group; Unsupported with every
    lowering's reason. Emits nothing."""
    reasons = []
    for name, match in GROUP_LOWERINGS:
        try:
            return name, match(group, requantize)
        except Unsupported as exc:
            reasons.append(f"{name}: {exc}")
    raise Unsupported("; ".join(reasons))


# ----------------------------------------------------------------------------------------------
# The pass
# ----------------------------------------------------------------------------------------------

def lower_to_integer(module, group_names: list[str] | None = None, requantize: str = "float"):
    """(integer module, LoweringReport). ``group_names`` names the groups in the order of their
    quantize ops (the ONNX QuantizeLinear nodes' names), for the fallback messages; ``requantize``
    is one of REQUANTIZATIONS."""
    if requantize not in REQUANTIZATIONS:
        raise ValueError(f"requantize must be one of {REQUANTIZATIONS}, not {requantize!r}")

    report = LoweringReport()

    @relax.expr_functor.mutator
    class IntegerLowering(relax.PyExprMutator):
        def __init__(self, mod):
            super().__init__(mod)
            self.bindings = {}
            self.position = 0

        def visit_var_binding_(self, binding):
            self.bindings[binding.var] = binding.value
            value = binding.value
            if not is_call(value, "relax.quantize"):
                return super().visit_var_binding_(binding)
            position, self.position = self.position, self.position + 1
            if isinstance(value.args[0], relax.Var) and value.args[0] not in self.bindings:
                return super().visit_var_binding_(binding)  # the network input, quantized once
            try:
                group = find_group(value, self.bindings)
                kind, plan = match_group(group, requantize)
            except Unsupported as exc:
                name = group_names[position] if group_names and position < len(group_names) else binding.var.name
                report.fallbacks.append(f"{name}: {exc}")
                return super().visit_var_binding_(binding)
            lowered = plan(Emitter(self.builder_, requantize), self.visit_expr)
            report.integer_groups[kind] = report.integer_groups.get(kind, 0) + 1
            if not isinstance(binding.var, relax.DataflowVar):  # a block output stays visible outside
                lowered = self.builder_.emit_output(lowered)
            self.set_var_remap(binding.var, lowered)

    lowering = IntegerLowering(module)
    for global_var, function in module.functions.items():
        if isinstance(function, relax.Function):
            lowering.builder_.update_func(global_var, lowering.visit_expr(function))
    lowered = relax.transform.DeadCodeElimination()(lowering.builder_.get())
    return lowered, report


def has_quantize_ops(module) -> bool:
    """Whether any Relax function of ``module`` calls ``R.quantize`` (a QDQ model as TVM imports it)."""
    found = []

    def visit(expr):
        if not found and is_call(expr, "relax.quantize"):
            found.append(expr)

    for function in module.functions.values():
        if isinstance(function, relax.Function):
            relax.analysis.post_order_visit(function, visit)
    return bool(found)


@tvm.transform.module_pass(opt_level=0, name="IntegerLowering")
class IntegerLowering:
    """``lower_to_integer`` as a ``tvm.transform.Pass``: each dequantize -> float ops -> quantize
    group of an int8 QDQ model becomes integer Relax ops (int8 tensors, int32 accumulators, one
    requantizing epilogue), as this module's docstring describes.

    Expects: a Relax module as TVM's ``from_onnx`` imports a QDQ model -- ``R.quantize`` /
    ``R.dequantize`` pairs, per-tensor int8 activations, per-tensor or per-channel int8 weights as
    constants (``from_onnx``'s default; not ``keep_params_in_input``), NCHW convs with OIHW weights
    as imported (channels-last comes later: the pipeline's ChannelsLast pass). Run it first, before
    any pass that folds or fuses the dequantized weights (FoldConstant, LegalizeOps, FuseOps) or
    changes the layout.

    Leaves: integer Relax ops (not yet legalized, still NCHW) where a lowering took the group, and
    each other group as it was (fake-quantized, reported in ``report.fallbacks``), never an error.
    A module without ``R.quantize`` comes back unchanged (the same object). Our pipeline's later
    passes (``mnv3compile.tvm.pipeline``) then make these ops channels-last integer kernels.

    ``requantize``: "float" (float32 multiply in the epilogue, onnxruntime's rounding) or
    "fixed-point" (integer-only epilogues). ``group_names``: what each ``R.quantize`` quantizes, in
    the module's order (``mnv3compile.tvm.build.quantize_node_names`` of the ONNX model), for the
    fallback messages. ``report``: a ``LoweringReport`` the pass fills (emptied at each run, so it
    describes the last module lowered); read it after the pass ran, also as ``pass_.report``.
    """

    def __init__(self, requantize: str = "float", group_names: list[str] | None = None,
                 report: LoweringReport | None = None):
        if requantize not in REQUANTIZATIONS:
            raise ValueError(f"requantize must be one of {REQUANTIZATIONS}, not {requantize!r}")
        self.requantize = requantize
        self.group_names = list(group_names) if group_names is not None else None
        self.report = report if report is not None else LoweringReport()

    def transform_module(self, module, _context):
        self.report.integer_groups.clear()
        self.report.fallbacks.clear()
        if not has_quantize_ops(module):
            return module
        lowered, report = lower_to_integer(module, self.group_names, self.requantize)
        self.report.integer_groups.update(report.integer_groups)
        self.report.fallbacks.extend(report.fallbacks)
        return lowered
