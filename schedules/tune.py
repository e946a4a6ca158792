"""Local MetaSchedule tuning of the exact kernels ``build`` compiles, into a JSON database that
``build --db`` applies. (RPC tuning to phones, budgets per task and the ``tune`` command belong to
the tuning issue; this is the local core they build on.)

The search space of a kernel is its template's knobs (``templates.KNOB_CHOICES``): the template
runs on MetaSchedule's traced schedule with each knob it reads sampled as a decision
(``SampledKnobs``), so a record is the template with the tile that measured fastest. The search
re-runs the template with fresh samples for each candidate (``replay-func``): the knob spaces are
small (tens of tiles per kernel), and a template chooses its loops from the sampled values in
Python, which a replayed trace with mutated decisions would not re-run. A kernel no template
covers is left as the pipeline made it.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from mnv3compile.targets.presets import TargetPreset


def template_space(isa):
    """A MetaSchedule space generator: each kernel's template, its knobs sampled."""
    from tvm.s_tir import meta_schedule as ms

    from mnv3compile.schedules.templates import NoTemplate, SampledKnobs, apply_template, schedule_kernel

    def schedule(sch) -> None:
        try:  # first on a copy with the default knobs: a kernel without a template stays untouched
            apply_template(sch.mod["main"], isa)
        except NoTemplate:
            return
        schedule_kernel(sch, isa, SampledKnobs(sch, isa))

    return ms.space_generator.ScheduleFn(schedule, sch_rules=[], postprocs=[], mutator_probs={})


def tune_local(model: onnx.ModelProto, target: TargetPreset, work_dir: Path, max_trials: int,
               trials_per_iteration: int = 2):
    """Tune ``model`` (canonical or quantized ONNX) for ``target`` on this machine."""
    from tvm.s_tir import meta_schedule as ms

    from mnv3compile.schedules.intrinsics import register_all
    from mnv3compile.schedules.isa import isa_of
    from mnv3compile.tvm.build import tvm_target
    from mnv3compile.tvm.frontend import import_onnx
    from mnv3compile.tvm.pipeline import run_pipeline

    module, _ = import_onnx(model)
    if any(node.op_type == "QuantizeLinear" for node in model.graph.node):  # as build lowers int8
        from mnv3compile.tvm.int8_lowering import lower_to_integer

        module, _ = lower_to_integer(module)
    tvm_tgt = tvm_target(target)
    module = run_pipeline(module, tvm_tgt)  # the same fused kernels build will look up
    register_all()  # the templates' tensor intrinsics, by name, for the traces
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    # The builder worker imports TVM's tensor intrinsics (~20 s): the default 30 s timeout is too tight.
    return ms.relax_integration.tune_relax(
        mod=module, params={}, target=tvm_tgt, work_dir=str(work_dir), max_trials_global=max_trials,
        num_trials_per_iter=trials_per_iteration, space=template_space(isa_of(tvm_tgt)), strategy="replay-func",
        builder=ms.builder.LocalBuilder(timeout_sec=120, max_workers=1),
        runner=ms.runner.LocalRunner(timeout_sec=60))
