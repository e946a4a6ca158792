"""What quantize, build and tune share: their quantization options, and the model they load with
the inputs it needs checked before any work starts."""

from __future__ import annotations

from pathlib import Path

import click

from mnv3compile.cli import RegistryChoice, console, parse_input_shapes
from mnv3compile.errors import UserError

RESOLUTION_HELP = ("Zoo input size: H for HxH, or HxW (height x width, e.g. 512x1024); each side a multiple of 32 "
                   "(of 16 for lraspp-*), from 32 to 4096  [default: 224; 320 for ssdlite-*].")
PREPROCESS_CHOICE = RegistryChoice("mnv3compile.quant.preprocess", "PRESETS")

WEIGHT_BITS_OPTION = click.option(
    "--weight-bits", type=click.Choice(["8", "7"]), default="8", show_default=True,
    callback=lambda ctx, param, value: int(value),
    help="Range of the int8 weights: 8 (-127..127), or 7 (-63..63, onnxruntime's reduce_range): "
         "AVX2 without VNNI then multiplies pointwise convs 4 input channels at a time with vpmaddubsw "
         "(exact only for 7-bit weights) instead of 2 with vpmaddwd; costs some accuracy.")

METHOD_OPTION = click.option(
    "--method", type=RegistryChoice("mnv3compile.quant.observers", "METHODS"), default="auto",
    show_default=True,
    help="How activation ranges are chosen. auto: per tensor, the candidate (percentile 99.99, 99.9, 99.999, "
         "minmax, entropy) whose quantization least disturbs the groups that read it, measured on the calibration "
         "data (the sidecar records each choice); mse: the clipping with the least expected squared error of the "
         "tensor itself.")
ADAROUND_OPTION = click.option(
    "--adaround", is_flag=True,
    help="Round each layer's weights up or down to least change its output on the calibration data (AdaRound; "
         "slower: seconds per layer), instead of each weight to its nearest step.")
KEEP_FLOAT_OUTPUT_OPTION = click.option(
    "--keep-float-output", is_flag=True,
    help="Run a Softmax or Sigmoid that produces a model output in float32, on its int8 input: "
         "every class keeps a probability (an int8 softmax rounds those below 1/512 to 0, which a "
         "beam search or a confidence cannot use), for one small float kernel at the end.")
BIAS_CORRECTION_OPTION = click.option(
    "--bias-correction/--no-bias-correction", default=True, show_default=True,
    help="Take the mean error that rounding each layer's weights adds to its output (what each tap reads on "
         "average over the calibration data, padding included) out of its bias.")


def shapes_from_calibration(model, calib: str | None) -> dict[str, list[int]] | None:
    """A dynamic input's shape taken from the calibration tensors (.npy/.npz), said so."""
    from mnv3compile.analysis import dynamic_input_shape
    from mnv3compile.quant.calibration import tensor_file_shape

    shapes = dynamic_input_shape(model, tensor_file_shape(calib))
    for name, shape in (shapes or {}).items():
        console.print(f"note: input '{name}' is {tuple(shape)}, the shape of the calibration data's samples",
                      soft_wrap=True)
    return shapes


def load_model(model, onnx_path, width, resolution, weights, input_shapes, calib: str | None = None):
    """The zoo model or ONNX file of 'build' and 'tune' (model_source.LoadedModel)."""
    from mnv3compile.model_source import load_model as load
    from mnv3compile.onnx_io import load_onnx

    shapes = None
    if input_shapes:
        if onnx_path is None:
            raise UserError("--input-shape fixes an ONNX model's dynamic inputs; a zoo model has none")
        shapes = parse_input_shapes(input_shapes, load_onnx(onnx_path))
    elif onnx_path is not None and calib is not None:
        shapes = shapes_from_calibration(load_onnx(onnx_path), calib)
    with console.status("loading the model") as status:
        return load(model, onnx_path, width, resolution, weights, shapes, on_status=status.update)


def check_build_inputs(labels: Path | None, calib: str | None, database: Path | None, output: Path | None,
                       tuned_for: dict | None = None) -> None:
    """Every file 'build' will read, checked before any work starts (one error line, not a traceback
    at the stage that reads it)."""
    from mnv3compile.quant.calibration import check_source
    from mnv3compile.schedules.tuning.database import check_database

    if labels is not None:
        if not labels.is_file():
            raise UserError(f"--labels {labels}: no such file")
        try:
            if not labels.read_text().strip():
                raise UserError(f"--labels {labels}: the file is empty (one class name per line)")
        except UnicodeDecodeError:
            raise UserError(f"--labels {labels}: not a text file (one class name per line)") from None
    if calib is not None:
        check_source(calib)
    if database is not None:
        check_database(database, tuned_for)
    if output is not None and output.exists() and not output.is_dir():
        raise UserError(f"-o {output}: exists and is not a folder")
