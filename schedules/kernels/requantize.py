"""Saturating requantization: an int8 kernel's last step, ``int8(clip(round(v) + zero_point, lo,
hi))`` in float32 (what the int8 lowering emits: mnv3compile/relax/int8_lowering.py), rewritten
as saturating integer narrowing, on ISAs that have it (arm64: XNNPACK's fp32 "neonv8"
requantization)::

    r = int16(round(v))            saturating  (frinti, fcvtzs, sqxtn)
    q = int8(r + zero_point)       saturating  (sqadd, sqxtn)
    q = max(q, lo), min(q, hi)     only the bounds inside int8's range, and a ReLU's applied
                                   to v before the rounding

Per 8 outputs that is 8 instructions (frinti and fcvtzs per 4, sqxtn + sqxtn2, sqadd, sqxtn; an
smax or smin more for an activation's bound) where the float form took 12 (frinti, fadd, fminnm,
fmaxnm and fcvtzs per 4, two narrowing shuffles), and the same integers: the
rounded value is an integer, so clamping it to int16 and adding the zero point with int16
saturation changes nothing that the final clamp to [lo, hi] (within int8) keeps. Written with
LLVM's generic saturating intrinsics (``llvm.fptosi.sat``, ``llvm.sadd.sat``) and the clamp LLVM
turns into ``sqxtn``; applied to every kernel, templated, tuned or not, after scheduling (the
tuning database matches the kernels as the pipeline made them).
"""

from __future__ import annotations

import math


def epilogue_lanes(sch, epilogue, lanes: int, isa) -> int:
    """Lanes to vectorize a tile's epilogue with: twice the accumulators' where it ends in int8 on
    an ISA that requantizes by saturating narrowing and the tile's channels (its innermost loop)
    allow: narrowing 8 int32 lanes is one sqxtn + sqxtn2 and one sqxtn, where 4 (an int8x4 is no
    NEON vector) took a clamp and two shuffles."""
    wide = 2 * lanes
    if not isa.saturating_requantize or int(sch.get(sch.get_loops(epilogue)[-1]).extent) % wide:
        return lanes
    writes = sch.get(epilogue).writes
    return wide if writes and str(writes[0].source.dtype) == "int8" else lanes


def _float_constant(expr) -> float | None:
    from tvm.ir.prim.expr import FloatImm

    return float(expr.value) if isinstance(expr, FloatImm) else None


def _rounded(expr):
    """(the nearbyint call, zero point) if ``expr`` is round(v) + zero_point (an integral float
    constant) or round(v); else None."""
    from tvm.ir.expr import Call
    from tvm.ir.prim.expr import Add

    def is_round(node) -> bool:
        return isinstance(node, Call) and getattr(node.op, "name", "") == "tirx.nearbyint"

    if is_round(expr):
        return expr, 0
    if isinstance(expr, Add):
        for call, constant in ((expr.a, expr.b), (expr.b, expr.a)):
            zero_point = _float_constant(constant)
            if is_round(call) and zero_point is not None and zero_point.is_integer() and -128 <= zero_point <= 127:
                return call, int(zero_point)
    return None


def saturating_value(value):
    """``value`` (a store's value) rewritten if it is int8(clip(round(v) + zero_point)); else None."""
    from tvm import tirx
    from tvm.ir.prim.expr import Cast, Max, Min

    if not (isinstance(value, Cast) and str(value.ty) == "int8"):
        return None
    low, high, inner = -math.inf, math.inf, value.value
    while isinstance(inner, (Min, Max)):
        bound = _float_constant(inner.b)
        if bound is None:
            return None
        if isinstance(inner, Min):
            high = min(high, bound)
        else:
            low = max(low, bound)
        inner = inner.a
    found = _rounded(inner)
    if found is None or str(inner.ty) != "float32":
        return None
    rounded, zero_point = found
    # A ReLU (or ReLU6) applied before the rounding, max(v, 0): rounding is monotonic and keeps
    # integers, so round(max(v, c)) = max(round(v), c) for an integral c, a bound of the int8 clamp
    # (one smax per 8 outputs instead of an fmaxnm per 4).
    argument = rounded.args[0]
    while isinstance(argument, (Min, Max)):
        bound = _float_constant(argument.b)
        if bound is None or not bound.is_integer():
            break
        if isinstance(argument, Min):
            high = min(high, bound + zero_point)
        else:
            low = max(low, bound + zero_point)
        argument = argument.a
    if not argument.same_as(rounded.args[0]):
        rounded = tirx.nearbyint(argument)
    narrow = tirx.call_llvm_pure_intrin("int16", "llvm.fptosi.sat", rounded)
    if zero_point:
        narrow = tirx.call_llvm_pure_intrin("int16", "llvm.sadd.sat", narrow, tirx.const(zero_point, "int16"))
    result = tirx.Cast("int8", tirx.Max(tirx.Min(narrow, tirx.const(127, "int16")), tirx.const(-128, "int16")))
    if low > -128:
        result = tirx.Max(result, tirx.const(math.ceil(low), "int8"))
    if high < 127:
        result = tirx.Min(result, tirx.const(math.floor(high), "int8"))
    return result


def saturating_requantize(func):
    """``func`` with each block that stores an int8 value of the float requantization's form
    rewritten (module doc); (func, how many). Each block is replaced in place through the
    schedule's state (TVM 0.27's Python has no TIR mutator)."""
    from tvm import s_tir, tirx

    from mnv3compile.schedules.kernels.loops import all_blocks

    sch = s_tir.Schedule(func)
    count = 0
    for block_rv in all_blocks(sch):
        block = sch.get(block_rv)
        store = block.body
        if not isinstance(store, tirx.BufferStore):
            continue
        value = saturating_value(store.value)
        if value is None:
            continue
        body = tirx.BufferStore(store.buffer, value, store.indices)
        new = s_tir.SBlock(block.iter_vars, block.reads, block.writes, block.name_hint, body, block.init,
                           block.alloc_buffers, block.match_buffers, block.annotations)
        sch.state.replace(sch.get_sref(block_rv), new, {block: new})
        count += 1
    return (sch.mod["main"] if count else func), count
