"""Int8 round trips inside a fused kernel, skipped where they change no value.

The integer lowering rounds each group's result to int8 (``astype(clip(round(v) + zero, -128,
127), "int8")``), as onnxruntime's QDQ graph does, and the next group reads it back
(``astype(q, "int32") - zero``, then float32 for a rescale). When FuseOps puts both groups in one
kernel (a projection conv and its residual add), the round trip costs per output vector a
float -> int32 conversion, two packs to int8, a widening back and a conversion to float again
(`vextracti128`, `vpackssdw`, `vpacksswb`, `vpmovsxbd`, `vcvtdq2ps` on AVX2), though the float
value already is that integer: round() made it integral and the clip put it in int8's range.
This pass reads such a value directly:

- ``astype(astype(w, "int8"), T)`` becomes ``astype(w, T)`` (``w`` itself for float32);
- ``astype(e, "float32")`` of an int32 sum of such readings and integer constants is the same sum
  in float32 (every term an integer below 2^24 in magnitude, so float32 holds it exactly).

``w`` qualifies when it is integral and within [-128, 127] by construction: built from round(),
integral constants, adds, subtracts, minimum, maximum and clip, with bounds that keep it in range.
Nothing is approximated: the values are the same bit for bit. Only an int8 tensor this readback
alone reads is skipped (with other readers it stays, and so does its readback); unused, it goes.
What it saves on Large's residual kernels (AVX2 path): docs/experiments.md, "Relax rewrites".
"""

from __future__ import annotations

import math

import numpy as np

from mnv3compile.relax.helpers import dtype_of, rewrite_calls, scalar_value, without_aliases

INT8_RANGE = (-128.0, 127.0)
SMALL = 2.0**22  # integers this small, plus a few constants below 2^16, stay exact in float32 (2^24)


def _whole_scalar(expr) -> float | None:
    """A one-element constant that is a whole number, else None."""
    value = scalar_value(expr)
    return float(value) if value is not None and value == math.floor(value) else None


def _integral_range(expr, lookup, depth: int = 0) -> tuple[float, float] | None:
    """(low, high) when ``expr`` is a float32 tensor of integers within those bounds by
    construction, else None (not integral, or not provably)."""
    from tvm import relax

    if depth > 16:
        return None
    if isinstance(expr, relax.Var):
        bound = lookup(expr)
        return None if bound is None else _integral_range(bound, lookup, depth + 1)
    constant = _whole_scalar(expr)
    if constant is not None:
        return constant, constant
    if not isinstance(expr, relax.Call) or dtype_of(expr) != "float32":
        return None
    name = getattr(expr.op, "name", "")
    if name == "relax.round":
        low, high = _range(expr.args[0], lookup, depth) or (-math.inf, math.inf)
        return (math.floor(low) if math.isfinite(low) else low), (math.ceil(high) if math.isfinite(high) else high)
    if name == "relax.clip":
        inner = _integral_range(expr.args[0], lookup, depth + 1)
        low, high = (float(getattr(a.value, "value", a.value)) for a in expr.args[1:3])
        if inner is None or low != math.floor(low) or high != math.floor(high):
            return None
        return max(inner[0], low), min(inner[1], high)
    operands = [_integral_range(a, lookup, depth + 1) for a in expr.args[:2]]
    if None in operands or len(operands) != 2:
        return None
    (a_low, a_high), (b_low, b_high) = operands
    combine = {"relax.add": (a_low + b_low, a_high + b_high), "relax.subtract": (a_low - b_high, a_high - b_low),
               "relax.minimum": (min(a_low, b_low), min(a_high, b_high)),
               "relax.maximum": (max(a_low, b_low), max(a_high, b_high))}
    return combine.get(name)


def _range(expr, lookup, depth: int) -> tuple[float, float] | None:
    """Bounds of a float32 expression that need not be integral (what round() reads): only
    maximum/minimum with a constant bound it; anything else is unbounded."""
    from tvm import relax

    if isinstance(expr, relax.Var):
        bound = lookup(expr)
        return None if bound is None or depth > 16 else _range(bound, lookup, depth + 1)
    if isinstance(expr, relax.Call) and getattr(expr.op, "name", "") in ("relax.maximum", "relax.minimum"):
        bound = scalar_value(expr.args[1])
        if bound is not None:
            inner = _range(expr.args[0], lookup, depth + 1) or (-math.inf, math.inf)
            if expr.op.name == "relax.maximum":
                return max(inner[0], bound), max(inner[1], bound)
            return min(inner[0], bound), min(inner[1], bound)
    return None


def _in_int8(bounds) -> bool:
    return bounds is not None and INT8_RANGE[0] <= bounds[0] and bounds[1] <= INT8_RANGE[1]


def skip_int8_round_trips(module):
    """``module`` with every readback of an int8 rounding that is exact without it taken from the
    float value before the cast (see the module docstring)."""
    from tvm import relax
    from tvm.relax import op

    single_use = _single_use_vars(module)

    def read_back(call, builder):
        lookup = builder.lookup_binding
        source = call.args[0]
        target = str(call.attrs.dtype)
        bound = lookup(source) if isinstance(source, relax.Var) else None
        # Only an int8 tensor read by this cast alone: with other readers, the float value would
        # have two consumers and FuseOps could keep it as a float32 tensor between kernels.
        if isinstance(bound, relax.Call) and getattr(bound.op, "name", "") == "relax.astype" \
                and source.name in single_use \
                and str(bound.attrs.dtype) == "int8" and dtype_of(bound.args[0]) == "float32" \
                and _in_int8(_integral_range(bound.args[0], lookup)):
            return bound.args[0] if target == "float32" else op.astype(bound.args[0], target)
        if target == "float32" and dtype_of(source) == "int32":
            return _as_float(source, lookup)
        return None

    # the float answers its readback: bound to a second name until without_aliases
    return without_aliases(rewrite_calls(module, ("relax.astype",), read_back))


def _single_use_vars(module) -> set[str]:
    """Names of the dataflow variables read by exactly one binding (names are unique per
    function after the importer; a name used in two functions is left out)."""
    from collections import Counter

    from tvm import relax

    single, seen = set(), Counter()
    for function in module.functions.values():
        if not isinstance(function, relax.Function):
            continue
        for block in function.body.blocks:
            if not isinstance(block, relax.DataflowBlock):
                continue
            for var, users in relax.analysis.udchain(block).items():
                seen[var.name] += 1
                if len(users) == 1 and isinstance(var, relax.DataflowVar):  # not a block output
                    single.add(var.name)
    return {name for name in single if seen[name] == 1}


def _as_float(expr, lookup, depth: int = 0):
    """``expr`` (int32: readbacks of int8 roundings, ``astype(w, "int32")`` of an exactly
    integral small float, plus or minus integer constants) as the same float32 values, or None."""
    from tvm import relax
    from tvm.relax import op

    if depth > 8:
        return None
    if isinstance(expr, relax.Var):
        bound = lookup(expr)
        return None if bound is None else _as_float(bound, lookup, depth + 1)
    if not isinstance(expr, relax.Call):
        return None
    name = getattr(expr.op, "name", "")
    if name == "relax.astype" and dtype_of(expr.args[0]) == "float32":
        bounds = _integral_range(expr.args[0], lookup)
        return expr.args[0] if bounds is not None and -SMALL < bounds[0] and bounds[1] < SMALL else None
    if name in ("relax.add", "relax.subtract"):
        constant = scalar_value(expr.args[1])
        if constant is None or abs(int(constant)) >= 2**16:
            return None
        inner = _as_float(expr.args[0], lookup, depth + 1)
        if inner is None:
            return None
        shifted = relax.const(np.float32(constant), "float32")
        return op.add(inner, shifted) if name == "relax.add" else op.subtract(inner, shifted)
    return None
