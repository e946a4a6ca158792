"""'mnv3compile build': a model compiled into a deployable bundle for a target (mnv3compile/pipeline.py),
and what the build did, from its report."""

from __future__ import annotations

from pathlib import Path

import click

from mnv3compile.cli import CONTEXT, RegistryChoice, cli, console, parse_input_shapes
from mnv3compile.cli.options import (
    ADAROUND_OPTION,
    BIAS_CORRECTION_OPTION,
    KEEP_FLOAT_OUTPUT_OPTION,
    METHOD_OPTION,
    PREPROCESS_CHOICE,
    RESOLUTION_HELP,
    WEIGHT_BITS_OPTION,
    model_argument,
)
from mnv3compile.errors import UserError
from mnv3compile.zoo.spec import MODEL_NAMES


@cli.command(context_settings=CONTEXT, epilog="""\b
Examples:
  mnv3compile build                                   (Large, host, int8 on synthetic data)
  mnv3compile build --model small --target arm64-android --quant int8 --calib imgs/ --preprocess torchvision
  mnv3compile build --onnx cls.onnx --input-shape x=1,3,48,192 --target pixel6 --quant none
  mnv3compile build --model lraspp-small --resolution 256 --target rpi5 -o build/seg
""")
@click.option("--model", type=click.Choice(MODEL_NAMES), default=None,
              help="A zoo model [default: large, unless --onnx is given].")
@click.option("--onnx", "onnx_path", type=click.Path(path_type=Path), default=None,
              help="Compile this ONNX model instead of a zoo model.")
@click.option("--width", type=float, default=1.0, show_default=True, help="Zoo width multiplier.")
@click.option("--resolution", default=None, metavar="H|HxW", help=RESOLUTION_HELP)
@click.option("--weights", type=click.Path(path_type=Path), default=None, help="Zoo weights (state dict).")
@click.option("--target", "target_name", default="host", show_default=True,
              help="Target preset ('mnv3compile targets' lists them).")
@click.option("--quant", type=click.Choice(["none", "int8"]), default="int8", show_default=True)
@click.option("--calib", default=None, metavar="DIR|FILE.npz|synthetic[:N]",
              help="int8 calibration data [default: 16 synthetic inputs, with a warning].")
@WEIGHT_BITS_OPTION
@METHOD_OPTION
@BIAS_CORRECTION_OPTION
@ADAROUND_OPTION
@KEEP_FLOAT_OUTPUT_OPTION
@click.option("--preprocess", "preprocess_name", default=None, type=PREPROCESS_CHOICE,
              help="How images become inputs (stored in the manifest for 'run').")
@click.option("--labels", "labels_path", type=click.Path(path_type=Path), default=None,
              help="Class names, one per line (stored in the bundle; 'run' prints them).")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="[NAME=]N,C,H,W",
              help="Fix a dynamic input's shape (dynamic dimensions are otherwise set to 1).")
@click.option("--int8-lowering", "int8_lowering", type=RegistryChoice("mnv3compile.compile_choices", "INT8_LOWERINGS"),
              default="integer", show_default=True,
              help="integer: int8 kernels (int8 x int8 -> int32; bias, activation and requantization "
                   "to int8 in the epilogue, in float32 registers as XNNPACK and onnxruntime do); "
                   "fixed-point: the same kernels with integer-only epilogues (gemmlowp/TFLite "
                   "reference arithmetic; slower: int64 multiplies); fake: TVM's dequantize -> float "
                   "kernel -> quantize, for comparison.")
@click.option("--schedule", type=RegistryChoice("mnv3compile.compile_choices", "SCHEDULES"), default="templates",
              show_default=True,
              help="templates: mnv3compile's kernel templates for the target's ISA (NHWC conv tiles "
                   "with the epilogue in registers, GEMV, pooling); default: TVM's default schedules, "
                   "for comparison.")
@click.option("--debug", is_flag=True, help="Keep symbols and debug information in the library (stripped by default).")
@click.option("--db", "database", type=click.Path(path_type=Path), default=None,
              help="A tuning database (folder) to take tuned kernels from [default: the one 'mnv3compile "
                   "tune' wrote for this model and target, if any]; the build reports how many kernels it "
                   "covered. A database tuned for another target or TVM version is refused.")
@click.option("--no-db", "no_database", is_flag=True, help="Ignore any tuning database: templates' default tiles.")
@click.option("--threads", type=click.IntRange(0, 256), default=0, show_default=True,
              help="Threads the app will run it on: 1 builds serial kernels (no fork-join to pay for); any other "
                   "count builds kernels that split their outer loops over the runtime's threads (the count is "
                   "chosen when it runs: run/bench --threads, the C API's mnv3_open_with).")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Bundle folder [default: build/<model>-<quant>-<target>].")
def build(model: str | None, onnx_path: Path | None, width: float, resolution: str, weights: Path | None,
          target_name: str, quant: str, calib: str | None, weight_bits: int, method: str, bias_correction: bool,
          adaround: bool, keep_float_output: bool, preprocess_name: str | None, labels_path: Path | None,
          input_shapes: tuple[str, ...], int8_lowering: str, schedule: str, debug: bool, database: Path | None,
          no_database: bool, threads: int, output: Path | None) -> None:
    """Compile a MobileNetV3 into a deployable bundle for a target.

    Stages: model -> optimize (passes) -> quantize (int8) -> TVM (Relax pipeline, codegen,
    link with the target's toolchain) -> bundle. The bundle folder holds lib<name>.so,
    <name>.json (manifest: inputs, outputs, preprocessing, labels, quantization, target, tool
    versions, sha256 of every file), the deployed ONNX model and build_report.json. It is
    written at once: a failed build leaves nothing behind.

    int8 runs as integer kernels: every quantized group (conv + bias + activation, residual
    add, squeeze-excite, pooling, classifier) is one int8 kernel whose epilogue requantizes its
    int32 accumulator to int8; only the network input is quantized and the output dequantized. A group with no integer
    lowering stays fake-quantized and is named in a note.

    The network runs channels-last (NHWC) and every kernel is scheduled by a template for the
    target's ISA (AVX2, AVX-512, NEON): 'templates for N of M kernels' is printed; see
    'mnv3compile profile' for where the time goes.
    """
    from mnv3compile import api
    from mnv3compile.quant import QuantizeSettings

    if database is not None and no_database:
        raise UserError("give either --db or --no-db, not both")
    settings = QuantizeSettings(method=method, weight_bits=weight_bits, bias_correction=bias_correction,
                                adaround=adaround, keep_float_output=keep_float_output)
    with console.status("build") as status:
        def note_now(text: str) -> None:
            console.print(text, soft_wrap=True)

        result = api.build(model_argument(model, onnx_path), target=target_name, quant=quant, calibration=calib,
                           preprocess=preprocess_name, labels=labels_path, output=output,
                           database=None if no_database else (database or "auto"), settings=settings, width=width,
                           resolution=resolution, weights=weights, input_shapes=parse_input_shapes(input_shapes),
                           int8_lowering=int8_lowering, schedule=schedule, debug=debug, threads=threads,
                           on_stage=lambda stage: status.update(f"stage: {stage}"), on_note=note_now)
    for note in result.notes:
        console.print(f"note: {note}")
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
    console.print(f"bundle: {result.path} ({stages})")
    report = result.report
    size_mb = result.library.stat().st_size / 1e6
    console.print(f"library: {result.library} ({size_mb:.2f} MB, {report.kernel_count} kernels, "
                  f"{report.toolchain}{', with symbols' if debug else ', stripped'})")
    console.print(f"kernels for: {report.isa}", soft_wrap=True)
    if report.int8 is not None:
        int8 = report.int8
        console.print(f"int8: {int8.integer_groups} groups as integer kernels, {int8.fallback_groups} "
                      f"fake-quantized; {int8.integer_kernels} of {report.kernel_count} kernels with integer "
                      f"tensors only (the rest: {', '.join(int8.float_kernels) or 'none'}); "
                      f"{int8.requantize} requantization")
    if report.templates is not None:
        templates = report.templates
        console.print(f"templates for {templates.templated} of {templates.kernels} kernels"
                      + (f"; {len(templates.tuned)} from the tuning database" if templates.tuned else "")
                      + (f" (default schedule: {', '.join(templates.default_schedule)})"
                         if templates.default_schedule else ""))
    if report.tuning is not None:
        tuning = report.tuning
        others = tuning.matched_up_to_constants
        console.print(f"tuning database: tuned schedules for {tuning.applied} of {tuning.kernels} kernels"
                      + (f" ({others} from kernels recorded with other constants: scales, zero points)"
                         if others else ""), soft_wrap=True)
    if result.target == "host":
        from mnv3compile.threads import current_threads

        latency = result.latency_ms()
        how = "kernel templates" if schedule == "templates" else "TVM's default schedules"
        tuned = ", tuned kernels from the database" if report.tuning and report.tuning.applied else ""
        count = current_threads()
        console.print(f"latency: {latency:.2f} ms per inference on this machine ({count} thread"
                      f"{'s' if count > 1 else ''}, {how}{tuned})")
    else:
        console.print(f"run it on the target device ({result.target}): see README, 'Deploy'")
