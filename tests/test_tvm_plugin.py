"""The TVM plugin surface (issue 37): our passes as ``tvm.transform.Pass`` objects in a pipeline a
Relax user writes, on modules TVM's own importers make (``from_onnx``, ``from_exported_program``),
compiled with ``tvm.compile`` -- the same outputs, bit for bit, as ``mnv3compile build``'s bundle,
and for the ONNX import the same machine code (.text), which is what makes it run at the build's
speed. The timing itself is benchmarks/plugin_pipeline.py's (tests time nothing)."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import onnx
import pytest
import tvm
import tvm_ffi
from elftools.elf.elffile import ELFFile
from tvm import relax, tirx
from tvm.target import codegen

import mnv3compile.schedules
import mnv3compile.tvm
from mnv3compile.pipeline import BuildRequest, build
from mnv3compile.relax.pipeline import kernel_names, relax_passes
from mnv3compile.runner import BundleRunner
from mnv3compile.targets.presets import preset
from mnv3compile.targets.toolchains import toolchain_for
from mnv3compile.tvm.build import kernel_census
from mnv3compile.zoo import build_model, build_spec, random_state_dict

SPEC = build_spec("small", 1.0, 96)


def host_target() -> tvm.target.Target:
    """This CPU as a Relax user names it: what ``build --target host`` compiles for (with the CPU
    the build would take from MNV3COMPILE_HOST_CPU when that is set)."""
    cpu = os.environ.get("MNV3COMPILE_HOST_CPU") or codegen.llvm_get_system_cpu()
    return tvm.target.Target({"kind": "llvm", "num-cores": 1, "mcpu": cpu})


def _bundle(tmp_path_factory, quant: str):
    out = tmp_path_factory.mktemp(f"plugin-{quant}") / "bundle"
    return build(BuildRequest(target=preset("host"), output=out, name="small", model=build_model(SPEC), quant=quant))


@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory):
    return _bundle(tmp_path_factory, "int8")


@pytest.fixture(scope="module")
def float_bundle(tmp_path_factory):
    return _bundle(tmp_path_factory, "none")


def _inputs(count: int = 2) -> list[np.ndarray]:
    return [np.random.default_rng(seed).standard_normal(SPEC.input_shape).astype(np.float32) for seed in range(count)]


def _run(executable, x: np.ndarray) -> np.ndarray:
    output = relax.VirtualMachine(executable, tvm.cpu())["main"](tvm.runtime.tensor(x))
    return output.numpy()


def _text_sha256(library) -> str:
    with open(library, "rb") as stream:
        return hashlib.sha256(ELFFile(stream).get_section_by_name(".text").data()).hexdigest()


def test_from_onnx_int8_in_a_user_pipeline_is_the_build_bit_for_bit_and_in_machine_code(int8_bundle, tmp_path):
    """The bundle's QDQ model through TVM's own importer and a Sequential of the user's: a pass of
    their own, one of TVM's, then ours one by one (IntegerLowering, the Relax passes, the
    templates). Same kernels, same reports, same .text, same outputs as the bundle's library."""
    from tvm.relax.frontend.onnx import from_onnx

    bundle = int8_bundle.bundle
    target = host_target()
    quantize_ops = []

    @tvm.transform.module_pass(opt_level=0, name="CountQuantize")  # a pass of the user's own
    def count_quantize(module, _context):
        calls = []
        relax.analysis.post_order_visit(module["main"], lambda e: calls.append(e) if isinstance(e, relax.Call)
                                        and getattr(e.op, "name", "") == "relax.quantize" else None)
        quantize_ops.append(len(calls))
        return module

    reports = mnv3compile.tvm.PipelineReports()
    user_pipeline = tvm.transform.Sequential([
        count_quantize,
        relax.transform.DeadCodeElimination(),  # one of TVM's own
        mnv3compile.tvm.IntegerLowering(report=reports.lowering),
        mnv3compile.tvm.pipeline(target, int8_lowering=None, templates=False),  # our Relax passes, fused kernels
        mnv3compile.schedules.KernelTemplates(target, report=reports.templates),
    ])
    module = user_pipeline(from_onnx(onnx.load(str(bundle / "small.int8.onnx"))))
    executable = tvm.compile(module, target)

    assert quantize_ops and quantize_ops[0] > 50
    report = json.loads((bundle / "build_report.json").read_text())
    assert kernel_names(module) == report["kernels"]
    assert reports.lowering.integer_groups == report["int8"]["by_kind"] and not reports.lowering.fallbacks
    census = kernel_census(module)  # only the input's quantize and the output's dequantize touch float tensors
    assert reports.lowering.integer > 50 and len(census["float_kernels"]) == 2
    assert census == {key: report["int8"][key] for key in census}
    assert {a.kernel: a.variant.name for a in reports.templates.applied} == report["templates"]["templates"]
    # The same machine code: exported with the build's toolchain, the .text sections are identical.
    # Exported before anything runs it: a VirtualMachine made on the Executable changes what
    # export_library writes (3.3 KB more .rodata here, which moves every RIP-relative offset in .text).
    library = tmp_path / "user.so"
    executable.export_library(str(library), fcompile=toolchain_for(preset("host")).fcompile(strip=True))
    assert _text_sha256(library) == _text_sha256(int8_bundle.library)
    runner = BundleRunner(bundle)
    for x in _inputs():
        assert np.array_equal(_run(executable, x), runner.outputs(x)[0])


def _torch_small(hardswish_as_onnx_imports_it: bool):
    """tests/torch_reference.py's MobileNetV3-Small holding the zoo's parameters for SPEC (those of
    ``build_model(SPEC)``), BatchNorm and all; optionally with h-swish written as TVM's ONNX importer
    writes ONNX HardSwish, x * (clip(x + 3, 0, 6) / 6), where torch's decomposition of
    ``aten.hardswish`` gives (x * clip(x + 3, 0, 6)) / 6: the same function, rounded differently."""
    import torch
    from torch import nn

    from torch_reference import reference_model

    class HardSwishAsOnnx(nn.Module):
        def forward(self, x):
            return x * (torch.clamp(x + 3.0, 0.0, 6.0) / 6.0)

    net = reference_model(SPEC)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in random_state_dict(SPEC).items()})
    if hardswish_as_onnx_imports_it:
        for module in list(net.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, nn.Hardswish):
                    setattr(module, name, HardSwishAsOnnx())
    return net


def _from_torch(net, target):
    """(module through our pipeline, its PipelineReports)."""
    import torch
    from tvm.relax.frontend.torch import from_exported_program

    program = torch.export.export(net, (torch.from_numpy(_inputs(1)[0]),))
    module = from_exported_program(program, unwrap_unit_return_tuple=True)
    reports = mnv3compile.tvm.PipelineReports()
    return mnv3compile.tvm.pipeline(target, reports=reports)(module), reports


def test_from_exported_program_torch_is_the_float_build_bit_for_bit(float_bundle):
    """torch -> ``torch.export`` -> TVM's ``from_exported_program`` -> our pipeline -> ``tvm.compile``
    equals ``build --quant none`` of the same zoo model bit for bit. BatchNorm stays in the torch
    model: our pipeline folds it (TVM's FoldBatchnormToConv2D) into the same float32 weights as the
    build's ONNX passes do. Only h-swish has to be written as the ONNX import writes it (see
    ``_torch_small``; with torch's own, test_torch_hardswish_differs_only_by_rounding)."""
    pytest.importorskip("torch")
    target = host_target()
    module, reports = _from_torch(_torch_small(hardswish_as_onnx_imports_it=True), target)
    executable = tvm.compile(module, target)
    runner = BundleRunner(float_bundle.bundle)
    for x in _inputs():
        assert np.array_equal(_run(executable, x), runner.outputs(x)[0])
    # The kernels differ in one place: torch's h-sigmoid (clip) fuses into the SE block's second
    # conv, where the build's ONNX Clip with min/max inputs imports as maximum/minimum, a kernel of
    # its own. Every conv kernel is a templated one, and the templates are the build's.
    report = json.loads((float_bundle.bundle / "build_report.json").read_text())
    variants = {a.kernel: a.variant.name for a in reports.templates.applied}
    assert all(k in variants for k in kernel_names(module) if "conv2d" in k)
    assert set(variants.values()) <= set(report["templates"]["templates"].values())



@pytest.mark.slow
def test_torch_hardswish_differs_only_by_rounding(float_bundle):
    """The same with torch's own h-swish: (x * clip(x + 3, 0, 6)) / 6 rounds differently from the
    build's x * (clip(x + 3, 0, 6) / 6): almost every output differs, by float32 rounding only
    (1.6e-6 measured, outputs of magnitude ~1)."""
    pytest.importorskip("torch")
    target = host_target()
    module, _ = _from_torch(_torch_small(hardswish_as_onnx_imports_it=False), target)
    executable = tvm.compile(module, target)
    x = _inputs(1)[0]
    ours, built = _run(executable, x), BundleRunner(float_bundle.bundle).outputs(x)[0]
    assert not np.array_equal(ours, built)
    assert np.abs(ours - built).max() <= 1e-5 * np.abs(built).max()


def test_the_passes_are_tvm_passes_in_the_builds_order():
    target = host_target()
    passes = {"IntegerLowering": mnv3compile.tvm.IntegerLowering(),
              "KernelTemplates": mnv3compile.schedules.KernelTemplates(target),
              "TuningDatabase": mnv3compile.schedules.TuningDatabase(_memory_database(), target)}
    for name, made in passes.items():
        assert isinstance(made, tvm.transform.Pass) and made.info.name == name
    assert mnv3compile.tvm.KernelTemplates is mnv3compile.schedules.KernelTemplates
    assert isinstance(mnv3compile.tvm.pipeline(target), tvm.transform.Sequential)
    names = [p.info.name for p in mnv3compile.tvm.pipeline_passes(target)]
    assert names == ["IntegerLowering", *(name for name, _ in relax_passes()), "KernelTemplates"]
    fixed_point = [p.info.name for p in mnv3compile.tvm.pipeline_passes(target, "fixed-point", templates=False)]
    assert fixed_point == ["IntegerLowering", *(name for name, _ in relax_passes(integer_only=True))]
    assert mnv3compile.tvm.pipeline_passes(target, None)[0].info.name == "FoldBatchnormToConv2D"
    with pytest.raises(ValueError, match="int8_lowering"):
        mnv3compile.tvm.pipeline(target, "int4")


def _memory_database():
    from tvm.s_tir import meta_schedule as ms

    return ms.database.MemoryDatabase()


def _conv_module(data_layout: str = "NCHW") -> tvm.IRModule:
    """A float32 conv + bias + ReLU, as an importer gives it (NCHW, weights as constants)."""
    rng = np.random.default_rng(0)
    x = relax.Var("x", relax.TensorType((1, 16, 12, 12), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            conv = bb.emit(relax.op.nn.conv2d(x, relax.const(rng.standard_normal((32, 16, 1, 1)).astype(np.float32))))
            biased = bb.emit(relax.op.add(conv, relax.const(rng.standard_normal((1, 32, 1, 1)).astype(np.float32))))
            out = bb.emit_output(relax.op.nn.relu(biased))
        bb.emit_func_output(out)
    return bb.get()


def test_integer_lowering_leaves_a_module_without_quantize_ops_as_it_was():
    before = _conv_module()
    report = mnv3compile.tvm.PipelineReports().lowering
    after = mnv3compile.tvm.IntegerLowering(report=report)(before)
    tvm.ir.assert_structural_equal(after, before)
    assert after.same_as(before)  # not even rebuilt
    assert report.integer == 0 and not report.fallbacks


def test_integer_lowering_lowers_a_qdq_group_and_reports_it():
    """The other side of the test above: with R.quantize / R.dequantize around the conv (as
    from_onnx imports a QDQ model) the pass does change the module."""
    rng = np.random.default_rng(0)
    x = relax.Var("x", relax.TensorType((1, 16, 12, 12), "float32"))
    scale, zero = relax.const(0.05, "float32"), relax.const(0, "int8")
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            q = bb.emit(relax.op.quantize(x, scale, zero, axis=1, out_dtype="int8"))
            dq = bb.emit(relax.op.dequantize(q, scale, zero, axis=1, out_dtype="float32"))
            weight = relax.op.dequantize(relax.const(rng.integers(-100, 100, (32, 16, 1, 1)).astype(np.int8)),
                                         relax.const(0.01, "float32"), zero, axis=0, out_dtype="float32")
            conv = bb.emit(relax.op.nn.conv2d(dq, bb.emit(weight)))
            out = bb.emit_output(relax.op.dequantize(
                bb.emit(relax.op.quantize(bb.emit(relax.op.nn.relu(conv)), scale, zero, axis=1, out_dtype="int8")),
                scale, zero, axis=1, out_dtype="float32"))
        bb.emit_func_output(out)
    report = mnv3compile.tvm.PipelineReports().lowering
    lowered = mnv3compile.tvm.IntegerLowering(report=report)(bb.get())
    assert report.integer_groups == {"conv2d": 1} and not report.fallbacks
    convs = []
    relax.analysis.post_order_visit(lowered["main"], lambda e: convs.append(e) if isinstance(e, relax.Call)
                                    and getattr(e.op, "name", "") == "relax.nn.conv2d" else None)
    assert [str(c.args[0].ty.dtype) for c in convs] == ["int8"]


def test_kernel_templates_schedule_only_what_a_template_takes():
    """Through our Relax passes (channels-last, fused), the conv kernel gets a template and TVM's
    mark; the NCHW <-> NHWC transposes of input and output (no template takes them) and a kernel already marked
    scheduled (as by a tuning database or DLight) come back unchanged, reported as such."""
    target = host_target()
    fused = mnv3compile.tvm.pipeline(target, templates=False)(_conv_module())
    kernels = {gv.name_hint: func for gv, func in fused.functions.items() if isinstance(func, tirx.PrimFunc)}
    conv = next(name for name in kernels if "conv2d" in name)
    transposes = [name for name in kernels if name.startswith("transpose")]  # NCHW in, NCHW out
    report = mnv3compile.tvm.PipelineReports().templates
    scheduled = mnv3compile.schedules.KernelTemplates(target, report=report)(fused)
    assert [a.kernel for a in report.applied] == [conv] and report.default == transposes and not report.tuned
    assert report.applied[0].variant.name.startswith("conv1x1_nhwc_float32")
    assert int(scheduled[conv].attrs["tirx.is_scheduled"]) == 1
    assert not tvm_ffi.structural_equal(scheduled[conv].without_attr("tirx.is_scheduled"), kernels[conv])
    for transpose in transposes:
        tvm.ir.assert_structural_equal(scheduled[transpose], kernels[transpose])
    tvm.ir.assert_structural_equal(scheduled["main"], fused["main"])

    marked = fused.clone()
    marked.update_func(marked.get_global_var(conv), kernels[conv].with_attr("tirx.is_scheduled", True))
    again = mnv3compile.schedules.KernelTemplates(target, report=report)(marked)
    assert not report.applied and report.tuned == [conv]
    tvm.ir.assert_structural_equal(again[conv], marked[conv])


def test_kernel_templates_need_a_target():
    fused = mnv3compile.tvm.pipeline(host_target(), templates=False)(_conv_module())
    with pytest.raises(Exception, match="needs a target"):
        mnv3compile.schedules.KernelTemplates()(fused)
    with host_target():
        mnv3compile.schedules.KernelTemplates()(fused)
