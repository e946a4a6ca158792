"""Compile a Relax module for a target and export the shared object with the target's toolchain."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx

from mnv3compile.compile_choices import INT8_LOWERINGS, SCHEDULES
from mnv3compile.errors import UserError
from mnv3compile.targets.android_loader import require_loadable_on_android
from mnv3compile.targets.presets import TargetPreset
from mnv3compile.targets.toolchains import toolchain_for
from mnv3compile.tvm.frontend import import_onnx
from mnv3compile.tvm.passes import PipelineReports, pipeline_passes, run_passes
from mnv3compile.relax.pipeline import kernel_names


@dataclass
class CompiledLibrary:
    path: Path
    kernels: list[str]
    notes: list[str]
    toolchain: str
    tuning: dict | None = None  # what a tuning database contributed, when one was given
    templates: dict | None = None  # which kernels a template scheduled (schedules/kernels/dispatch.py)
    int8: dict | None = None  # what the integer lowering did (groups, fallbacks, kernel census)
    output_shapes: list[list[int] | None] | None = None  # what the library returns, per output
    isa: str = ""  # which row of the ISA table the kernels were made for, and why (isa.describe)


def output_shapes(module) -> list[list[int] | None]:
    """The static shape of each output of ``main`` (None where TVM could not fix it): the library's
    own, where an ONNX graph may still declare -1 or a name (PaddleOCR's classifier does)."""
    from tvm import relax, tirx

    returned = module["main"].ret_ty
    shapes = []
    for tensor in returned.fields if isinstance(returned, relax.TupleType) else [returned]:
        values = getattr(getattr(tensor, "shape", None), "values", None)
        static = values is not None and all(isinstance(v, tirx.IntImm) for v in values)
        shapes.append([int(v) for v in values] if static else None)
    return shapes


# The host preset's CPU, when set: an LLVM CPU name this machine can run (znver3 builds the AVX2
# code path on an AVX-512 machine, as benchmarks/avx2_path.sh does).
HOST_CPU_VARIABLE = "MNV3COMPILE_HOST_CPU"


def tvm_target(target: TargetPreset):
    import os

    import tvm
    from tvm.target import codegen

    spec = target.tvm_target()
    if target.is_host:  # LLVM rejects -mcpu=native with TVM's triple: ask LLVM for this CPU's name
        spec["mcpu"] = os.environ.get(HOST_CPU_VARIABLE) or codegen.llvm_get_system_cpu()
    return tvm.target.Target(spec)




def quantize_node_names(model: onnx.ModelProto) -> list[str]:
    """What each QuantizeLinear quantizes, in graph order (the importer keeps that order)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    names = []
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear":
            source = producer.get(node.input[0])
            if source is None:
                names.append(f"input {node.input[0]!r}")
            else:
                names.append(f"node {source.name!r}" if source.name else f"{source.op_type} -> {node.input[0]!r}")
    return names


def kernel_census(module) -> dict:
    """Kernels whose tensors in memory are all integer vs kernels that read or write a float one
    (the network's input quantize and output dequantize, and any fake-quantized fallback).
    Constants (per-channel scales) do not count, nor does float32 inside an epilogue, on values in
    registers: that is how the default requantization works."""
    from tvm import relax
    from tvm.ir import GenericConst  # TVM 0.27's tensor constant

    float_kernels = set()

    def visit(expr):
        if isinstance(expr, relax.Call) and getattr(expr.op, "name", "") == "relax.call_tir":
            kernel, args = expr.args[0], expr.args[1]
            tensors = [a for a in getattr(args, "fields", [args]) if not isinstance(a, GenericConst)]
            types = [a.ty for a in tensors] + list(getattr(expr.ty, "fields", [expr.ty]))
            if any("float" in str(getattr(t, "dtype", "")) for t in types):
                float_kernels.add(kernel.name_hint)

    for function in module.functions.values():
        if isinstance(function, relax.Function):
            relax.analysis.post_order_visit(function, visit)
    total = len(kernel_names(module))
    return {"integer_kernels": total - len(float_kernels), "float_kernels": sorted(float_kernels)}


def _through_pipeline(model: onnx.ModelProto, tvm_tgt, int8_lowering: str, database=None,
                      templates: bool = False):
    """ONNX -> Relax -> our passes (mnv3compile/tvm/passes.py ``pipeline_passes``, the list a Relax
    user gets as ``mnv3compile.tvm.pipeline``). (module, notes, int8 report or None, output shapes,
    PipelineReports)."""
    module, notes = import_onnx(model)
    shapes = output_shapes(module)
    quantized = int8_lowering != "fake" and any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    reports = PipelineReports()
    passes = pipeline_passes(tvm_tgt, int8_lowering if quantized else None, database=database, templates=templates,
                             group_names=quantize_node_names(model) if quantized else None, reports=reports)
    module = run_passes(module, passes, tvm_tgt)
    int8 = None
    if quantized:
        requantize = "fixed-point" if int8_lowering == "fixed-point" else "float"
        int8 = {"lowering": "integer", "requantize": requantize, **reports.lowering.to_json(), **kernel_census(module)}
        notes = [*notes, *(f"int8: {line}; it stays dequantize -> float -> quantize"
                           for line in reports.lowering.fallbacks)]
    return module, notes, int8, shapes, reports


def fused_module(model: onnx.ModelProto, tvm_tgt, int8_lowering: str = "integer"):
    """ONNX -> Relax -> [integer lowering] -> our Relax pipeline: the fused kernels, before any
    schedule, that ``tune`` measures. (module, notes, int8 report or None, output shapes)."""
    return _through_pipeline(model, tvm_tgt, int8_lowering)[:4]


def compile_onnx(model: onnx.ModelProto, target: TargetPreset, output: Path,
                 database: Path | None = None, int8_lowering: str = "integer", debug: bool = False,
                 schedule: str = "templates", threads: int = 0) -> CompiledLibrary:
    """ONNX -> Relax -> pipeline [-> tuned schedules from ``database``] [-> templates] -> machine code
    -> ``output`` (.so). The toolchain and the database are checked first, so a missing one fails
    in a second."""
    import tvm

    from mnv3compile.schedules.kernels.isa import describe
    from mnv3compile.schedules.kernels.parallel import serial_kernels
    from mnv3compile.schedules.tuning.database import open_database

    toolchain = toolchain_for(target)
    tuning_db = open_database(database) if database is not None else None
    if schedule not in SCHEDULES:
        raise UserError(f"unknown schedule {schedule!r}; choose one of: {', '.join(SCHEDULES)}")
    if int8_lowering not in INT8_LOWERINGS:
        raise UserError(f"unknown int8 lowering {int8_lowering!r}; choose one of: {', '.join(INT8_LOWERINGS)}")
    tvm_tgt = tvm_target(target)
    with serial_kernels(threads == 1):  # built for one thread: no parallel loop, no fork-join
        module, notes, int8, shapes, reports = _through_pipeline(model, tvm_tgt, int8_lowering, tuning_db,
                                                                 templates=schedule == "templates")
    kernels = kernel_names(module)  # the passes after fusion schedule kernels, never rename or add one
    tuning = None
    if tuning_db is not None:
        tuning = {"database": str(database), **reports.tuning.to_json()}
        if not reports.tuning.applied:
            notes = [*notes, (f"the tuning database {database} has no schedule for any of the {len(kernels)} "
                              "kernels (tuned for another model, target or TVM version?)")]
    templates = None
    if schedule == "templates":  # kernels a database tuned keep their tuned schedule
        templates = reports.templates.to_json()
        pairs = sum(a.variant.instruction == "vpmaddwd" for a in reports.templates.applied)
        if pairs:
            notes = [*notes, (f"{pairs} int8 pointwise convs multiply 2 input channels per vpmaddwd: this CPU "
                              "(AVX2) has no int8 dot product, and their weights use 8 bits; with "
                              "--weight-bits 7 they take 4 per vpmaddubsw (faster, at some accuracy: README, "
                              "'build', AVX2 without VNNI)")]
    executable = tvm.compile(module, tvm_tgt)
    executable.export_library(str(output), fcompile=toolchain.fcompile(strip=not debug))
    if target.toolchain == "android":  # fail here, not in an app on every device
        require_loadable_on_android(output)
    return CompiledLibrary(output, kernels, list(notes), toolchain.name, tuning=tuning, int8=int8, templates=templates,
                           output_shapes=shapes, isa=describe(tvm_tgt))
