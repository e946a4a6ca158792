"""The ``elementwise`` family: kernels without a reduction (what is left unfused: the SE scale,
lookup tables, a separable resize's passes), one vectorized pass; a lone pad goes to the pad
template, a layout change keeps TVM's loop nest.
"""

from __future__ import annotations

from mnv3compile.schedules.kernels.family import KernelFamily, NoTemplate, Variant
from mnv3compile.schedules.kernels.isa import Isa
from mnv3compile.schedules.kernels.loops import fitting_lanes, reduce_iters, vectorize_innermost
from mnv3compile.schedules.kernels.pad import schedule_padding, transposes


def schedule_elementwise(sch, blocks, isa: Isa) -> Variant:
    # A load guarded by if_then_else (a pad) defeats TVM's vectorizer: fused and "vectorized", the
    # loop became a scalar one with lane bookkeeping, slower than the plain loop nest; such kernels
    # get the padding template.
    guarded = [block for block in blocks if "if_then_else" in str(sch.get(block).body)]
    if guarded:
        if len(blocks) != 1:
            raise NoTemplate("a guarded load (padding) fused with other stages")
        return schedule_padding(sch, blocks[0], isa)
    # A layout change fused and vectorized along its output gathers every lane (the network input's
    # NCHW -> NHWC ran many times slower so than as TVM's plain loop nest). Such stages keep their
    # loop nest; the others of the kernel are vectorized (a separable resize's column pass).
    plain = [block for block in blocks if not transposes(sch, block)]
    if not plain:
        raise NoTemplate("a layout change (transpose)")
    dtypes = set()
    for block in plain:
        node = sch.get(block)
        dtype = str(node.writes[0].source.dtype)
        dtypes.add(dtype)
        loops = sch.get_loops(block)
        # Vectors no wider than what divides the innermost (channel) axis: one that crossed a row
        # made a per-channel operand's index (c % 120) a gather, lane by lane.
        lanes = fitting_lanes(int(sch.get(loops[-1]).extent), isa.lanes(dtype)) if loops else 1
        if len(loops) > 1:
            sch.fuse(*loops)
        vectorize_innermost(sch, block, lanes)
    return Variant("elementwise", "elementwise", "_".join(sorted(dtypes)), isa.name)


class ElementwiseFamily(KernelFamily):
    name = "elementwise"

    def applies(self, sch, blocks: list) -> bool | str:
        return True if not any(reduce_iters(sch, block) for block in blocks) else "has a reduction"

    def schedule(self, sch, blocks: list, isa: Isa, knobs) -> Variant:
        return schedule_elementwise(sch, blocks, isa)
