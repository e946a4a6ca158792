"""The ``pool`` family: reductions over the pixels of an NHWC tensor (squeeze-excite's and the
classifier's global average pooling: a sum of pixel rows of channel vectors), channels innermost
and vectorized, pixels outside. It takes any single reduction with a 4-D output that no other
family named.
"""

from __future__ import annotations

from mnv3compile.schedules.kernels.family import NoTemplate, ReductionFamily, Variant, rule_of, single_reduction
from mnv3compile.schedules.kernels.isa import Isa
from mnv3compile.schedules.kernels.parallel import run_in_parallel
from mnv3compile.schedules.kernels.loops import fitting_lanes, reduce_iters, split_vectorize, vectorize_innermost


def schedule_pool(sch, block, isa: Isa) -> Variant:
    """A reduction over pixels of an NHWC tensor: channels last in the loop nest and vectorized."""
    dtype = str(sch.get(block).reads[0].source.dtype)
    loops = sch.get_loops(block)
    reduce = reduce_iters(sch, block)
    spatial_loops = loops[:len(loops) - len(reduce)]
    reduce_loops = loops[len(loops) - len(reduce):]
    channels = int(sch.get(spatial_loops[-1]).extent)
    lanes = fitting_lanes(channels, isa.lanes(dtype))
    if lanes < 4:
        raise NoTemplate
    sch.reorder(*spatial_loops[:-1], *reduce_loops, spatial_loops[-1])
    run_in_parallel(sch, spatial_loops[:-1], per_step=lanes)  # a global pool's is the batch, of 1: serial
    split_vectorize(sch, sch.get_loops(block)[-1], lanes)
    sch.decompose_reduction(block, reduce_loops[0])
    for consumer in sch.get_consumers(block):
        vectorize_innermost(sch, consumer, lanes)
    return Variant("pool", "pool", dtype, isa.name, layout="nhwc", tile=f"c{lanes}")


class PoolFamily(ReductionFamily):
    """Any single reduction with a 4-D output no other family took (TVM's mean and sum blocks)."""

    name = "pool"

    def applies(self, sch, blocks: list) -> bool | str:
        block = single_reduction(sch, blocks)
        if block is None:
            return "not one reduction"
        if rule_of(sch, block) is not None:
            return f"a {rule_of(sch, block)} kernel"
        return True if len(sch.get(block).writes[0].source.shape) == 4 else "not a 4-D reduction"

    def schedule_block(self, sch, block, isa: Isa, knobs) -> Variant:
        return schedule_pool(sch, block, isa)
