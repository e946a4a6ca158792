"""What every kernel family shares: how a compute names its family (a block attribute), what a
template applied (a ``Variant`` record), and the family's shape (``applies`` then ``schedule``).

A compute this project writes (TE) carries the block attribute ``schedule_rule`` =
``mnv3compile.<family>`` (TOPI and MetaSchedule's convention), so dispatch never depends on a block's
name. TVM's own legalized computes carry no such attribute; a family recognises those by the block
names TVM gives them (``conv2d_nhwc``, ``matmul``), which is what they are.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEDULE_RULE = "schedule_rule"


def rule(family: str) -> dict:
    """The ``attrs`` of a TE compute that the ``family`` template schedules."""
    return {SCHEDULE_RULE: f"mnv3compile.{family}"}


def rule_of(sch, block) -> str | None:
    """The family a block's compute names (``conv`` for ``mnv3compile.conv``), None if it names none."""
    value = sch.get(block).annotations.get(SCHEDULE_RULE)
    return str(value).removeprefix("mnv3compile.") if value is not None else None


class NoTemplate(Exception):
    """The kernel is not of a shape any template covers (it keeps TVM's default schedule)."""


@dataclass(frozen=True)
class Variant:
    """What a template applied to a kernel. ``name`` is derived from it, e.g.
    ``conv1x1_nhwc_int8_vpmaddwd_avx2_p4x24``; nothing parses it back."""
    family: str  # the template: conv, dot4, gemv, pool, pad, elementwise
    op: str  # conv1x1, dwconv3x3, conv3x3, gemv, gemm, pool, pad, pad_transpose, elementwise
    dtype: str
    isa: str
    layout: str = ""  # "nhwc" for convs and pools
    instruction: str = ""  # the instruction the variant is built on, where that is its point
    tile: str = ""  # p<pixels>x<channels>, n<outputs>, m<rows>n<outputs>, c<lanes>

    @property
    def name(self) -> str:
        return "_".join(part for part in (self.op, self.layout, self.dtype, self.instruction, self.isa, self.tile)
                        if part)


class KernelFamily:
    """One template: ``applies(sch, blocks)`` says whether it takes the kernel (True, or why not),
    ``schedule(sch, blocks, isa, reader)`` schedules it in place and returns the variant (or raises
    NoTemplate). ``knobs(isa)`` is the family's row of the ISA's default knobs (None: no knobs);
    ``reader`` turns it into what the template reads (knobs.py)."""

    name = ""

    def applies(self, sch, blocks: list) -> bool | str:
        raise NotImplementedError

    def knobs(self, isa):
        return None

    def schedule(self, sch, blocks: list, isa, knobs) -> Variant:
        raise NotImplementedError


class ReductionFamily(KernelFamily):
    """A family whose kernels have one reduction block: its own computes (``rule`` = its name) and,
    when they carry no rule, TVM's blocks named in ``tvm_blocks`` (prefixes)."""

    tvm_blocks: tuple[str, ...] = ()

    def applies(self, sch, blocks: list) -> bool | str:
        block = single_reduction(sch, blocks)
        if block is None:
            return "not one reduction"
        named = rule_of(sch, block)
        if named == self.name or (named is None and self.tvm_blocks
                                  and sch.get(block).name_hint.startswith(self.tvm_blocks)):
            return True
        return f"not a {self.name} kernel"

    def schedule(self, sch, blocks: list, isa, knobs) -> Variant:
        return self.schedule_block(sch, single_reduction(sch, blocks), isa, knobs)

    def schedule_block(self, sch, block, isa, knobs) -> Variant:
        raise NotImplementedError


def single_reduction(sch, blocks: list):
    """The kernel's one reduction block, or None (none, or several)."""
    from mnv3compile.schedules.kernels.loops import reduce_iters

    reductions = [block for block in blocks if reduce_iters(sch, block)]
    return reductions[0] if len(reductions) == 1 else None
