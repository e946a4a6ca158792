"""Threads: a template's outer loops -- the rows, pixel tiles and output-channel blocks its tiles
iterate over -- fused into one loop that TVM's thread pool runs in parallel
(``s_tir.Schedule.parallel``; the pool gives each thread one contiguous chunk of it).

Only loops outside the tiles are split, so every output is computed by exactly the instructions
it was before, in the same order: outputs are bit-identical at any thread count. A kernel with too
little work to pay for a fork-join (``MIN_PARALLEL_STEPS``) stays serial.

A template calls ``run_in_parallel`` on its outer loops before it decomposes its reduction (TVM
refuses ``parallel`` over a decomposed reduction's update block); ``parallelize`` does the same
for a kernel whose template has no reduction (elementwise, padding), on its leading loops.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar

from mnv3compile.schedules.kernels.loops import all_blocks

# Off for a library built for one thread ('build --threads 1'): its kernels then have no parallel
# loop at all, and no fork-join to pay for.
_PARALLEL = ContextVar("mnv3compile_parallel_kernels", default=True)


@contextlib.contextmanager
def serial_kernels(serial: bool = True):
    """Within: templates (and tuning records replayed through them) leave every loop serial."""
    token = _PARALLEL.set(not serial)
    try:
        yield
    finally:
        _PARALLEL.reset(token)


def parallel_enabled() -> bool:
    """Whether templates make parallel loops here (not within ``serial_kernels``)."""
    return _PARALLEL.get()


# Vector instructions a kernel must run to go parallel: below, a fork-join of TVM's pool (about
# 2 us on this 2-core VM: a 0.5 us GEMV took 2.4 us in parallel) costs what the second thread
# saves. Measured per kernel of MobileNetV3-Small int8 at 1 and 2 threads (docs/experiments.md,
# "Threads"): kernels of 16k steps and more (about 8 us serial) gained 1.2-1.8x, smaller ones
# 0.2-1.1x.
MIN_PARALLEL_STEPS = 16384
# Fuse outer loops only until the fused loop has this many iterations (a static split of 16 over 2-4
# threads is balanced within a few percent); the loops inside keep their own induction variables,
# which a fused index (div/mod of one counter) would cost the tile's address arithmetic.
PARALLEL_CHUNKS = 16


def kernel_steps(sch, per_step: int = 1) -> int:
    """Vector instructions the kernel runs, about: the statements its loop nests execute, vectorized
    loops counted once, divided by ``per_step`` (what one instruction of a loop not yet vectorized
    covers: a dot4 template's lanes x depth, a conv's lanes)."""
    from tvm import s_tir, tirx

    def steps(stmt, times: int) -> int:
        if isinstance(stmt, tirx.For):
            return steps(stmt.body, times if stmt.kind == tirx.ForKind.VECTORIZED else times * int(stmt.extent))
        if isinstance(stmt, tirx.SeqStmt):
            return sum(steps(child, times) for child in stmt.seq)
        if isinstance(stmt, s_tir.SBlockRealize):
            return steps(stmt.block.body, times)
        if isinstance(stmt, tirx.IfThenElse):
            return steps(stmt.then_case, times) + (steps(stmt.else_case, times) if stmt.else_case else 0)
        body = getattr(stmt, "body", None)
        return steps(body, times) if isinstance(body, tirx.Stmt) else times

    return steps(sch.mod["main"].body, 1) // max(1, per_step)


def goes_parallel(sch, per_step: int = 1) -> bool:
    """Whether ``run_in_parallel`` will make this kernel's loops parallel (work enough, in a
    parallel build): a template reads its ``split`` knob only then."""
    return _PARALLEL.get() and kernel_steps(sch, per_step) >= MIN_PARALLEL_STEPS


def run_in_parallel(sch, loops: list, per_step: int = 1, steps: int | None = None) -> int:
    """Fuse ``loops`` (outermost first, perfectly nested, outside every tile) and run the fused loop
    in parallel; its extent, or 0 when the kernel stays serial (too little work, one iteration).
    ``per_step``: as ``kernel_steps`` counts; ``steps``: the caller's own count instead."""
    if not _PARALLEL.get():
        return 0
    chosen, extent = [], 1
    for loop in loops:  # the outermost loops only, as many as give PARALLEL_CHUNKS iterations
        chosen.append(loop)
        extent *= int(sch.get(loop).extent)
        if extent >= PARALLEL_CHUNKS:
            break
    if extent < 2 or (kernel_steps(sch, per_step) if steps is None else steps) < MIN_PARALLEL_STEPS:
        return 0
    fused = sch.fuse(*chosen) if len(chosen) > 1 else chosen[0]
    sch.parallel(fused)
    return extent


def _leading_loops(sch, block) -> list:
    """The outermost loop of ``block`` and the loops perfectly nested in it (each the whole body of
    the one before), while they are serial."""
    from tvm import tirx

    chain = []
    for loop in sch.get_loops(block):
        node = sch.get(loop)
        if node.kind != tirx.ForKind.SERIAL:
            break
        if chain and not (isinstance(sch.get(chain[-1]).body, tirx.For) and sch.get(chain[-1]).body.same_as(node)):
            break
        chain.append(loop)
    return chain


def parallelize(sch) -> int:
    """``run_in_parallel`` on the leading serial loops of the kernel's first loop nest, for kernels
    whose template did not (no parallel loop yet); the fused extent, or 0. A nest TVM refuses to
    run in parallel (a reduction decomposed across it) stays serial."""
    from tvm import tirx

    blocks = [block for block in sch.get_child_blocks(sch.get_sblock("root")) if sch.get_loops(block)]
    if not _PARALLEL.get() or not blocks or any(sch.get(loop).kind == tirx.ForKind.PARALLEL
                         for block in blocks for loop in sch.get_loops(block)):
        return 0
    chain = _leading_loops(sch, blocks[0])
    if not chain:
        return 0
    try:
        return run_in_parallel(sch, chain)
    except Exception:  # tvm's ScheduleError: that nest is not data-parallel as a whole
        return 0


def tiles_on_stack(sch) -> int:
    """Give every "local" buffer of the kernel (the accumulator tiles, their broadcast registers) the
    "global" scope; how many. On a CPU the two differ only in how TVM allocates them: its
    LowerTVMBuiltin puts a small "global" buffer on the stack (an alloca LLVM promotes to
    registers) but turns a "local" one into a TVMBackendAllocWorkspace call, which inside a parallel
    loop's body runs per task: a parallel Small int8 library on one arm64 thread executed 2.0 M
    instructions per inference outside its kernels for it, mostly in TVM's workspace allocator.
    Run after the template (tensorize matches "local" buffers)."""
    changed = 0
    for block in all_blocks(sch):
        for index, region in enumerate(sch.get(block).writes):
            if region.source.scope() == "local":
                sch.set_scope(block, index, "global")
                changed += 1
    return changed
