"""Compile a Relax module for a target and export the shared object with the target's toolchain."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx

from mnv3compile.targets.presets import TargetPreset
from mnv3compile.targets.toolchains import toolchain_for
from mnv3compile.tvm.frontend import import_onnx
from mnv3compile.tvm.pipeline import kernel_names, run_pipeline


@dataclass
class CompiledLibrary:
    path: Path
    kernels: list[str]
    notes: list[str]
    toolchain: str
    tuning: dict | None = None  # what a tuning database contributed, when one was given


def tvm_target(target: TargetPreset):
    import tvm
    from tvm.target import codegen

    spec = target.tvm_target()
    if target.is_host:  # LLVM rejects -mcpu=native with TVM's triple: ask LLVM for this CPU's name
        spec["mcpu"] = codegen.llvm_get_system_cpu()
    return tvm.target.Target(spec)


def compile_onnx(model: onnx.ModelProto, target: TargetPreset, output: Path,
                 database: Path | None = None) -> CompiledLibrary:
    """ONNX -> Relax -> pipeline -> [tuned schedules from ``database``] -> machine code -> ``output``
    (.so). The toolchain and the database are checked first, so a missing one fails in a second."""
    import tvm

    from mnv3compile.schedules.database import apply_database, open_database

    toolchain = toolchain_for(target)
    tuning_db = open_database(database) if database is not None else None
    module, notes = import_onnx(model)
    tvm_tgt = tvm_target(target)
    module = run_pipeline(module, tvm_tgt)
    kernels = kernel_names(module)
    tuning = None
    if tuning_db is not None:
        module, applied = apply_database(module, tvm_tgt, tuning_db)
        tuning = {"database": str(database), **applied.to_json()}
        if not applied.applied:
            notes = [*notes, f"the tuning database {database} has no schedule for any of the {len(kernels)} "
                             "kernels (tuned for another model, target or TVM version?)"]
    executable = tvm.compile(module, tvm_tgt)
    executable.export_library(str(output), fcompile=toolchain.fcompile())
    return CompiledLibrary(output, kernels, list(notes), toolchain.name, tuning)
