"""``mnv3compile build``: the stages, in order, from a model to a deployable bundle.

    source (zoo model or ONNX file) -> optimize (passes) -> quantize (int8, optional)
        -> TVM (import, Relax pipeline, codegen, link) -> bundle (library, manifest, models, report)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from importlib.metadata import version
from pathlib import Path
from typing import Self

import onnx

from mnv3compile.app_files import write_app_files
from mnv3compile.bundle import MANIFEST_VERSION, BundleWriter
from mnv3compile.errors import UserError
from mnv3compile.quant import QuantizeSettings
from mnv3compile.quant.calibration import CalibrationData
from mnv3compile.targets.presets import TargetPreset

Stage = Callable[[str], None]  # called with each stage's name as it starts


@dataclass(kw_only=True)
class BuildRequest:
    target: TargetPreset
    output: Path
    name: str
    model: onnx.ModelProto
    quant: str = "none"  # "none" or "int8"
    quant_settings: QuantizeSettings = field(default_factory=QuantizeSettings)  # how int8 is calibrated, rounded
    calib: CalibrationData | None = None  # a source ("synthetic:16", folder, .npz) or tensors [default: synthetic]
    preprocess: str | None = None
    labels: list[str] | None = None
    source: dict = field(default_factory=dict)
    database: Path | None = None  # MetaSchedule JSON database to take tuned schedules from
    int8_lowering: str = "integer"  # "integer" kernels, or "fake" (dequantize -> float -> quantize)
    debug: bool = False  # keep symbols and debug information in the library
    schedule: str = "templates"  # "templates" (schedules/kernels/) or TVM's "default" schedules
    threads: int = 0  # the threads the app runs it on: 1 builds serial kernels (no fork-join); else parallel


@dataclass(frozen=True, kw_only=True)
class _Section:
    """One section of build_report.json, typed: the fields a reader needs, and the whole section as
    the library reported it (``json``, written as it is)."""

    json: dict = field(repr=False, compare=False)

    @classmethod
    def of(cls, section: dict | None) -> Self | None:
        if section is None:
            return None
        return cls(json=section, **{f.name: section[f.name] for f in fields(cls) if f.name != "json"})


@dataclass(frozen=True, kw_only=True)
class TuningSummary(_Section):
    """What a tuning database contributed ("tuning"; schedules/tuning/database.py)."""

    database: str
    applied: int  # kernels that got a tuned schedule
    kernels: int
    matched_up_to_constants: int  # applied from the record of a kernel with other constants (scales, ...)


@dataclass(frozen=True, kw_only=True)
class Int8Summary(_Section):
    """What the integer lowering did ("int8"; mnv3compile/tvm/build.py)."""

    requantize: str  # "float" (in the epilogue's registers) or "fixed-point"
    integer_groups: int
    fallback_groups: int  # left dequantize -> float -> quantize
    integer_kernels: int  # kernels with integer tensors only
    float_kernels: list[str]  # the others


@dataclass(frozen=True, kw_only=True)
class TemplateSummary(_Section):
    """Which kernels a template scheduled ("templates"; schedules/kernels/dispatch.py)."""

    templated: int
    kernels: int
    templates: dict[str, str]  # kernel -> template
    default_schedule: list[str]  # kernels that kept TVM's default schedule
    tuned: list[str]  # kernels a tuning database scheduled


@dataclass(frozen=True, kw_only=True)
class BuildReport:
    """What a build made and how: the bundle's build_report.json (``to_json``)."""

    stages_seconds: dict[str, float]
    kernels: list[str]
    toolchain: str
    isa: str  # the ISA table's row the kernels were made for, and why
    tuning: TuningSummary | None
    int8: Int8Summary | None
    templates: TemplateSummary | None  # None: TVM's default schedules
    notes: list[str]

    @property
    def kernel_count(self) -> int:
        return len(self.kernels)

    @classmethod
    def from_json(cls, payload: dict) -> Self:
        """A bundle's build_report.json, read back."""
        return cls(stages_seconds=payload["stages_seconds"], kernels=payload["kernels"], toolchain=payload["toolchain"],
                   isa=payload.get("isa", ""), tuning=TuningSummary.of(payload.get("tuning")),
                   int8=Int8Summary.of(payload.get("int8")), templates=TemplateSummary.of(payload.get("templates")),
                   notes=payload.get("notes", []))

    def to_json(self) -> dict:
        return {"stages_seconds": self.stages_seconds, "kernels": self.kernels, "kernel_count": self.kernel_count,
                "toolchain": self.toolchain, "isa": self.isa, "tuning": _json(self.tuning), "int8": _json(self.int8),
                "templates": _json(self.templates), "notes": self.notes}


def _json(section: _Section | None) -> dict | None:
    return None if section is None else section.json


@dataclass
class BuildResult:
    bundle: Path
    library: Path
    manifest: dict
    timings: dict[str, float]
    notes: list[str]
    report: BuildReport


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
                                                     request.schedule, request.threads))
        notes += compiled.notes
        initializers = {i.name for i in deployed.graph.initializer}
        if request.labels:
            (bundle.path("labels.txt")).write_text("\n".join(request.labels) + "\n")
        report = BuildReport(stages_seconds=timings, kernels=compiled.kernels, toolchain=compiled.toolchain,
                             isa=compiled.isa, tuning=TuningSummary.of(compiled.tuning),
                             int8=Int8Summary.of(compiled.int8), templates=TemplateSummary.of(compiled.templates),
                             notes=notes)
        bundle.write_json("build_report.json", report.to_json())
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
            "threads": "serial kernels (built with --threads 1)" if request.threads == 1 else "parallel kernels",
            "target": {"preset": request.target.name, "description": request.target.description,
                       "tvm": request.target.tvm_target(), "toolchain": compiled.toolchain},
            "source": request.source,
            "versions": _versions(),
            "report": "build_report.json",
            # kernel -> template, for 'mnv3compile profile' (null: TVM's default schedules)
            "templates": report.templates.templates if report.templates else None,
        }
        manifest["app_files"] = write_app_files(bundle.folder, manifest)  # C header + CMake snippet
        manifest["sha256"] = bundle.checksums()
        bundle.write_json(f"{request.name}.json", manifest)
        final = bundle.commit()
    return BuildResult(final, final / library_name, manifest, timings, notes, report)


def _preprocess_json(name: str | None) -> dict | None:
    if name is None:
        return None
    from mnv3compile.quant.preprocess import preset

    return preset(name).to_json()


def _quantize(request: BuildRequest, model: onnx.ModelProto, notes: list[str]):
    from mnv3compile.quant import quantize  # looked up at each call (tests wrap it)
    from mnv3compile.quant.calibration import as_samples, describe_source
    from mnv3compile.quant.preprocess import preset

    shape = tuple(d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim)
    calib = "synthetic:16" if request.calib is None else request.calib
    if request.calib is None:
        notes.append("int8 calibrated on 16 synthetic inputs; give real data with --calib DIR --preprocess P "
                     "for real accuracy")
    spec = preset(request.preprocess) if request.preprocess else None
    result = quantize(model, as_samples(calib, shape, spec), request.quant_settings, optimized=True)
    return result.model, result.sidecar_json({"source": describe_source(calib)})
