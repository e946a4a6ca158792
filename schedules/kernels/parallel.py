"""Threads: a template's outer loops -- the rows, pixel tiles and output-channel blocks its tiles
iterate over -- fused into one loop that TVM's thread pool runs in parallel
(``s_tir.Schedule.parallel``; the pool gives each thread one contiguous chunk of it).

Only loops outside the tiles are split, so every output is computed by exactly the instructions
it was before, in the same order: outputs are bit-identical at any thread count. A kernel with too
little work to pay for a fork-join (``MIN_PARALLEL_WORK``) stays serial.

A template calls ``run_in_parallel`` on its outer loops before it decomposes its reduction (TVM
refuses ``parallel`` over a decomposed reduction's update block); ``parallelize`` does the same
for a kernel whose template has no reduction (elementwise, padding), on its leading loops.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar

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

# Loop iterations of a kernel (a vectorized loop counts as one step) under which it stays serial:
# a fork-join of TVM's pool costs microseconds, as much as such a kernel runs
# (docs/experiments.md, "Threads").
MIN_PARALLEL_WORK = 4096
# Fuse outer loops only until the fused loop has this many iterations (a static split of 16 over 2-4
# threads is balanced within a few percent); the loops inside keep their own induction variables,
# which a fused index (div/mod of one counter) would cost the tile's address arithmetic.
PARALLEL_CHUNKS = 16


def kernel_work(sch) -> int:
    """Iterations of the kernel's loop nests, vectorized loops counted once."""
    from tvm import tirx

    total = 0
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        steps = 1
        for loop in sch.get_loops(block):
            node = sch.get(loop)
            if node.kind != tirx.ForKind.VECTORIZED:
                steps *= int(node.extent)
        total += steps
    return total


def run_in_parallel(sch, loops: list) -> int:
    """Fuse ``loops`` (outermost first, perfectly nested, outside every tile) and run the fused loop
    in parallel; its extent, or 0 when the kernel stays serial (too little work, one iteration)."""
    if not _PARALLEL.get():
        return 0
    chosen, extent = [], 1
    for loop in loops:  # the outermost loops only, as many as give PARALLEL_CHUNKS iterations
        chosen.append(loop)
        extent *= int(sch.get(loop).extent)
        if extent >= PARALLEL_CHUNKS:
            break
    if extent < 2 or kernel_work(sch) < MIN_PARALLEL_WORK:
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
