"""The public Python API: what every ``mnv3compile`` command does, as functions.

``import mnv3compile`` exposes these names (``mnv3compile.__all__``, the one list of what is
public); the command line is a thin layer over them that parses options and prints. Errors are
``mnv3compile.UserError`` (and its subclasses): bad input, explained in the message.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import onnx

from mnv3compile.bundle import Bundle
from mnv3compile.errors import UserError
from mnv3compile.quant import QuantizedModel, QuantizeSettings
from mnv3compile.quant.calibration import CalibrationData

ModelLike = str | os.PathLike | onnx.ModelProto  # an ONNX file, or a model in memory
# input name -> N, C, H, W (fixes dynamic dimensions); the name None: the model's only input
InputShapes = Mapping[str | None, Sequence[int]]
Note = Callable[[str], None]  # called with a message to show now (which database a build takes, ...)


def export(model: str = "large", *, width: float = 1.0, resolution: int | str | tuple[int, int] | None = None,
           classes: int | None = None, weights: str | os.PathLike | None = None, seed: int = 0,
           reduced_tail: bool | None = None) -> onnx.ModelProto:
    """A zoo MobileNetV3 as an ONNX model (opset 17), named as torchvision names its modules.

    ``model`` is one of ``ZOO_MODELS``; ``resolution`` H or (H, W) or "HxW" [224; 320 for
    SSDLite]; ``weights`` a torchvision-format state dict (.npz, .safetensors, .pth), else
    seeded random weights with realistic BatchNorm statistics.

    >>> model = export("small", width=0.75, resolution=160)
    >>> [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    [1, 3, 160, 160]
    """
    from mnv3compile import zoo

    spec = zoo.build_spec(model, width, resolution, classes, reduced_tail)
    return zoo.build_model(spec, weights=Path(weights) if weights is not None else None, seed=seed)


def load_onnx(path: str | os.PathLike) -> onnx.ModelProto:
    """An ONNX file, checked (structure, types, shapes, initializers) with one-line errors."""
    from mnv3compile.onnx_io import load_onnx as load

    return load(path)


def _model(model: ModelLike) -> onnx.ModelProto:
    if not isinstance(model, (str, os.PathLike)):
        from mnv3compile.onnx_io import check_model

        return check_model(model, "the model given")
    return load_onnx(model)


def _with_shapes(model: onnx.ModelProto, input_shapes: InputShapes | None) -> onnx.ModelProto:
    if not input_shapes:
        return model
    from mnv3compile.analysis import with_static_inputs

    return with_static_inputs(model, {k: list(v) for k, v in input_shapes.items()})[0]


def analyze(model: ModelLike, *, input_shapes: InputShapes | None = None):
    """Per-layer op, output shape, MAdds and parameters, with totals (``analysis.ModelStats``)."""
    from mnv3compile.analysis import analyze as run

    return run(_model(model), {k: list(v) for k, v in input_shapes.items()} if input_shapes else None)


def optimize(model: ModelLike, *, passes: Sequence[str] | None = None, verify: bool = False,
             tolerance: float = 1e-4, input_shapes: InputShapes | None = None) -> onnx.ModelProto:
    """``model`` in mnv3compile's canonical form (no BatchNorm, one h-sigmoid spelling, HardSwish,
    Conv + bias + activation annotated as fused units); the whole pass list or the named passes
    (``PASSES``). ``verify`` runs onnxruntime before and after each pass and raises
    ``UserError`` for a pass that moves an output more than ``tolerance`` (relative).

    >>> model = export("small", resolution=96)
    >>> sum(node.op_type == "BatchNormalization" for node in optimize(model).graph.node)
    0
    >>> [node.op_type for node in optimize(model, passes=["fold_batchnorm"]).graph.node][:3]
    ['Conv', 'HardSwish', 'Conv']
    """
    return optimize_with_report(model, passes=passes, verify=verify, tolerance=tolerance,
                                input_shapes=input_shapes)[0]


def optimize_with_report(model: ModelLike, *, passes: Sequence[str] | None = None, verify: bool = False,
                         tolerance: float = 1e-4, input_shapes: InputShapes | None = None,
                         on_pass: Callable[[str], None] | None = None):
    """``optimize``, and what each pass did: (model, ``passes.optimize.OptimizeReport``)."""
    from mnv3compile.passes.optimize import PassVerificationError, optimize as run
    from mnv3compile.passes.registry import select

    model = _with_shapes(_model(model), input_shapes)
    try:
        return run(model, select(list(passes) if passes else None), check_numerics=verify, tolerance=tolerance,
                   on_pass=None if on_pass is None else (lambda p: on_pass(p.name)))
    except PassVerificationError as exc:
        raise UserError(str(exc)) from exc


def explain(model: ModelLike, pass_name: str, *, passes: Sequence[str] | None = None,
            input_shapes: InputShapes | None = None) -> list[str]:
    """Why each rewrite rule of ``pass_name`` matches or not, on ``model`` as that pass sees it in
    the pass list (onnxscript's matching tracer); changes nothing."""
    from mnv3compile.passes.optimize import explain as run
    from mnv3compile.passes.registry import select

    return run(_with_shapes(_model(model), input_shapes), select(list(passes) if passes else None), pass_name)


def _single_input_shape(model: onnx.ModelProto) -> tuple[int, ...]:
    initializer_names = {i.name for i in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializer_names]
    if len(inputs) != 1:
        raise UserError(f"the quantizer takes one-input models; this one has {len(inputs)}")
    return tuple(d.dim_value for d in inputs[0].type.tensor_type.shape.dim)


def calibration_shapes(model: onnx.ModelProto, data: CalibrationData | None) -> dict[str, list[int]] | None:
    """A dynamic input's shape, taken from the samples of a .npy/.npz calibration file."""
    from mnv3compile.analysis import dynamic_input_shape
    from mnv3compile.quant.calibration import tensor_file_shape

    if not isinstance(data, (str, Path)):
        return None
    return dynamic_input_shape(model, tensor_file_shape(data))


def quantize(model: ModelLike, calibration: CalibrationData, *, preprocess: str | None = None,
             settings: QuantizeSettings | None = None, input_shapes: InputShapes | None = None,
             limit: int | None = None, progress=None, on_note: Note | None = None) -> QuantizedModel:
    """Post-training int8 quantization into a QDQ model with no float islands.

    ``calibration``: a folder of images (needs ``preprocess``, one of ``PREPROCESSING``), a
    .npy/.npz file, "synthetic[:N]", or tensors (an (N, C, H, W) array or a list of them).
    The model is put in canonical form first. Returns a ``QuantizedModel``: ``.model`` (QDQ),
    ``.float_model``, ``.record`` (scales), ``.evaluate(samples)``, ``.save(path)``.

    >>> int8 = quantize(export("small", resolution=96), "synthetic:4")
    >>> sorted({node.op_type for node in int8.model.graph.node} & {"QuantizeLinear", "DequantizeLinear"})
    ['DequantizeLinear', 'QuantizeLinear']
    >>> import numpy as np
    >>> quantize(export("small", resolution=96), np.zeros((2, 3, 64, 64), np.float32))
    Traceback (most recent call last):
    mnv3compile.errors.UserError: calibration tensor 0: tensor of shape (2, 3, 64, 64) does not fit the model input (1, 3, 96, 96)
    """
    from mnv3compile.quant import quantize as run
    from mnv3compile.quant.calibration import as_samples, check_source
    from mnv3compile.quant.preprocess import preset

    if isinstance(calibration, (str, Path)):
        check_source(calibration)
    model = _model(model)
    shapes = dict(input_shapes) if input_shapes else calibration_shapes(model, calibration)
    if shapes and not input_shapes and on_note is not None:
        for name, shape in shapes.items():
            on_note(f"input '{name}' is {tuple(shape)}, the shape of the calibration data's samples")
    model = _with_shapes(model, shapes)
    spec = preset(preprocess) if preprocess else None
    samples = as_samples(calibration, _single_input_shape(model), spec, limit)
    return run(model, samples, settings or QuantizeSettings(), progress)


def evaluation_samples(quantized: QuantizedModel, data: CalibrationData, preprocess: str | None = None,
                       limit: int | None = None):
    """``data`` (as ``quantize`` takes it) as samples for ``QuantizedModel.evaluate``."""
    from mnv3compile.quant.calibration import as_samples, check_source
    from mnv3compile.quant.preprocess import preset

    if isinstance(data, (str, Path)):
        check_source(data)
    return as_samples(data, _single_input_shape(quantized.float_model), preset(preprocess) if preprocess else None,
                      limit)


def load_build_model(model: ModelLike = "large", *, width: float = 1.0,
                     resolution: int | str | tuple[int, int] | None = None,
                     weights: str | os.PathLike | None = None, input_shapes: InputShapes | None = None,
                     calibration: CalibrationData | None = None, on_status: Note = lambda text: None):
    """A zoo name (``ZOO_MODELS``), an ONNX file or an ONNX model, with dynamic inputs fixed (by
    ``input_shapes``, else from a .npy/.npz ``calibration``, else 1, said in a note), as
    ``model_source.LoadedModel`` (``key`` names its tuning database, ``folder_name`` its bundle)."""
    from mnv3compile.model_source import load_model
    from mnv3compile.zoo.spec import MODEL_NAMES

    zoo_name = model if isinstance(model, str) and model in MODEL_NAMES else None
    if zoo_name is None and isinstance(model, str) and not model.lower().endswith(".onnx") \
            and not Path(model).exists():
        raise UserError(f"unknown model {model!r}: give a zoo model ({', '.join(MODEL_NAMES)}) or an ONNX file")
    named = isinstance(model, (str, os.PathLike))
    onnx_path = Path(model) if named and zoo_name is None else None
    if not named and not isinstance(model, onnx.ModelProto):
        from mnv3compile.onnx_io import check_model

        check_model(model, "the model given")  # says what it is instead
    in_memory = None if named else model
    if zoo_name is None and (width != 1.0 or resolution is not None or weights is not None):
        raise UserError("width, resolution and weights choose a zoo model; an ONNX model has its own")
    notes: list[str] = []
    shapes = None
    if input_shapes:
        if zoo_name is not None:
            raise UserError("--input-shape fixes an ONNX model's dynamic inputs; a zoo model has none")
        shapes = {k: list(v) for k, v in input_shapes.items()}
    elif zoo_name is None and calibration is not None:
        shapes = calibration_shapes(in_memory if in_memory is not None else load_onnx(onnx_path), calibration)
        notes += [f"input '{name}' is {tuple(shape)}, the shape of the calibration data's samples"
                  for name, shape in (shapes or {}).items()]
    loaded = load_model(zoo_name, onnx_path, width, resolution, Path(weights) if weights else None, shapes,
                        on_status=on_status, in_memory=in_memory)
    loaded.notes[:0] = notes
    return loaded


def check_build_inputs(labels: str | os.PathLike | Sequence[str] | None, calibration: CalibrationData | None,
                       database: str | os.PathLike | None, output: str | os.PathLike | None,
                       tuned_for: dict | None = None) -> None:
    """Every file a build will read, checked before any work starts (one error line, not a
    traceback at the stage that reads it)."""
    from mnv3compile.quant.calibration import check_source
    from mnv3compile.schedules.tuning.database import check_database

    if isinstance(labels, (str, os.PathLike)):
        path = Path(labels)
        if not path.is_file():
            raise UserError(f"--labels {path}: no such file")
        try:
            if not path.read_text().strip():
                raise UserError(f"--labels {path}: the file is empty (one class name per line)")
        except UnicodeDecodeError:
            raise UserError(f"--labels {path}: not a text file (one class name per line)") from None
    if isinstance(calibration, (str, Path)):
        check_source(calibration)
    if database is not None:
        check_database(Path(database), tuned_for)
    if output is not None and Path(output).exists() and not Path(output).is_dir():
        raise UserError(f"-o {output}: exists and is not a folder")


def _labels(labels: str | os.PathLike | Sequence[str] | None) -> list[str] | None:
    if labels is None:
        return None
    if isinstance(labels, (str, os.PathLike)):
        return Path(labels).read_text().splitlines()
    return [str(label) for label in labels]


def find_database(target, model_key: str, tuned_for: dict, on_note: Note) -> Path | None:
    """The database a build applies when none is named: one 'mnv3compile tune' wrote for this model
    and target, else one shipped for the target's ISA (schedules/tuning/shipped.py); said which."""
    from mnv3compile.schedules.kernels.isa import isa_of
    from mnv3compile.schedules.tuning.shipped import find_database as find
    from mnv3compile.tvm.build import tvm_target

    isa = isa_of(tvm_target(target)).name
    found = find(target.name, isa, model_key)
    if found is None:
        return None
    folder, shipped = found
    if shipped is None:
        check_build_inputs(None, None, folder, None, tuned_for)
        on_note(f"tuning database: {folder} (from 'mnv3compile tune'; --no-db ignores it)")
    else:
        how = "arm64 instruction counts under qemu" if shipped.get("measure") == "instructions" else "timings"
        on_note(f"tuning database: shipped for {isa} {model_key} (tuned on {shipped.get('target')} by {how}; "
                "'mnv3compile tune' on your device replaces it, --no-db ignores it)")
    return folder


def build(model: ModelLike = "large", *, target: str = "host", quant: Literal["none", "int8"] = "int8",
          calibration: CalibrationData | None = None, preprocess: str | None = None,
          labels: str | os.PathLike | Sequence[str] | None = None, output: str | os.PathLike | None = None,
          database: str | os.PathLike | Literal["auto"] | None = "auto", settings: QuantizeSettings | None = None,
          width: float = 1.0, resolution: int | str | tuple[int, int] | None = None,
          weights: str | os.PathLike | None = None, input_shapes: InputShapes | None = None,
          int8_lowering: str = "integer", schedule: str = "templates", debug: bool = False,
          on_stage: Note = lambda name: None, on_note: Note = lambda text: None, threads: int = 0) -> Bundle:
    """Compile a MobileNetV3 into a deployable bundle for ``target`` (a name from ``target_presets()``).

    ``model``: a zoo name (``ZOO_MODELS``; ``width``, ``resolution``, ``weights`` choose the
    variant), an ONNX file or an ``onnx.ModelProto``. ``quant="int8"`` calibrates on
    ``calibration`` (as ``quantize`` takes it; default 16 synthetic inputs, with a note) with
    ``settings``. ``database``: "auto" takes the tuning database 'tune' wrote (or one shipped for
    the target), a folder names one, None uses none. The bundle is written at once to ``output``
    [build/<model>-<quant>-<target>]: a failed build leaves nothing. ``threads``: 1 builds serial
    kernels, for an app that runs it on one thread (no fork-join cost); otherwise every kernel with
    work enough splits its outer loops over the runtime's threads (chosen when it runs). Returns
    the ``Bundle``, whose ``notes`` say what the build could not do as asked."""
    from mnv3compile.pipeline import BuildRequest, build as run_build
    from mnv3compile.schedules.tuning.database import identity
    from mnv3compile.targets.presets import preset as target_preset
    from mnv3compile.tvm.build import tvm_target

    if quant not in ("none", "int8"):
        raise UserError(f"unknown quantization {quant!r}; choose none or int8")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise UserError(f"threads {threads!r}: 1 (serial kernels) or 0 (parallel kernels, any count at run time)")
    preset = target_preset(target)
    tuned_for = identity(preset.name, tvm_target(preset))
    calibration = calibration if quant == "int8" else None
    named_database = None if database in ("auto", None) else Path(database)
    check_build_inputs(labels, calibration, named_database, output, tuned_for)
    loaded = load_build_model(model, width=width, resolution=resolution, weights=weights, input_shapes=input_shapes,
                              calibration=calibration, on_status=on_stage)
    settings = settings or QuantizeSettings()
    if database == "auto":
        named_database = find_database(preset, loaded.key(quant, int8_lowering, settings.weight_bits),
                                       tuned_for, on_note)
    output = Path(output) if output is not None else Path("build") / f"{loaded.folder_name}-{quant}-{preset.name}"
    request = BuildRequest(target=preset, output=output, name=loaded.name, model=loaded.model, quant=quant,
                           quant_settings=settings, calib=calibration, preprocess=preprocess, labels=_labels(labels),
                           source=loaded.source, database=named_database, int8_lowering=int8_lowering, debug=debug,
                           schedule=schedule, threads=threads)
    result = run_build(request, on_stage=on_stage)
    return Bundle(result.bundle, notes=[*loaded.notes, *result.notes], timings=result.timings)


def bench(bundles: Sequence[Bundle | str | os.PathLike], *, vs_onnxruntime: bool = False, threads: int = 1,
          runs: int = 100, max_seconds: float = 120, progress: Callable[[int, int], None] | None = None,
          affinity: str = "big", cold_starts: int = 1, on_status: Note = lambda text: None):
    """Latency of host bundles and, with ``vs_onnxruntime``, of onnxruntime on each bundle's float
    and int8 QDQ models, measured interleaved, each contender in a process of its own stopped while
    the others run (``benchmark.BenchResult``: rows with median, p10-p90 and the ratio to onnxruntime
    fp32, or to the first bundle; and each one's cold start: time to first result, peak memory,
    medians over ``cold_starts`` processes). Every contender gets ``threads`` threads (ours placed
    as ``affinity`` says; onnxruntime's intra-op pool)."""
    from mnv3compile import benchmark

    paths = [b.path if isinstance(b, Bundle) else Path(b) for b in bundles]
    if not paths:
        raise UserError("give at least one bundle to bench")
    if threads < 1:
        raise UserError(f"threads {threads}: bench gives every contender the same count; give 1 or more")
    return benchmark.run(paths, vs_onnxruntime, threads, runs, max_seconds, progress, affinity, cold_starts,
                         on_status)


def target_presets():
    """The target presets (``targets.presets.TargetPreset``: name, description, toolchain, CPU, ISA).

    >>> [preset.name for preset in target_presets()][:4]
    ['host', 'arm64-linux', 'arm64-android', 'pixel2']
    """
    from mnv3compile.targets.presets import PRESETS

    return PRESETS


def tune(model: ModelLike = "large", *, target: str = "host", quant: Literal["none", "int8"] = "int8",
         calibration: CalibrationData | None = None, width: float = 1.0,
         resolution: int | str | tuple[int, int] | None = None, input_shapes: InputShapes | None = None,
         weight_bits: int = 8, int8_lowering: str = "integer", measure: str = "time", trials: int | None = None,
         seconds: float | None = None, database: str | os.PathLike | None = None, resume: bool = False,
         tracker: str | None = None, key: str | None = None, devices: int | None = None,
         device_timeout: float = 120, repeat: int = 5, min_repeat_ms: int = 40, cooldown: float | None = None,
         threads: int = 1, display=None, on_status: Note = lambda text: None):
    """Tune ``model``'s kernels (here, over TVM RPC on a device at ``tracker``, or by arm64
    instruction counts under qemu: ``measure="instructions"``), each candidate timed on ``threads``
    threads, into a database ``build`` applies
    (``database``, default: where build looks). Resumable: every candidate's record is on disk
    before the next starts. ``display`` (``schedules.tuning.session.Display``) is shown the
    steps, notes and progress. Returns the run's ``TuningOutcome``: ``folder`` (the database),
    ``report``, ``remaining``; ``check()`` raises what ended it early."""
    from mnv3compile.schedules.tuning.measure import Measurement
    from mnv3compile.schedules.tuning.session import Display, TuningSession
    from mnv3compile.schedules.tuning.tune import Budget
    from mnv3compile.targets.presets import preset as target_preset

    session = TuningSession(target_preset(target), measure, tracker, key, threads)
    calibration = calibration if quant == "int8" else None
    check_build_inputs(None, calibration, None, None)
    loaded = load_build_model(model, width=width, resolution=resolution, input_shapes=input_shapes,
                              calibration=calibration, on_status=on_status)
    session.use_database(loaded.key(quant, int8_lowering, weight_bits), Path(database) if database is not None else None,
                         resume)
    display = display or Display()
    with display.status("preparing the kernels (optimize, quantize, TVM pipeline)"):
        notes = session.prepare(loaded.model, loaded.name, quant, calibration, weight_bits, int8_lowering)
    for note in [*loaded.notes, *notes]:
        display.note(note)
    measurement = Measurement(repeat, min_repeat_ms, session.default_cooldown if cooldown is None else cooldown)
    return session.run(Budget(trials, seconds), measurement, devices, device_timeout, display)
