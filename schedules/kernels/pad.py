"""The ``pad`` family: a pad (a depthwise conv's padding, the int8 network input's quantize + NCHW
-> NHWC + pad), its border and interior loops apart so the interior is a plain copy (or
conversion) LLVM vectorizes. Also how a conv's epilogue that pads is recognised (conv and dot4
kernels then write their accumulators out and run this template over the whole output).
"""

from __future__ import annotations

from mnv3compile.schedules.kernels.family import NoTemplate, Variant
from mnv3compile.schedules.kernels.isa import Isa
from mnv3compile.schedules.kernels.parallel import run_in_parallel


def _index_var(index):
    """The variable of an index ``v``, ``v + c`` or ``v - c``, else None."""
    from tvm import tirx

    while isinstance(index, (tirx.Add, tirx.Sub)) and isinstance(index.b, tirx.IntImm):
        index = index.a
    return index if isinstance(index, tirx.Var) else None


def transposes(sch, block) -> bool:
    """Whether the block reads along another axis than it writes (a layout change: NCHW -> NHWC)."""
    node = sch.get(block)
    written = _index_var(node.writes[0].region[-1].min)
    for read in node.reads:
        inner = _index_var(read.region[-1].min) if len(read.region) else None
        if inner is None or written is None or inner.same_as(written):
            continue
        if any(iter_var.var.same_as(inner) for iter_var in node.iter_vars):
            return True
    return False


def padding_epilogue(sch, epilogue: list):
    """The conv's one epilogue when it also pads the output for the next conv (FuseOps joins such
    a pad to its producer when the pad is uneven, as TF's stride-2 "same" padding is), else None.
    Computed at the conv's tile, it would write only the tile's positions and never the borders:
    the conv then writes its accumulators out and the pad template runs over the whole output."""
    return epilogue[0] if len(epilogue) == 1 and box_guard(sch, epilogue[0]) is not None else None


def box_guard(sch, block) -> dict[int, tuple[int, int]] | None:
    """{axis: (low, high)} when the block writes ``if_then_else(low <= v < high and ..., value,
    constant)`` over its iteration axes (a pad, with or without a fused quantize and layout
    change; composed pads nest such guards, their boxes intersect), else None."""
    import tvm
    from tvm import tirx

    node = sch.get(block)
    axes = [iv.var for iv in node.iter_vars]
    extents = [int(iv.dom.extent) for iv in node.iter_vars]
    bounds = {axis: [0, extent] for axis, extent in enumerate(extents)}
    guard = tvm.ir.Op.get("prim.if_then_else")

    def bound(var, low=None, high=None) -> bool:
        axis = next((k for k, candidate in enumerate(axes) if candidate.same_as(var)), None)
        if axis is None:
            return False
        if low is not None:
            bounds[axis][0] = max(bounds[axis][0], low)
        if high is not None:
            bounds[axis][1] = min(bounds[axis][1], high)
        return True

    def box(term) -> bool:
        if isinstance(term, tirx.And):
            return box(term.a) and box(term.b)
        if isinstance(term, tirx.LE) and isinstance(term.a, tirx.IntImm) and isinstance(term.b, tirx.Var):
            return bound(term.b, low=int(term.a))
        if isinstance(term, tirx.LT) and isinstance(term.a, tirx.Var) and isinstance(term.b, tirx.IntImm):
            return bound(term.a, high=int(term.b))
        return False

    def constant(term) -> bool:  # a pad's fill; a concat's other branch is another load
        while isinstance(term, tirx.Cast):
            term = term.value
        return isinstance(term, (tirx.IntImm, tirx.FloatImm))

    value, guards = getattr(node.body, "value", None), 0
    while isinstance(value, tvm.ir.Call) and value.op.same_as(guard):
        if not box(value.args[0]) or not constant(value.args[2]):
            return None
        value, guards = value.args[1], guards + 1
    if not guards:
        return None
    return {axis: (low, high) for axis, (low, high) in bounds.items() if (low, high) != (0, extents[axis])}


def schedule_padding(sch, block, isa: Isa) -> Variant:
    """A pad (and the network input's quantize + NCHW -> NHWC + pad): the loops of every padded axis
    but the innermost are partitioned into border, interior and border, so the interior loop nest
    has no guard and copies (or converts) plain rows that LLVM vectorizes, the borders store the
    constant. The innermost axis keeps its guard: the input's 3 -> 4 channel pad then folds into a
    select per lane."""
    from tvm import DataType

    bounds = box_guard(sch, block)
    if bounds is None:
        raise NoTemplate("a guarded load that is not a pad")
    axes = len(sch.get(block).iter_vars)
    layout_change = transposes(sch, block)
    outer = sorted(axis for axis in bounds if axis != axes - 1)
    if not outer:  # a pad of the innermost axis alone: nothing to partition
        raise NoTemplate("a guarded load (padding) of the innermost axis only")
    interior, rows_partition = block, None
    for axis in outer:
        loop = sch.get_loops(interior)[axis - axes]  # loops above a partition's block are not its own
        low, high = bounds[axis]
        extent = int(sch.get(loop).extent)
        # border before, interior, border after; loop_partition wants the last part as None
        factors = ([low] if low else []) + [high - low] + ([extent - high] if high < extent else [])
        factors[-1] = None
        partition = sch.loop_partition(loop, factors)[1 if low else 0]
        rows_partition = rows_partition or partition
        interior = sch.get_child_blocks(partition)[0]
    dtype = str(sch.get(interior).writes[0].source.dtype)
    # Threads split the interior's rows (the first padded axis), as every template splits rows first,
    # so each thread copies the rows its core's caches hold from the kernel before (serial, a pad
    # after a parallel kernel read half its input from the other core: 2-2.5x slower at 2 threads
    # than at 1). A layout change gathers element by element; a copy moves a vector a step, counted
    # as 8 (loads and stores of lines the other core may hold, no arithmetic to hide them).
    rows = sch.get_loops(sch.get_child_blocks(rows_partition)[0])[0]
    run_in_parallel(sch, [rows], per_step=1 if layout_change else max(1, isa.vector_bytes // DataType(dtype).bits))
    return Variant("pad", "pad_transpose" if layout_change else "pad", dtype, isa.name)

