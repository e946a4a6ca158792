"""Local MetaSchedule tuning of the exact kernels ``build`` compiles, into a JSON database that
``build --db`` applies. (RPC tuning to phones, budgets per task and the ``tune`` command belong to
the tuning issue; this is the local core they build on.)"""

from __future__ import annotations

from pathlib import Path

import onnx

from mnv3compile.targets.presets import TargetPreset


def tune_local(model: onnx.ModelProto, target: TargetPreset, work_dir: Path, max_trials: int,
               trials_per_iteration: int = 2):
    """Tune ``model`` (canonical or quantized ONNX) for ``target`` on this machine."""
    from tvm.s_tir import meta_schedule as ms

    from mnv3compile.tvm.build import tvm_target
    from mnv3compile.tvm.frontend import import_onnx
    from mnv3compile.tvm.pipeline import run_pipeline

    module, _ = import_onnx(model)
    if any(node.op_type == "QuantizeLinear" for node in model.graph.node):  # as build lowers int8
        from mnv3compile.tvm.int8_lowering import lower_to_integer

        module, _ = lower_to_integer(module)
    tvm_tgt = tvm_target(target)
    module = run_pipeline(module, tvm_tgt)  # the same fused kernels build will look up
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    # The builder worker imports TVM's tensor intrinsics (~20 s): the default 30 s timeout is too tight.
    return ms.relax_integration.tune_relax(
        mod=module, params={}, target=tvm_tgt, work_dir=str(work_dir), max_trials_global=max_trials,
        num_trials_per_iter=trials_per_iteration,
        builder=ms.builder.LocalBuilder(timeout_sec=120, max_workers=1),
        runner=ms.runner.LocalRunner(timeout_sec=60))
