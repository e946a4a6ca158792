"""The default schedule of every fused kernel: inline its elementwise stages.

FuseTIR puts a group's ops into one PrimFunc but keeps one loop nest and one full-size buffer per
op: an int8 conv with a fixed-point h-swish epilogue made 16 passes over memory through int64
buffers (most of the time of Large's 672-channel depthwise conv was not in the conv). Inlining
every injective stage into its consumer (padding into the conv's reads) and the epilogue chain
into its last stage leaves one conv loop nest and one epilogue loop nest per kernel. It changes
no arithmetic, only where values live. Kernel templates (schedules per op class) replace this for
the kernels they cover.
"""

from __future__ import annotations

from mnv3compile.relax.separable_resize import KEEP


def inline_elementwise(func):
    """``func`` (a PrimFunc) with every stage that can be inlined, inlined."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    while _inline_one(sch):  # inlining one stage can make its neighbour inlinable
        pass
    return sch.mod["main"]


def _inline_one(sch) -> bool:
    """Inline the first stage that can be (into its consumer, else into its producer)."""
    try:
        blocks = sch.get_child_blocks(sch.get_sblock("root"))
    except Exception:  # a kernel without a root block has nothing to inline
        return False
    for block in blocks:
        if KEEP in sch.get(block).annotations:  # a stage meant to be in memory (separable_resize.py)
            continue
        for inline in (sch.compute_inline, sch.reverse_compute_inline):
            try:
                inline(block)
            except Exception:  # TVM raises ScheduleError for a stage that cannot be inlined
                continue
            return True
    return False


def inline_module(module):
    """Every PrimFunc of a Relax module with its elementwise stages inlined (a new module)."""
    from tvm import tirx

    result = module.clone()
    for global_var, func in module.functions.items():
        if isinstance(func, tirx.PrimFunc):
            result.update_func(global_var, inline_elementwise(func))
    return result
