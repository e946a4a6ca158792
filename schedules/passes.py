"""The schedules as TVM passes, for any Relax pipeline: ``KernelTemplates`` (kernels/dispatch.py's
templates) and ``TuningDatabase`` (tuning/database.py's re-apply of a MetaSchedule database).

Both work on the TIR kernels of a module that is already legalized and fused (after ``FuseTIR``),
change only PrimFuncs (never a Relax function, never a kernel's name) and mark what they
scheduled ``tirx.is_scheduled``, TVM's own mark (DLight sets it, MetaSchedule's task extraction
and DLight skip kernels carrying it), which is also how ``KernelTemplates`` leaves a tuned kernel
alone. Each takes an optional report object that it fills when it runs, for the caller to read
after (``mnv3compile build`` writes them to build_report.json).
"""

from __future__ import annotations

from pathlib import Path

import tvm
from tvm import tirx

from mnv3compile.schedules.kernels.dispatch import TemplateReport, apply_templates
from mnv3compile.schedules.tuning.database import ApplyReport

SCHEDULED = "tirx.is_scheduled"  # TVM's mark of a scheduled kernel (DLight's, MetaSchedule's)


def is_scheduled(func) -> bool:
    """Whether a PrimFunc carries TVM's ``tirx.is_scheduled`` mark."""
    return bool(func.attrs is not None and SCHEDULED in func.attrs and int(func.attrs[SCHEDULED]))


def _marked(module, names) -> tvm.IRModule:
    """``module`` with the PrimFuncs named in ``names`` marked scheduled."""
    for name in names:
        global_var = module.get_global_var(name)
        module.update_func(global_var, module[global_var].with_attr(SCHEDULED, True))
    return module


def _target(given, pass_name: str):
    target = given if given is not None else tvm.target.Target.current(allow_none=True)
    if target is None:
        raise ValueError(f"{pass_name} needs a target: give one to the pass, or run it under 'with target:'")
    return target


@tvm.transform.module_pass(opt_level=0, name="KernelTemplates")
class KernelTemplates:
    """Our kernel templates as a ``tvm.transform.Pass``: every kernel a template covers (the
    families of kernels/dispatch.py: int8 dot products, convs, GEMVs, pools, elementwise chains)
    is scheduled with the knobs of the target's row of the ISA table (kernels/isa.py).

    Expects: fused TIR kernels as our pipeline makes them (``mnv3compile.tvm.pipeline``: legalized,
    fused, each kernel's elementwise stages inlined; channels-last (NHWC) tensors and the weight
    layouts its rewrites chose). A template recognizes a kernel by its loops and computation, so a
    kernel of another shape (an NCHW conv of a module that skipped our layout pass, say) is not
    scheduled wrongly: no template takes it and it keeps its schedule. ``target``: a
    ``tvm.target.Target``, or None for the current one (``with target:``) when the pass runs.

    Leaves: each templated kernel scheduled and marked ``tirx.is_scheduled``; every other kernel
    unscheduled -- those no template takes (``report.default``), those named in ``skip`` and those
    already marked scheduled, e.g. by ``TuningDatabase`` or by DLight or MetaSchedule earlier in the
    user's pipeline (``report.tuned``). On arm64 every kernel's int8 requantization, these too, is
    rewritten as saturating narrowing (kernels/requantize.py: the same integers, fewer
    instructions). Relax functions and kernel names are not changed.

    ``report``: a ``TemplateReport`` the pass fills (emptied at each run, so it describes the last
    module); also readable as ``pass_.report``.
    """

    def __init__(self, target=None, skip=frozenset(), report: TemplateReport | None = None):
        self.target = target
        self.skip = frozenset(skip)
        self.report = report if report is not None else TemplateReport([], [], [])

    def transform_module(self, module, _context):
        from mnv3compile.schedules.kernels.isa import isa_of

        target = _target(self.target, "KernelTemplates")
        scheduled = {gv.name_hint for gv, func in module.functions.items()
                     if isinstance(func, tirx.PrimFunc) and is_scheduled(func)}
        result, report = apply_templates(module, isa_of(target), skip=self.skip | scheduled)
        self.report.applied[:] = report.applied
        self.report.default[:] = report.default
        self.report.tuned[:] = report.tuned
        return _marked(result, [a.kernel for a in report.applied])


@tvm.transform.module_pass(opt_level=0, name="TuningDatabase")
class TuningDatabase:
    """A MetaSchedule tuning database applied as a ``tvm.transform.Pass`` (tuning/database.py's
    ``apply_database``: each kernel looked up as 'tune' recorded it, else matched up to its
    constants), which stock TVM 0.27's ``MetaScheduleApplyDatabase`` does not do from a JSON
    database written by another process (docs/tvm027.md).

    Expects: the fused kernels of the same pipeline the database was tuned on
    (``mnv3compile.tvm.pipeline(..., templates=False)``, which is what 'tune' measures); run it
    before ``KernelTemplates``. ``database``: a folder 'tune' wrote (or any MetaSchedule
    ``Database``); ``target`` as for ``KernelTemplates``.

    Leaves: each kernel with a record replaced by its tuned form and marked ``tirx.is_scheduled``
    (so ``KernelTemplates`` leaves it alone); the others unchanged. ``report``: an ``ApplyReport``
    the pass fills (emptied at each run): applied, untuned, matched up to constants.
    """

    def __init__(self, database, target=None, report: ApplyReport | None = None):
        if isinstance(database, (str, Path)):
            from mnv3compile.schedules.tuning.database import open_database

            database = open_database(Path(database))
        self.database = database
        self.target = target
        self.report = report if report is not None else ApplyReport([], [], [])

    def transform_module(self, module, _context):
        from mnv3compile.schedules.tuning.database import apply_database

        tuned, report = apply_database(module.clone(), _target(self.target, "TuningDatabase"), self.database)
        self.report.applied[:] = report.applied
        self.report.untuned[:] = report.untuned
        self.report.by_constants[:] = report.by_constants
        return _marked(tuned, report.applied)
