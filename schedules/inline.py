"""The default schedule of every fused kernel: inline its elementwise stages.

FuseTIR puts a group's ops into one PrimFunc but keeps one loop nest and one full-size buffer per
op: an int8 conv with a fixed-point h-swish epilogue made 16 passes over memory through int64
buffers (Large's 672-channel depthwise spent 37 ms there, most of it not in the conv). Inlining
every injective stage into its consumer (padding into the conv's reads) and the epilogue chain
into its last stage leaves one conv loop nest and one epilogue loop nest per kernel. It changes
no arithmetic, only where values live. Kernel templates (schedules per op class) replace this for
the kernels they cover.
"""

from __future__ import annotations


def inline_elementwise(func):
    """``func`` (a PrimFunc) with every stage that can be inlined, inlined."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    changed = True
    while changed:  # inlining one stage can make its neighbour inlinable
        changed = False
        for block in sch.get_child_blocks(sch.get_sblock("root")) if _has_root(sch) else []:
            for inline in (sch.compute_inline, sch.reverse_compute_inline):
                try:
                    inline(block)
                except Exception:  # TVM raises ScheduleError for a stage that cannot be inlined
                    continue
                changed = True
                break
            if changed:
                break
    return sch.mod["main"]


def _has_root(sch) -> bool:
    try:
        sch.get_sblock("root")
    except Exception:
        return False
    return True


def inline_module(module):
    """Every PrimFunc of a Relax module with its elementwise stages inlined."""
    import tvm
    from tvm import tirx

    updates = {}
    for global_var, func in module.functions.items():
        if isinstance(func, tirx.PrimFunc):
            updates[global_var] = inline_elementwise(func).with_attr("global_symbol", global_var.name_hint) \
                if "global_symbol" in (func.attrs or {}) else inline_elementwise(func)
    result = tvm.IRModule(dict(module.functions.items()))
    for global_var, func in updates.items():
        result[global_var] = func
    return result
