"""Our compiler as TVM passes: the ordered list ``mnv3compile build`` runs between TVM's import and
``tvm.compile``, as ``tvm.transform.Pass`` objects any Relax pipeline can hold.

    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    import mnv3compile.tvm

    target = tvm.target.Target({"kind": "llvm", "mcpu": "znver4"})
    module = from_onnx(onnx.load("small.int8.onnx"))      # or from_exported_program(...)
    module = mnv3compile.tvm.pipeline(target)(module)      # or inside your own Sequential
    vm = relax.VirtualMachine(tvm.compile(module, target), tvm.cpu())

``pipeline(target)`` is, in order: ``IntegerLowering`` (int8 QDQ groups to integer ops; nothing
without ``R.quantize``), the Relax passes of mnv3compile/relax/pipeline.py (``relax_passes``:
BatchNorm folding, channels-last layout, dot products, ..., legalization, fusion, inlining), an
optional ``TuningDatabase``, then ``KernelTemplates``. ``pipeline_passes`` gives the same passes
as a list, to splice passes of your own between them. Each Relax pass is bound to ``target``
(it runs under ``with target:``), since several of them (and TVM's legalization) read the
current target and would silently do less without one.

``mnv3compile build`` runs exactly this list (mnv3compile/tvm/build.py), and reads what the passes
did from the report objects given to them (``PipelineReports``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import tvm

from mnv3compile.relax.int8_lowering import IntegerLowering, LoweringReport
from mnv3compile.relax.pipeline import relax_passes, run_passes
from mnv3compile.schedules.kernels.dispatch import TemplateReport
from mnv3compile.schedules.passes import KernelTemplates, TuningDatabase
from mnv3compile.schedules.tuning.database import ApplyReport

__all__ = ["IntegerLowering", "KernelTemplates", "PipelineReports", "TuningDatabase", "bound_to_target",
           "pipeline", "pipeline_passes", "run_passes"]

# int8_lowering -> the IntegerLowering's requantization (None: no integer lowering)
REQUANTIZE = {"integer": "float", "fixed-point": "fixed-point", "fake": None, None: None}


@dataclass
class PipelineReports:
    """What the pipeline's passes did, filled as they run: the integer lowering's groups and
    fallbacks, the tuning database's applied kernels, the templates' variants."""

    lowering: LoweringReport = field(default_factory=LoweringReport)
    tuning: ApplyReport = field(default_factory=lambda: ApplyReport([], [], []))
    templates: TemplateReport = field(default_factory=lambda: TemplateReport([], [], []))


def bound_to_target(target, inner: tvm.transform.Pass, name: str | None = None) -> tvm.transform.Pass:
    """``inner`` as a module pass (named ``name``, else as ``inner``) that runs it under
    ``with target:``."""

    def run(module, _context):
        with target:
            return inner(module)

    return tvm.transform.module_pass(run, opt_level=0, name=name or inner.info.name)


def pipeline_passes(target, int8_lowering: str | None = "integer", *, group_names: list[str] | None = None,
                    database=None, templates: bool = True,
                    reports: PipelineReports | None = None) -> list[tvm.transform.Pass]:
    """Our passes in order, for ``target`` (a ``tvm.target.Target``).

    ``int8_lowering``: "integer" (int8 kernels, float32 requantization), "fixed-point" (integer-only
    epilogues; the Relax passes that put int8 arithmetic on float32 registers are left out), or
    "fake"/None (no integer lowering: TVM's dequantize -> float -> quantize). ``group_names``: for
    the lowering's fallback messages (``IntegerLowering``). ``database``: a 'tune' database folder
    or MetaSchedule ``Database`` to take tuned schedules from (``TuningDatabase``). ``templates``:
    False leaves the fused kernels with TVM's default schedule (what 'tune' measures). ``reports``:
    filled as the passes run."""
    if int8_lowering not in REQUANTIZE:
        raise ValueError(f"int8_lowering must be one of {[k for k in REQUANTIZE if k]} or None, not {int8_lowering!r}")
    reports = reports if reports is not None else PipelineReports()
    requantize = REQUANTIZE[int8_lowering]
    passes = []
    if requantize is not None:
        passes.append(IntegerLowering(requantize, group_names, report=reports.lowering))
    passes += [bound_to_target(target, make(), name)
               for name, make in relax_passes(integer_only=requantize == "fixed-point")]
    if database is not None:
        passes.append(TuningDatabase(database, target, report=reports.tuning))
    if templates:
        passes.append(KernelTemplates(target, report=reports.templates))
    return passes


def pipeline(target, int8_lowering: str | None = "integer", *, group_names: list[str] | None = None,
             database=None, templates: bool = True, reports: PipelineReports | None = None) -> tvm.transform.Sequential:
    """``pipeline_passes`` (same arguments) as one ``tvm.transform.Sequential`` named "mnv3compile":
    an int8 QDQ or float32 Relax module (from ``from_onnx`` or ``from_exported_program``) in, fused
    and scheduled kernels out, ready for ``tvm.compile(module, target)``."""
    passes = pipeline_passes(target, int8_lowering, group_names=group_names, database=database, templates=templates,
                             reports=reports)
    return tvm.transform.Sequential(passes, name="mnv3compile")
