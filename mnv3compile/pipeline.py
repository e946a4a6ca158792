"""``mnv3compile build``: the stages, in order, from a model to a deployable bundle.

    source (zoo model or ONNX file) -> optimize (passes) -> quantize (int8, optional)
        -> TVM (import, Relax pipeline, codegen, link) -> bundle (library, manifest, models, report)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import numpy as np
import onnx

from mnv3compile.app_files import write_app_files
from mnv3compile.bundle import MANIFEST_VERSION, BundleWriter
from mnv3compile.errors import UserError
from mnv3compile.targets.presets import TargetPreset

Stage = Callable[[str], None]  # called with each stage's name as it starts


@dataclass
class BuildRequest:
    target: TargetPreset
    output: Path
    name: str
    model: onnx.ModelProto
    quant: str = "none"  # "none" or "int8"
    calib: str | None = None
    preprocess: str | None = None
    labels: list[str] | None = None
    source: dict = field(default_factory=dict)
    database: Path | None = None  # MetaSchedule JSON database to take tuned schedules from
    int8_lowering: str = "integer"  # "integer" kernels, or "fake" (dequantize -> float -> quantize)
    debug: bool = False  # keep symbols and debug information in the library
    schedule: str = "templates"  # "templates" (schedules/kernels/) or TVM's "default" schedules
    weight_bits: int = 8  # int8 weights' range: 8 (-127..127) or 7 (-63..63, for AVX2's vpmaddubsw)
    quant_method: str = "auto"  # activation ranges (quant/observers.py METHODS)
    bias_correction: bool = True
    adaround: bool = False
    keep_float_output: bool = False  # a final Softmax/Sigmoid in float (quant/plan.py FLOAT_OUTPUT_OPS)


@dataclass
class BuildResult:
    bundle: Path
    library: Path
    manifest: dict
    timings: dict[str, float]
    notes: list[str]


def _tensor_info(values, initializers: set[str]) -> list[dict]:
    infos = []
    for value in values:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        infos.append({"name": value.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name,
                      "shape": [d.dim_value if d.HasField("dim_value") else d.dim_param for d in tensor.shape.dim]})
    return infos


def _with_shapes(infos: list[dict], shapes: list[list[int] | None] | None) -> list[dict]:
    """The outputs as the library returns them: an ONNX graph may declare a dimension -1 or by name
    (the C runtime and the generated header need every size)."""
    for info, shape in zip(infos, shapes or []):
        if shape is not None:
            info["shape"] = shape
    return infos


def _versions() -> dict[str, str]:
    found = {}
    for package in ("mnv3compile", "apache-tvm", "apache-tvm-ffi", "onnx", "onnxruntime", "numpy"):
        try:
            found[package] = version(package)
        except Exception:  # a package run from a source tree has no metadata
            found[package] = "unknown"
    return found


def deployable_model(request: BuildRequest, notes: list[str], timed: Callable = lambda name, work: work()):
    """The first stages, shared by ``build`` and ``tune``: (optimized model, the model TVM compiles
    (optimized, or quantized to int8 QDQ), the quantization sidecar or None)."""
    from mnv3compile.passes.optimize import optimize
    from mnv3compile.passes.registry import PIPELINE

    if request.quant not in ("none", "int8"):
        raise UserError(f"unknown quantization {request.quant!r}; choose none or int8")
    optimized, _ = timed("optimize", lambda: optimize(request.model, PIPELINE))
    if request.quant == "none":
        return optimized, optimized, None
    deployed, sidecar = timed("quantize", lambda: _quantize(request, optimized, notes))
    return optimized, deployed, sidecar


def build(request: BuildRequest, on_stage: Stage = lambda name: None) -> BuildResult:
    from mnv3compile.tvm.build import compile_onnx

    timings: dict[str, float] = {}
    notes: list[str] = []

    def timed(name: str, work: Callable):
        on_stage(name)
        start = time.perf_counter()
        result = work()
        timings[name] = round(time.perf_counter() - start, 3)
        return result

    with BundleWriter(request.output) as bundle:
        optimized, deployed, quant_sidecar = deployable_model(request, notes, timed)
        onnx_name = f"{request.name}.{'int8' if request.quant == 'int8' else 'opt'}.onnx"
        onnx.save(deployed, bundle.path(onnx_name))
        float_name = f"{request.name}.opt.onnx"
        if request.quant == "int8":  # the float model too: what int8 is compared with ('bench')
            onnx.save(optimized, bundle.path(float_name))
        if quant_sidecar is not None:
            bundle.write_json(f"{request.name}.quant.json", quant_sidecar)
        library_name = f"lib{request.name}.so"
        compiled = timed("tvm", lambda: compile_onnx(deployed, request.target, bundle.path(library_name),
                                                     request.database, request.int8_lowering, request.debug,
                                                     request.schedule))
        notes += compiled.notes
        initializers = {i.name for i in deployed.graph.initializer}
        if request.labels:
            (bundle.path("labels.txt")).write_text("\n".join(request.labels) + "\n")
        report = {"stages_seconds": timings, "kernels": compiled.kernels, "kernel_count": len(compiled.kernels),
                  "toolchain": compiled.toolchain, "isa": compiled.isa, "tuning": compiled.tuning, "int8": compiled.int8,
                  "templates": compiled.templates, "notes": notes}
        bundle.write_json("build_report.json", report)
        manifest = {
            "mnv3compile_bundle": MANIFEST_VERSION,
            "name": request.name,
            "library": library_name,
            "model": onnx_name,
            "float_model": float_name,
            "inputs": _tensor_info(deployed.graph.input, initializers),
            "outputs": _with_shapes(_tensor_info(deployed.graph.output, initializers), compiled.output_shapes),
            "preprocess": _preprocess_json(request.preprocess),
            "labels": "labels.txt" if request.labels else None,
            "quantization": ({"scheme": "int8 QDQ", "lowering": request.int8_lowering,
                              "parameters": f"{request.name}.quant.json",
                              "calibration": quant_sidecar["calibration"]} if quant_sidecar else None),
            "target": {"preset": request.target.name, "description": request.target.description,
                       "tvm": request.target.tvm_target(), "toolchain": compiled.toolchain},
            "source": request.source,
            "versions": _versions(),
            "report": "build_report.json",
            # kernel -> template, for 'mnv3compile profile' (null: TVM's default schedules)
            "templates": compiled.templates["templates"] if compiled.templates else None,
        }
        manifest["app_files"] = write_app_files(bundle.folder, manifest)  # C header + CMake snippet
        manifest["sha256"] = bundle.checksums()
        bundle.write_json(f"{request.name}.json", manifest)
        final = bundle.commit()
    return BuildResult(final, final / library_name, manifest, timings, notes)


def _preprocess_json(name: str | None) -> dict | None:
    if name is None:
        return None
    from mnv3compile.quant.preprocess import preset

    return preset(name).to_json()


def _quantize(request: BuildRequest, model: onnx.ModelProto, notes: list[str]):
    from mnv3compile.quant import QuantizeSettings, quantize
    from mnv3compile.quant.calibration import load_samples
    from mnv3compile.quant.preprocess import preset

    shape = tuple(d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim)
    calib = request.calib or "synthetic:16"
    if request.calib is None:
        notes.append("int8 calibrated on 16 synthetic inputs; give real data with --calib DIR --preprocess P "
                     "for real accuracy")
    spec = preset(request.preprocess) if request.preprocess else None
    result = quantize(model, load_samples(calib, shape, spec), QuantizeSettings(
        request.quant_method, weight_bits=request.weight_bits, bias_correction=request.bias_correction,
        adaround=request.adaround, keep_float_output=request.keep_float_output), optimized=True)
    return result.model, json.loads(json.dumps(result.sidecar({"source": calib}), default=_plain))


def _plain(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(type(value).__name__)
