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


def tvm_target(target: TargetPreset):
    import tvm
    from tvm.target import codegen

    spec = target.tvm_target()
    if target.is_host:  # LLVM rejects -mcpu=native with TVM's triple: ask LLVM for this CPU's name
        spec["mcpu"] = codegen.llvm_get_system_cpu()
    return tvm.target.Target(spec)


def compile_onnx(model: onnx.ModelProto, target: TargetPreset, output: Path) -> CompiledLibrary:
    """ONNX -> Relax -> pipeline -> machine code -> ``output`` (.so). The toolchain is found first,
    so a missing one fails in a second, not after a minute of compiling."""
    import tvm

    toolchain = toolchain_for(target)
    module, notes = import_onnx(model)
    tvm_tgt = tvm_target(target)
    module = run_pipeline(module, tvm_tgt)
    kernels = kernel_names(module)
    executable = tvm.compile(module, tvm_tgt)
    executable.export_library(str(output), fcompile=toolchain.fcompile())
    return CompiledLibrary(output, kernels, list(notes), toolchain.name)
