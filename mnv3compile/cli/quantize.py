"""'mnv3compile quantize': post-training int8 quantization of an ONNX model into a QDQ model, with
its accuracy against the float model."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import click
from rich.table import Table

from mnv3compile.cli import CONTEXT, cli, console, parse_input_shapes, wide_console
from mnv3compile.cli.options import (
    ADAROUND_OPTION,
    BIAS_CORRECTION_OPTION,
    KEEP_FLOAT_OUTPUT_OPTION,
    METHOD_OPTION,
    PREPROCESS_CHOICE,
    WEIGHT_BITS_OPTION,
)
from mnv3compile.errors import UserError


@cli.command(context_settings=CONTEXT, epilog="""\b
Examples:
  mnv3compile quantize cls.onnx --input-shape x=1,3,48,192 --calib lines/ --preprocess paddle \\
      -o cls.int8.onnx --eval lines-eval/ --plot cls-sqnr.png
  mnv3compile quantize small.onnx --calib images/ --preprocess torchvision -o small.int8.onnx
  mnv3compile quantize small.onnx --calib tensors.npz --method entropy -o small.int8.onnx
  mnv3compile quantize small.onnx --calib synthetic:32 -o small.int8.onnx   (random inputs)
\b
--calib / --eval take a folder of images (sub-folders named by class index give labels and an
accuracy), a .npy/.npz of input tensors, or synthetic[:N] (random normal inputs: a smoke test,
not a calibration).
""")
@click.argument("model_path", metavar="MODEL.onnx", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the QDQ model; its scales go to the same name with .json.")
@click.option("--calib", required=True, metavar="DIR|FILE.npz|synthetic[:N]", help="Calibration data.")
@click.option("--preprocess", "preprocess_name", default=None, type=PREPROCESS_CHOICE,
              help="How images become inputs (needed for image folders).")
@METHOD_OPTION
@click.option("--percentile", type=float, default=99.99, show_default=True, help="For --method percentile.")
@BIAS_CORRECTION_OPTION
@ADAROUND_OPTION
@KEEP_FLOAT_OUTPUT_OPTION
@click.option("--moving-average", type=float, default=None, metavar="MOMENTUM",
              help="Min/max as a moving average over calibration samples (e.g. 0.9) instead of the extremes.")
@click.option("--symmetric-activations", is_flag=True, help="Zero point 0 for activations too.")
@WEIGHT_BITS_OPTION
@click.option("--limit", type=int, default=None, help="Use at most this many calibration samples.")
@click.option("--eval", "eval_source", default=None, metavar="DIR|FILE.npz|synthetic[:N]",
              help="Evaluation data for the accuracy report [default: the calibration data].")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the per-layer SQNR as a PNG bar chart.")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="[NAME=]N,C,H,W",
              help="Fix a dynamic input's shape (PaddleOCR's classifier: x=1,3,48,192).")
@click.option("--top", type=int, default=10, show_default=True, help="How many worst layers to print.")
def quantize(model_path: Path, output: Path, calib: str, preprocess_name: str | None, method: str,
             percentile: float, bias_correction: bool, adaround: bool, keep_float_output: bool,
             moving_average: float | None,
             symmetric_activations: bool, weight_bits: int,
             limit: int | None, eval_source: str | None, plot: Path | None, input_shapes: tuple[str, ...],
             top: int) -> None:
    """Post-training int8 quantization into a QDQ ONNX model with no float islands.

    Signed int8 everywhere; weights symmetric per output channel (depthwise included); int32
    biases with scale s_in*s_w; activations per tensor. h-swish, h-sigmoid (scale 1/256),
    the squeeze-excite multiply, residual adds, pooling and the classifier are all quantized.
    The model is first put in canonical form (see 'mnv3compile optimize'). Prints per-layer
    SQNR (worst first), output SQNR and top-1 agreement with the float model.
    """
    from mnv3compile import api
    from mnv3compile.quant import QuantizeSettings
    from mnv3compile.quant.calibration import check_source, synthetic_count
    from mnv3compile.quant.preprocess import preset
    from mnv3compile.quant.report import plot_sqnr

    if output.suffix.lower() != ".onnx":
        raise UserError(f"output {output} must end in .onnx (the scales go to {output.with_suffix('.json')})")
    if eval_source is not None:  # before the quantization's work (api.quantize checks --calib first)
        check_source(eval_source)
    settings = QuantizeSettings(method=method, percentile=percentile, moving_average=moving_average,
                                symmetric_activations=symmetric_activations, weight_bits=weight_bits,
                                bias_correction=bias_correction, adaround=adaround,
                                keep_float_output=keep_float_output)
    with _progress() as progress:
        result = api.quantize(model_path, calib, preprocess=preprocess_name, settings=settings,
                              input_shapes=parse_input_shapes(input_shapes), limit=limit, progress=progress,
                              on_note=lambda text: console.print(f"note: {text}", soft_wrap=True))
        eval_samples = api.evaluation_samples(result, eval_source or calib, preprocess_name,
                                              None if eval_source else limit)
        accuracy = result.evaluate(eval_samples, progress)
    spec = preset(preprocess_name) if preprocess_name else None
    result.save(output, {"source": calib, "preprocess": spec.to_json() if spec else None},
                accuracy=accuracy.to_json())
    if plot is not None:
        plot_sqnr(accuracy, plot, f"{model_path.name}: per-layer SQNR (dB), int8 vs float")
    _print_accuracy(accuracy, top)
    console.print(f"wrote {output} and {output.with_suffix('.json')} ({result.calibration_samples} calibration samples, "
                  f"method {method}{_chosen_methods(result.record.activations) if method == 'auto' else ''}; "
                  f"bias correction: {result.record.corrected_biases} layers"
                  + (f"; AdaRound: {result.record.adarounded} layers)" if adaround else ")"))
    if synthetic_count(calib) is not None:
        console.print("note: calibrated on synthetic inputs; give real data with --calib for real accuracy")


def _chosen_methods(activations: dict) -> str:
    """': percentile 99.99 for 38 tensors, entropy for 8, ...' from the sidecar's activations."""
    counts = Counter(a["method"] for a in activations.values() if "method" in a)
    return ": " + ", ".join(f"{m} for {n} tensor{'s' if n != 1 else ''}" for m, n in counts.most_common())


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    class _Bars:
        def __enter__(self):
            self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=True)
            self.bars.__enter__()
            return self

        def __exit__(self, *exc):
            return self.bars.__exit__(*exc)

        def __call__(self, description: str, total: int):
            task = self.bars.add_task(description, total=total)
            return lambda: self.bars.advance(task)

    return _Bars()


def _print_accuracy(accuracy, top: int) -> None:
    table = Table(title=f"worst {min(top, len(accuracy.layers))} of {len(accuracy.layers)} layers (SQNR, int8 vs float)")
    table.add_column("tensor")
    table.add_column("SQNR dB", justify="right")
    for name, value in accuracy.layers[:top]:
        table.add_row(name, f"{value:.1f}")
    wide_console().print(table)
    for name, value in accuracy.outputs.items():
        console.print(f"output {name}: SQNR {value:.1f} dB")
    if accuracy.top1_agreement is not None:
        console.print(f"top-1 agreement with float: {accuracy.top1_agreement:.2%} over {accuracy.samples} samples")
    if accuracy.int8_accuracy is not None:
        console.print(f"accuracy: float {accuracy.float_accuracy:.2%}, int8 {accuracy.int8_accuracy:.2%}")
