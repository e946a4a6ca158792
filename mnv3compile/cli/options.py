"""The options quantize, build and tune share."""

from __future__ import annotations

import click

from mnv3compile.cli import RegistryChoice

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


def model_argument(model: str | None, onnx_path):
    """What build and tune compile: the --onnx file, else the --model zoo name [large]."""
    from mnv3compile.errors import UserError

    if model is not None and onnx_path is not None:
        raise UserError("give either --model or --onnx, not both")
    return onnx_path or model or "large"


def threads_option(default: int):
    return click.option(
        "--threads", type=click.IntRange(0 if default == 0 else 1, 256), default=default, show_default=True,
        help="Threads the kernels run on" + (" (0: one per big core, what an app should start from)" if default == 0
                                              else "; every contender gets as many") + ".")


AFFINITY_OPTION = click.option(
    "--affinity", type=RegistryChoice("mnv3compile.threads", "AFFINITIES"), default="big", show_default=True,
    help="Which cores the threads run on: big (pinned to the fastest cores: little cores usually slow a pool "
         "down), little, all (pinned over every core, the fastest first), unpinned (the OS places them).")
