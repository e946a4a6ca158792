"""Which template schedules a fused kernel: the kernel families in one ordered list (DLight's
shape), the first whose ``applies`` says yes schedules it. A kernel no family takes keeps TVM's
default schedule (kernels/inline.py's inlining).

A template never computes anything itself: it reorders, tiles, vectorizes and places the loops of
a kernel that TVM legalized and fused (conv + bias + activation + requantize, ...), or of a
compute of ours (kernels/dot4.py, conv.py, gemv.py), so the arithmetic -- and the bit-exactness of
the integer kernels -- is the kernel's own. Each family's knobs have per-ISA defaults in the ISA
table (isa.py), which an untuned build uses; tuning reads them as MetaSchedule decisions
(knobs.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mnv3compile.schedules.kernels.conv import ConvFamily
from mnv3compile.schedules.kernels.dot4 import Dot4Family
from mnv3compile.schedules.kernels.elementwise import ElementwiseFamily
from mnv3compile.schedules.kernels.family import KernelFamily, NoTemplate, Variant
from mnv3compile.schedules.kernels.gemv import GemvFamily
from mnv3compile.schedules.kernels.isa import Isa
from mnv3compile.schedules.kernels.knobs import KnobReader
from mnv3compile.schedules.kernels.parallel import parallelize, tiles_on_stack
from mnv3compile.schedules.kernels.pool import PoolFamily
from mnv3compile.schedules.kernels.requantize import saturating_requantize

# In order: a family that names its computes by rule first; pool takes the reductions left.
FAMILIES: tuple[KernelFamily, ...] = (Dot4Family(), ConvFamily(), GemvFamily(), PoolFamily(), ElementwiseFamily())

Reader = Callable[[object], KnobReader]  # a family's knobs (a dataclass) -> what its template reads


def schedule_kernel(sch, isa: Isa, reader: Reader = KnobReader) -> Variant:
    """Schedule the kernel in ``sch`` (a PrimFunc's schedule) in place with its family's template;
    the variant applied, or NoTemplate (``sch`` may then be partly scheduled: use
    ``apply_template`` to try)."""
    try:
        blocks = sch.get_child_blocks(sch.get_sblock("root"))
    except Exception as exc:  # a kernel without a root block (already lowered)
        raise NoTemplate from exc
    refusals = []
    for family in FAMILIES:
        verdict = family.applies(sch, blocks)
        if verdict is not True:
            refusals.append(f"{family.name}: {verdict}")
            continue
        knobs = family.knobs(isa)
        try:
            variant = family.schedule(sch, blocks, isa, reader(knobs) if knobs is not None else None)
            parallelize(sch)  # kernels whose template has no reduction (elementwise, padding)
            tiles_on_stack(sch)
            return variant
        except NoTemplate:
            raise
        except Exception as exc:  # a schedule primitive refused this kernel's shape
            raise NoTemplate(str(exc)) from exc
    raise NoTemplate("; ".join(refusals))


def apply_template(func, isa: Isa, reader: Reader = KnobReader):
    """(scheduled PrimFunc, Variant), or NoTemplate."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    variant = schedule_kernel(sch, isa, reader)
    return requantized(sch.mod["main"], isa), variant


def requantized(func, isa: Isa):
    """``func`` with its int8 requantization as saturating narrowing where ``isa`` wants it
    (kernels/requantize.py); a kernel no template takes, or a tuned one, gets it too."""
    return saturating_requantize(func)[0] if isa.saturating_requantize else func


@dataclass(frozen=True)
class Applied:
    kernel: str  # the fused kernel's name
    variant: Variant


@dataclass
class TemplateReport:
    applied: list[Applied]
    default: list[str]  # kernels that kept TVM's default schedule
    tuned: list[str]  # kernels left as a tuning database scheduled them

    def to_json(self) -> dict:
        return {"templated": len(self.applied), "kernels": len(self.applied) + len(self.default) + len(self.tuned),
                "templates": {a.kernel: a.variant.name for a in self.applied}, "default_schedule": self.default,
                "tuned": self.tuned}


def apply_templates(module, isa: Isa, skip: set[str] = frozenset()):
    """(module with every kernel a template covers scheduled by it, TemplateReport); kernels named
    in ``skip`` (already tuned) are left as they are."""
    from tvm import tirx

    result = module.clone()
    report = TemplateReport([], [], [])
    for global_var, func in module.functions.items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        if global_var.name_hint in skip:
            report.tuned.append(global_var.name_hint)
            result.update_func(global_var, requantized(func, isa))
            continue
        try:
            scheduled, variant = apply_template(func, isa)
        except NoTemplate:
            report.default.append(global_var.name_hint)
            result.update_func(global_var, requantized(func, isa))
            continue
        result.update_func(global_var, scheduled)
        report.applied.append(Applied(global_var.name_hint, variant))
    return result, report
