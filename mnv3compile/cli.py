"""The ``mnv3compile`` command line. Thin: it parses options and calls the library.

Every user mistake ends as one line ``error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from mnv3compile import __version__
from mnv3compile.errors import DynamicShapeError, NotCanonicalError, UserError
from mnv3compile.zoo.spec import MODEL_NAMES

console = Console()


def wide_console(width: int = 132) -> Console:
    """Piped output has no terminal width; keep tables whole rather than cut at 80 columns."""
    return Console(width=None if console.is_terminal else width)
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
RESOLUTION_HELP = ("Zoo input size: H for HxH, or HxW (height x width, e.g. 512x1024); each side a multiple of 32 "
                   "(of 16 for lraspp-*), from 32 to 4096  [default: 224; 320 for ssdlite-*].")


@click.group(context_settings=CONTEXT, epilog="""\b
Examples:
  mnv3compile export --model small --width 0.75 --resolution 160 -o small.onnx
  mnv3compile inspect small.onnx
  mnv3compile zoo --resolution 160
  mnv3compile optimize small.onnx -o small.opt.onnx --verify --report
  mnv3compile quantize small.onnx --calib images/ --preprocess torchvision -o small.int8.onnx
  mnv3compile build --model small --target arm64-android --quant int8
  mnv3compile tune --model small --quant int8 --time-budget 20m
  mnv3compile run build/small-int8-host examples/sample.png
""")
@click.version_option(__version__, prog_name="mnv3compile")
def cli() -> None:
    """A model compiler for MobileNetV3 on phones.

    Emits MobileNetV3 variants as ONNX, rewrites them into a canonical form, quantizes them
    to int8 and compiles them with Apache TVM into libraries for this machine, arm64 Linux
    and Android. Run 'mnv3compile COMMAND --help' for each command's options and examples.
    """


@cli.command(context_settings=CONTEXT, epilog="""\b
Examples:
  mnv3compile export --model large -o large.onnx
  mnv3compile export --model small --width 0.75 --resolution 160 --classes 10 -o s.onnx
  mnv3compile export --model lraspp-small --resolution 256 -o seg.onnx
  mnv3compile export --model large --weights mobilenet_v3_large.pth -o large.onnx
  mnv3compile export --model small --seed 3 --save-weights small.npz -o small.onnx
""")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the ONNX model.")
@click.option("--model", type=click.Choice(MODEL_NAMES), default="large", show_default=True,
              help="Which MobileNetV3 variant.")
@click.option("--width", type=float, default=1.0, show_default=True,
              help="Width multiplier (paper: 0.35-1.25); channels round to multiples of 8.")
@click.option("--resolution", default=None, metavar="H|HxW", help=RESOLUTION_HELP)
@click.option("--classes", type=int, default=None,
              help="Number of classes [default: 1000; 19 for lraspp-*].")
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="torchvision-format state dict: .npz, .safetensors, or .pth (needs torch).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the random weights used when --weights is not given.")
@click.option("--save-weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the model's state dict (.npz, .safetensors or .pth).")
@click.option("--reduced-tail/--full-tail", default=None,
              help="Halve the last stage's filters (the paper's LR-ASPP; default for lraspp-*). "
                   "--full-tail matches torchvision's LR-ASPP checkpoint.")
def export(output: Path, model: str, width: float, resolution: str, classes: int | None,
           weights: Path | None, seed: int, save_weights: Path | None, reduced_tail: bool | None) -> None:
    """Write a MobileNetV3 variant as an ONNX model (opset 17).

    Node and initializer names follow torchvision's module paths and state-dict keys.
    Without --weights the weights are random but realistic (seeded; BatchNorm statistics
    measured on random images so activations keep their scale through every block).
    """
    from mnv3compile import zoo
    from mnv3compile.analysis import analyze
    from mnv3compile.onnx_io import save_onnx

    spec = zoo.build_spec(model, width, resolution, classes, reduced_tail)
    size = "x".join(map(str, spec.resolution))
    with console.status(f"building {spec.name} x{width} @ {size}"):
        onnx_model = zoo.build_model(spec, weights=weights, seed=seed)
    if save_weights is not None:
        zoo.save_state_dict(zoo.state_dict_from_onnx(onnx_model, spec), save_weights)
    save_onnx(onnx_model, output)
    stats = analyze(onnx_model)
    source = f"weights {weights}" if weights else f"random weights, seed {seed}"
    console.print(f"wrote {output}: MobileNetV3-{spec.name} width {width} {size}, "
                  f"{spec.num_classes} classes, {stats.total_params:,} parameters, "
                  f"{stats.total_madds / 1e6:.1f} M MAdds ({source})")
    if save_weights is not None:
        console.print(f"wrote {save_weights}: state dict")


def parse_input_shapes(specs: tuple[str, ...], model) -> dict[str, list[int]]:
    """Parse ``[NAME=]1,3,48,192`` options (``x`` separators accepted too)."""
    initializer_names = {init.name for init in model.graph.initializer}
    inputs = [v.name for v in model.graph.input if v.name not in initializer_names]
    shapes = {}
    for spec in specs:
        name, _, dims = spec.rpartition("=")
        if not name:
            if len(inputs) != 1:
                raise UserError(f"--input-shape {spec}: the model has {len(inputs)} inputs "
                                f"({', '.join(inputs)}); write NAME=SHAPE")
            name = inputs[0]
        try:
            shapes[name] = [int(d) for d in dims.replace("x", ",").split(",")]
        except ValueError:
            raise UserError(f"--input-shape {spec}: expected integers like 1,3,224,224") from None
    return shapes


@cli.command(context_settings=CONTEXT, epilog="""\b
Examples:
  mnv3compile zoo
  mnv3compile zoo --resolution 160 --model small --model small-minimal
""")
@click.option("--resolution", default=None, metavar="H|HxW",
              help="Input size to count MAdds at (H or HxW)  [default: 224; 320 for ssdlite-*].")
@click.option("--model", "models", type=click.Choice(MODEL_NAMES), multiple=True,
              help="Only these variants (repeatable) [default: all].")
def zoo(resolution: str | None, models: tuple[str, ...]) -> None:
    """List the zoo's variants with their parameters and MAdds at each paper width multiplier.

    \b
    Parameters count weights, biases and BatchNorm's scale and shift (torchvision's parameters();
    not running statistics, nor SSDLite's anchor tables); MAdds count the multiply-adds of Conv and Gemm (the paper's). SSDLite rows (at 320 by default) also
    show the paper's Table 6 figures; a dagger marks the --reduced-tail variants (channels between
    C4 and C5 halved)."""
    from mnv3compile import zoo as model_zoo
    from mnv3compile.analysis import analyze
    from mnv3compile.zoo.spec import format_resolution
    from mnv3compile.zoo.ssdlite import PAPER_TABLE6

    table = Table(title="MobileNetV3 zoo")
    for column in ("model", "width", "input", "params", "MAdds", "paper (Table 6)"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name in models or MODEL_NAMES:
        tails = (False, True) if name.startswith("ssdlite-") else (None,)
        for reduced_tail in tails:
            for width in (0.35, 0.5, 0.75, 1.0, 1.25):
                spec = model_zoo.build_spec(name, width, resolution, reduced_tail=reduced_tail)
                stats = analyze(model_zoo.structure_only(spec))
                paper = PAPER_TABLE6.get((name, bool(reduced_tail))) if width == 1.0 and spec.resolution == (320, 320) \
                    else None
                table.add_row(name + ("\u2020" if reduced_tail else ""), f"{width}", format_resolution(spec.resolution),
                              f"{stats.total_params:,}", f"{stats.total_madds / 1e6:.1f} M",
                              f"{paper[0]} M / {paper[1] * 1000:.0f} M" if paper else "")
    console.print(table)


@cli.command(context_settings=CONTEXT, epilog="""\b
Examples:
  mnv3compile optimize large.onnx -o large.opt.onnx --verify --report
  mnv3compile optimize ch_ppocr_mobile_v2.0_cls_infer.onnx --input-shape x=1,3,48,192 -o cls.opt.onnx --verify
  mnv3compile optimize model.onnx --passes cleanup,fold_batchnorm -o model.bn.onnx
  mnv3compile optimize model.onnx -o out.onnx --report-json report.json
  mnv3compile optimize model.onnx --explain canonicalize_hswish
""")
@click.argument("model_path", metavar="IN.onnx", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the optimized model (written atomically); required unless --explain.")
@click.option("--passes", "pass_names", default=None, metavar="a,b,c",
              help="Run only these passes, in this order [default: the whole pipeline].")
@click.option("--verify", is_flag=True,
              help="Run onnxruntime before and after every pass on seeded random inputs; refuse a "
                   "pass whose output moves more than --tolerance (relative to the output's max).")
@click.option("--tolerance", type=float, default=1e-4, show_default=True, help="Relative tolerance of --verify.")
@click.option("--report", is_flag=True, help="Print per pass: matches, rewrites, refusals, op counts, errors.")
@click.option("--report-json", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the report as JSON.")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="[NAME=]N,C,H,W",
              help="Fix a dynamic input's shape (needed to --verify a model with dynamic inputs).")
@click.option("--explain", "explain_pass", default=None, metavar="PASS",
              help="Print why each rewrite rule of PASS matches or not, on the model as PASS sees it "
                   "in the pipeline (onnxscript's matching tracer), and write nothing.")
def optimize(model_path: Path, output: Path | None, pass_names: str | None, verify: bool, tolerance: float,
             report: bool, report_json: Path | None, input_shapes: tuple[str, ...], explain_pass: str | None) -> None:
    """Rewrite an ONNX model into mnv3compile's canonical form.

    \b
    The pipeline is 'mnv3compile passes' (each pass with what it does), built on onnxscript's
    rewriter. Afterwards no BatchNormalization remains, every hard-sigmoid reads
    Mul(Clip(Add(x,3),0,6),1/6), every h-swish is one HardSwish op, and each Conv with its
    bias and activation is annotated as one fused unit.
    """
    from mnv3compile.analysis import with_static_inputs
    from mnv3compile.onnx_io import load_onnx, save_onnx, write_atomic
    from mnv3compile.passes.census import non_canonical
    from mnv3compile.passes.optimize import PassVerificationError, optimize as run_passes
    from mnv3compile.passes.registry import select

    passes = select([n.strip() for n in pass_names.split(",") if n.strip()] if pass_names else None)
    model = load_onnx(model_path)
    if input_shapes:
        model, _ = with_static_inputs(model, parse_input_shapes(input_shapes, model))
    if explain_pass is not None:
        from mnv3compile.passes.optimize import explain

        for line in explain(model, passes, explain_pass):
            print(line)
        return
    if output is None:
        raise UserError("give -o OUT.onnx (where to write the optimized model)")
    with console.status("optimizing") as status:
        try:
            result, pass_report = run_passes(model, passes, check_numerics=verify, tolerance=tolerance,
                                             on_pass=lambda p: status.update(f"pass {p.name}"))
        except PassVerificationError as exc:
            raise UserError(str(exc)) from exc
    if report:
        _print_pass_report(pass_report)
    if report_json is not None:
        payload = {"model": str(model_path), **pass_report.to_json(), "non_canonical": non_canonical(result)}
        write_atomic(report_json, json.dumps(payload, indent=2).encode())
    save_onnx(result, output)
    before, after = sum(pass_report.ops_before.values()), sum(pass_report.ops_after.values())
    leftovers = non_canonical(result)
    console.print(f"wrote {output}: {before} -> {after} nodes; non-canonical spellings left: "
                  + (", ".join(f"{k} x{v}" for k, v in leftovers.items()) or "none"))
    if pass_report.errors is not None:
        worst = max(pass_report.errors, key=lambda e: e.max_rel)
        console.print(f"verified against onnxruntime: max relative error {worst.max_rel:.2e} "
                      f"(max abs {worst.max_abs:.2e}) on '{worst.name}'")


WEIGHT_BITS_OPTION = click.option(
    "--weight-bits", type=click.Choice(["8", "7"]), default="8", show_default=True,
    callback=lambda ctx, param, value: int(value),
    help="Range of the int8 weights: 8 (-127..127), or 7 (-63..63, onnxruntime's reduce_range): "
         "AVX2 without VNNI then multiplies pointwise convs 4 input channels at a time with vpmaddubsw "
         "(exact only for 7-bit weights) instead of 2 with vpmaddwd; costs some accuracy.")

METHOD_OPTION = click.option(
    "--method", type=click.Choice(["auto", "minmax", "percentile", "entropy", "mse"]), default="auto",
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
@click.option("--preprocess", "preprocess_name", default=None,
              type=click.Choice(["torchvision", "tf", "paddle", "efficientnet-lite"]),
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
    from mnv3compile.analysis import with_static_inputs
    from mnv3compile.onnx_io import load_onnx, save_onnx, write_atomic
    from mnv3compile.quant import QuantizeSettings, quantize as run_quantize
    from mnv3compile.quant.calibration import check_source, load_samples, synthetic_count
    from mnv3compile.quant.preprocess import preset
    from mnv3compile.quant.report import compare, plot_sqnr

    if output.suffix.lower() != ".onnx":
        raise UserError(f"output {output} must end in .onnx (the scales go to {output.with_suffix('.json')})")
    for source in (calib, eval_source):
        if source is not None:
            check_source(source)
    model = load_onnx(model_path)
    shapes = parse_input_shapes(input_shapes, model) if input_shapes else _shapes_from_calibration(model, calib)
    model, _ = with_static_inputs(model, shapes)
    input_shape = _single_input_shape(model)
    spec = preset(preprocess_name) if preprocess_name else None
    samples = load_samples(calib, input_shape, spec, limit)
    settings = QuantizeSettings(method, percentile, moving_average, symmetric_activations, weight_bits,
                                bias_correction, adaround, keep_float_output)
    with _progress() as progress:
        result = run_quantize(model, samples, settings, progress)
        eval_samples = load_samples(eval_source, input_shape, spec) if eval_source else samples
        accuracy = compare(result.float_model, result.model, result.record.dequantized, eval_samples, progress)
    sidecar = result.sidecar({"source": calib, "preprocess": spec.to_json() if spec else None})
    sidecar["accuracy"] = accuracy.to_json()
    save_onnx(result.model, output)
    write_atomic(output.with_suffix(".json"), json.dumps(sidecar, indent=2).encode())
    if plot is not None:
        plot_sqnr(accuracy, plot, f"{model_path.name}: per-layer SQNR (dB), int8 vs float")
    _print_accuracy(accuracy, top)
    console.print(f"wrote {output} and {output.with_suffix('.json')} ({len(samples)} calibration samples, "
                  f"method {method}{_chosen_methods(result.record.activations) if method == 'auto' else ''}; "
                  f"bias correction: {result.record.corrected_biases} layers"
                  + (f"; AdaRound: {result.record.adarounded} layers)" if adaround else ")"))
    if synthetic_count(calib) is not None:
        console.print("note: calibrated on synthetic inputs; give real data with --calib for real accuracy")


def _chosen_methods(activations: dict) -> str:
    """': percentile 99.99 for 38 tensors, entropy for 8, ...' from the sidecar's activations."""
    counts = Counter(a["method"] for a in activations.values() if "method" in a)
    return ": " + ", ".join(f"{m} for {n} tensor{'s' if n != 1 else ''}" for m, n in counts.most_common())


def _single_input_shape(model) -> tuple[int, ...]:
    initializer_names = {i.name for i in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializer_names]
    if len(inputs) != 1:
        raise UserError(f"the quantizer takes one-input models; this one has {len(inputs)}")
    return tuple(d.dim_value for d in inputs[0].type.tensor_type.shape.dim)


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
@click.option("--preprocess", "preprocess_name", default=None,
              type=click.Choice(["torchvision", "tf", "paddle", "efficientnet-lite"]),
              help="How images become inputs (stored in the manifest for 'run').")
@click.option("--labels", "labels_path", type=click.Path(path_type=Path), default=None,
              help="Class names, one per line (stored in the bundle; 'run' prints them).")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="[NAME=]N,C,H,W",
              help="Fix a dynamic input's shape (dynamic dimensions are otherwise set to 1).")
@click.option("--int8-lowering", "int8_lowering", type=click.Choice(["integer", "fixed-point", "fake"]),
              default="integer", show_default=True,
              help="integer: int8 kernels (int8 x int8 -> int32; bias, activation and requantization "
                   "to int8 in the epilogue, in float32 registers as XNNPACK and onnxruntime do); "
                   "fixed-point: the same kernels with integer-only epilogues (gemmlowp/TFLite "
                   "reference arithmetic; slower: int64 multiplies); fake: TVM's dequantize -> float "
                   "kernel -> quantize, for comparison.")
@click.option("--schedule", type=click.Choice(["templates", "default"]), default="templates", show_default=True,
              help="templates: mnv3compile's kernel templates for the target's ISA (NHWC conv tiles "
                   "with the epilogue in registers, GEMV, pooling); default: TVM's default schedules, "
                   "for comparison.")
@click.option("--debug", is_flag=True, help="Keep symbols and debug information in the library (stripped by default).")
@click.option("--db", "database", type=click.Path(path_type=Path), default=None,
              help="A tuning database (folder) to take tuned kernels from [default: the one 'mnv3compile "
                   "tune' wrote for this model and target, if any]; the build reports how many kernels it "
                   "covered. A database tuned for another target or TVM version is refused.")
@click.option("--no-db", "no_database", is_flag=True, help="Ignore any tuning database: templates' default tiles.")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Bundle folder [default: build/<model>-<quant>-<target>].")
def build(model: str | None, onnx_path: Path | None, width: float, resolution: str, weights: Path | None,
          target_name: str, quant: str, calib: str | None, weight_bits: int, method: str, bias_correction: bool,
          adaround: bool, keep_float_output: bool, preprocess_name: str | None, labels_path: Path | None,
          input_shapes: tuple[str, ...], int8_lowering: str, schedule: str, debug: bool, database: Path | None, no_database: bool, output: Path | None) -> None:
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
    from mnv3compile.pipeline import BuildRequest, build as run_build
    from mnv3compile.schedules.tuning.database import identity
    from mnv3compile.targets.presets import preset as target_preset
    from mnv3compile.tvm.build import tvm_target

    target = target_preset(target_name)
    if database is not None and no_database:
        raise UserError("give either --db or --no-db, not both")
    tuned_for = identity(target.name, tvm_target(target))
    _check_build_inputs(labels_path, calib if quant == "int8" else None, database, output, tuned_for)
    loaded = _load_model(model, onnx_path, width, resolution, weights, input_shapes,
                         calib if quant == "int8" else None)
    source_model, name, source, notes = loaded.model, loaded.name, loaded.source, loaded.notes
    if database is None and not no_database:
        database = _found_database(target, loaded.key(quant, int8_lowering, weight_bits), tuned_for)
    labels = labels_path.read_text().splitlines() if labels_path else None
    output = output or Path("build") / f"{(model or name).replace('_', '-')}-{quant}-{target.name}"
    request = BuildRequest(target, output, name, source_model, quant, calib, preprocess_name, labels, source,
                           database, int8_lowering, debug, schedule, weight_bits, method, bias_correction,
                           adaround, keep_float_output)
    with console.status("build") as status:
        result = run_build(request, on_stage=lambda stage: status.update(f"stage: {stage}"))
    for note in notes + result.notes:
        console.print(f"note: {note}")
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
    console.print(f"bundle: {result.bundle} ({stages})")
    report = json.loads((result.bundle / "build_report.json").read_text())
    size_mb = result.library.stat().st_size / 1e6
    console.print(f"library: {result.library} ({size_mb:.2f} MB, {report['kernel_count']} kernels, "
                  f"{report['toolchain']}{', with symbols' if debug else ', stripped'})")
    console.print(f"kernels for: {report['isa']}", soft_wrap=True)
    if report.get("int8"):
        int8 = report["int8"]
        console.print(f"int8: {int8['integer_groups']} groups as integer kernels, {int8['fallback_groups']} "
                      f"fake-quantized; {int8['integer_kernels']} of {report['kernel_count']} kernels with integer "
                      f"tensors only (the rest: {', '.join(int8['float_kernels']) or 'none'}); "
                      f"{int8['requantize']} requantization")
    if report.get("templates"):
        templates = report["templates"]
        console.print(f"templates for {templates['templated']} of {templates['kernels']} kernels"
                      + (f"; {len(templates['tuned'])} from the tuning database" if templates["tuned"] else "")
                      + (f" (default schedule: {', '.join(templates['default_schedule'])})"
                         if templates["default_schedule"] else ""))
    if report["tuning"] is not None:
        tuning = report["tuning"]
        others = tuning["matched_up_to_constants"]
        console.print(f"tuning database: tuned schedules for {tuning['applied']} of {tuning['kernels']} kernels"
                      + (f" ({others} from kernels recorded with other constants: scales, zero points)"
                         if others else ""), soft_wrap=True)
    if target.is_host:
        from mnv3compile.runner import BundleRunner

        latency = BundleRunner(result.bundle).latency_ms()
        how = "kernel templates" if schedule == "templates" else "TVM's default schedules"
        tuned = ", tuned kernels from the database" if report["tuning"] and report["tuning"]["applied"] else ""
        console.print(f"latency: {latency:.2f} ms per inference on this machine (1 thread, {how}{tuned})")
    else:
        console.print(f"run it on the target device ({target.name}): see README, 'Deploy'")


def _warn_if_remote(tracker: str | None) -> None:
    from mnv3compile.phone import unauthenticated_warning

    warning = unauthenticated_warning(tracker) if tracker is not None else None
    if warning is not None:
        print(warning, file=sys.stderr)


def _parse_duration(text: str) -> float:
    """'90s', '30m', '2h', '1h30m' or plain seconds -> seconds."""
    import re

    parts = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", text)
    if not text.strip() or parts is None or not any(parts.groups()):
        raise UserError(f"--time-budget {text}: expected a duration like 90s, 30m, 2h or 1h30m")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in parts.groups())
    return hours * 3600 + minutes * 60 + seconds


@cli.command(context_settings=CONTEXT, epilog="""\b
Examples:
  mnv3compile tune --model small --quant int8 --time-budget 20m
  mnv3compile tune --model small --quant int8 --resume            (continue where it stopped)
  mnv3compile tune --onnx cls.onnx --input-shape x=1,3,48,192 --quant none --trials 200 --db tuned/cls
  mnv3compile build --model small --quant int8                    (finds the database by itself)
  mnv3compile tune --model small --target pixel6 --measure instructions   (no phone: arm64 under qemu)
""")
@click.option("--model", type=click.Choice(MODEL_NAMES), default=None,
              help="A zoo model [default: large, unless --onnx is given].")
@click.option("--onnx", "onnx_path", type=click.Path(path_type=Path), default=None, help="Tune this ONNX model.")
@click.option("--width", type=float, default=1.0, show_default=True, help="Zoo width multiplier.")
@click.option("--resolution", default=None, metavar="H|HxW", help=RESOLUTION_HELP)
@click.option("--target", "target_name", default="host", show_default=True,
              help="Target preset: host measures here; any other preset needs --tracker, or --measure "
                   "instructions for an arm64 one.")
@click.option("--measure", type=click.Choice(["time", "instructions"]), default="time", show_default=True,
              help="time: the kernel's latency (here, or on the --tracker's devices). instructions (arm64 "
                   "targets, no phone): the arm64 instructions one call executes under qemu-aarch64, counted "
                   "by a TCG plugin; deterministic. It sees all the work a schedule does (loop overhead, "
                   "spills, scalar code) but not cache misses, latencies or how many instructions a core "
                   "issues per cycle: a proxy that ranks schedules, not a latency.")
@click.option("--quant", type=click.Choice(["none", "int8"]), default="int8", show_default=True)
@click.option("--calib", default=None, metavar="DIR|FILE.npz|synthetic[:N]",
              help="int8 calibration data, as for build (scales do not change the kernels' shapes).")
@WEIGHT_BITS_OPTION
@click.option("--input-shape", "input_shapes", multiple=True, metavar="[NAME=]N,C,H,W",
              help="Fix a dynamic input's shape, as for build.")
@click.option("--int8-lowering", "int8_lowering", type=click.Choice(["integer", "fixed-point"]),
              default="integer", show_default=True, help="As for build: the kernels tuned are the ones it builds.")
@click.option("--trials", type=click.IntRange(min=1), default=None,
              help="Candidates to measure in this run [default: all, or as many as --time-budget allows].")
@click.option("--time-budget", default=None, metavar="DURATION",
              help="Stop starting candidates after this long (90s, 30m, 2h, 1h30m).")
@click.option("--db", "database", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Database folder [default: ~/.cache/mnv3compile/tuning/TARGET/MODEL, where build looks].")
@click.option("--resume", is_flag=True, help="Continue the run in the database folder (skips what it measured).")
@click.option("--tracker", default=None, metavar="HOST:PORT",
              help="A TVM RPC tracker whose devices (--key) measure the candidates, cross-compiled here "
                   "with the target's toolchain. TVM RPC has no authentication: keep trackers and servers "
                   "on 127.0.0.1 or a network you trust. 'mnv3compile phone start' runs a stand-in one.")
@click.option("--key", default=None, help="The device key at the tracker [default: the stand-in phone's].")
@click.option("--devices", type=click.IntRange(min=1), default=None,
              help="Use at most this many of the devices registered under --key [default: every one free "
                   "when the run starts]; each measures the next candidate when it is free.")
@click.option("--device-timeout", type=click.FloatRange(min=1), default=120, show_default=True,
              help="Seconds to wait for a device that went away before ending the run (records kept).")
@click.option("--repeat", type=click.IntRange(min=1), default=5, show_default=True,
              help="Timings per candidate; the median is kept.")
@click.option("--min-repeat-ms", type=click.IntRange(min=1), default=40, show_default=True,
              help="Each timing calls the kernel as often as fills this many milliseconds.")
@click.option("--cooldown", type=click.FloatRange(min=0), default=None,
              help="Seconds of pause before each candidate, so a phone does not heat up and throttle "
                   "[default: 1 over RPC, 0 here].")
def tune(model: str | None, onnx_path: Path | None, width: float, resolution: str, target_name: str, measure: str,
         quant: str,
         calib: str | None, weight_bits: int, input_shapes: tuple[str, ...], int8_lowering: str,
         trials: int | None, time_budget: str | None, database: Path | None, resume: bool, tracker: str | None,
         key: str | None, devices: int | None, device_timeout: float, repeat: int, min_repeat_ms: int,
         cooldown: float | None) -> None:
    """Tune a model's kernels, here or on a device over TVM RPC, into a database build applies.

    Each kernel's template (see 'build') has knobs: the output tile (pixels x vector registers
    of channels) of convs and dot products, the register count of GEMVs. tune measures every
    setting a kernel allows (tens per kernel; settings that give the same code are measured
    once) and keeps the fastest. Kernels equal up to their constants are one task. Trials go
    where they pay: first every task's default tile (the untuned latency), then tasks in order
    of their share of it, largest first, so a --trials or --time-budget that ends early has
    tuned the kernels that matter most. A live table shows each task's progress, best latency
    and gain; at the end the report is printed and written as tuning_report.json and
    tuning_report.png in the database folder.

    Nothing measured is lost: each candidate's record is on disk before the next starts. Ctrl-C
    (or a crash) keeps them; --resume continues, skipping what was measured and any candidate
    that was being measured when the run died (it is counted as failed). Kernels without a
    template (pads, the input's layout change) keep TVM's default schedule.

    Timing: TVM's time_evaluator, 1 thread, median of --repeat timings of --min-repeat-ms each,
    in this process for --target host; for a phone preset, on a device behind a TVM RPC tracker
    (--tracker, --key): candidates are cross-compiled here, uploaded and timed there, on 1 thread
    pinned to the device's big cores, after a --cooldown pause each. A device that goes away is
    waited for (--device-timeout); with several devices under the key (a farm behind one tracker,
    or 'mnv3compile phone start --devices 2'), each takes the next candidate when it is free, and
    one that goes away leaves its candidate to the others; with none left the run ends with its
    records kept.
    """
    import tempfile

    from rich.live import Live

    from mnv3compile import signals
    from mnv3compile.pipeline import BuildRequest, deployable_model
    from mnv3compile.schedules.tuning.database import check_measure, default_folder, identity, write_identity
    from mnv3compile.schedules.kernels.isa import isa_of
    from mnv3compile.schedules.tuning.measure import DeviceLost, LocalMeasurer, Measurement, RpcMeasurer, free_devices
    from mnv3compile.schedules.tuning.tune import PROGRESS_FILE, Budget, Tuner
    from mnv3compile.targets.presets import preset as target_preset
    from mnv3compile.tuning_report import plot, tasks_table
    from mnv3compile.tvm.build import fused_module, tvm_target

    target = target_preset(target_name)
    if measure == "instructions":
        if target.is_host:
            raise UserError("--measure instructions counts arm64 instructions under qemu: give an arm64 --target "
                            "(arm64-android, pixel6, rpi5, ...); --target host measures time here")
        if tracker is not None:
            raise UserError("--measure instructions runs the candidates under qemu here; leave out --tracker "
                            "(or measure time on the tracker's devices without --measure)")
    elif target.is_host and tracker is not None:
        raise UserError("--tracker measures on a device: give its --target (a phone preset); --target host "
                        "measures here")
    if not target.is_host and tracker is None and measure == "time":
        raise UserError(f"tuning for {target.name} measures on the device: give --tracker HOST:PORT (and --key) of "
                        "a TVM RPC tracker it is registered with ('mnv3compile phone start' runs a stand-in), "
                        "or --measure instructions to count instructions under qemu here")
    if tracker is not None:
        from mnv3compile.phone import default_tracker, read_state

        if key is None:
            if read_state() is None:
                raise UserError("give --key: the device key your phones registered with at the tracker")
            key = default_tracker()[1]
        if not tracker.rpartition(":")[2].isdigit():
            raise UserError(f"--tracker takes HOST:PORT of a TVM RPC tracker, got {tracker!r}")
        _warn_if_remote(tracker)
    seconds = _parse_duration(time_budget) if time_budget is not None else None
    _check_build_inputs(None, calib if quant == "int8" else None, None, None)
    loaded = _load_model(model, onnx_path, width, resolution, None, input_shapes,
                         calib if quant == "int8" else None)
    model_key = loaded.key(quant, int8_lowering, weight_bits)
    folder = database or default_folder(target.name, model_key)
    if (folder / PROGRESS_FILE).exists() and not resume:
        raise UserError(f"{folder} already holds a tuning run; add --resume to continue it, or give another --db")
    if resume:
        check_measure(folder, measure)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--db {folder}: exists and is not a folder")
    tvm_tgt = tvm_target(target)
    notes: list[str] = []
    with console.status("preparing the kernels (optimize, quantize, TVM pipeline)"):
        request = BuildRequest(target, folder, loaded.name, loaded.model, quant, calib, weight_bits=weight_bits)
        _, deployed, _ = deployable_model(request, notes)
        module, more_notes, _, _ = fused_module(deployed, tvm_tgt, int8_lowering)
    for note in loaded.notes + notes + more_notes:
        console.print(f"note: {note}")
    with tempfile.TemporaryDirectory(prefix="mnv3compile-tune-") as work:
        settings = Measurement(repeat, min_repeat_ms, cooldown if cooldown is not None else
                               (0.0 if tracker is None else 1.0))
        if measure == "instructions":
            from mnv3compile.schedules.tuning.instructions import InstructionMeasurer

            with console.status("preparing the qemu instruction counter (built once)"):
                measurers = [InstructionMeasurer(tvm_tgt, Path(work))]
        elif tracker is None:
            measurers = [LocalMeasurer(tvm_tgt, Path(work), settings)]
        else:
            from mnv3compile.targets.toolchains import toolchain_for

            count = max(1, min(devices or 10**6, free_devices(tracker, key)))
            measurers = [RpcMeasurer(tvm_tgt, toolchain_for(target), tracker, key, Path(work) / f"device{i}", settings,
                                    device_timeout, log=lambda text: console.print(f"note: {text}"),
                                    name=f"device {i}") for i in range(1, count + 1)]
            if count > 1:
                console.print(f"note: {count} devices with key {key!r} at {tracker}: each measures the next "
                              "candidate when it is free")
        tuner = Tuner(folder, module, tvm_tgt, isa_of(tvm_tgt), measurers)
        write_identity(folder, {**identity(target.name, tvm_tgt), "measure": measure}, model_key)
        total = sum(len(t.candidates) for t in tuner.tasks)
        done = sum(Tuner.measured(c) for t in tuner.tasks for c in t.candidates)
        console.print(f"tuning {len(tuner.tasks)} tasks ({sum(t.weight for t in tuner.tasks)} kernels), "
                      f"{total} candidates, {done} measured before; database: {folder}", soft_wrap=True)
        title = f"tune {model_key} on {target.name}"
        interrupted = None
        with Live(tasks_table(tuner.report(), title, top=15), console=console, refresh_per_second=2,
                  transient=True) as live:
            tuner.on_progress = lambda t: live.update(tasks_table(t.report(), title, top=15))
            try:
                tuner.run(Budget(trials, seconds))
            except (signals.Interrupted, DeviceLost) as exc:
                interrupted = exc
            finally:
                for measurer in measurers:
                    if isinstance(measurer, RpcMeasurer):
                        measurer.close()
    report = tuner.report()
    (folder / "tuning_report.json").write_text(json.dumps(report, indent=1) + "\n")
    plot(report, folder / "tuning_report.png", title)
    wide_console().print(tasks_table(report, title))
    remaining = total - sum(Tuner.measured(c) for t in tuner.tasks for c in t.candidates)
    if tracker is not None and tuner.per_device:
        console.print("timed per device: " + ", ".join(f"{measurer.name} {tuner.per_device[measurer.name]}"
                                                        for measurer in measurers))
    console.print(f"database: {folder} ({report['trials_this_run']} candidates measured in this run, "
                  f"{remaining} left; report: tuning_report.json, tuning_report.png)", soft_wrap=True)
    if interrupted is not None or remaining:
        again = " ".join(a for a in _INVOCATION if a != "--resume")
        console.print(f"continue with: mnv3compile {again} --resume", soft_wrap=True)
    if isinstance(interrupted, DeviceLost):
        raise UserError(f"{interrupted}; every candidate measured before is in {folder}")
    if interrupted is not None:
        raise interrupted
    console.print("build applies it: mnv3compile build " + (f"--db {folder}" if database else
                                                             "(same model options; it finds the database)"),
                  soft_wrap=True)


def _found_database(target, model_key: str, tuned_for: dict) -> Path | None:
    """The database build applies when no --db is given (shipped.find_database), said which."""
    from mnv3compile.schedules.kernels.isa import isa_of
    from mnv3compile.schedules.tuning.shipped import find_database
    from mnv3compile.tvm.build import tvm_target

    isa = isa_of(tvm_target(target)).name
    found = find_database(target.name, isa, model_key)
    if found is None:
        return None
    folder, shipped = found
    if shipped is None:
        _check_build_inputs(None, None, folder, None, tuned_for)
        console.print(f"tuning database: {folder} (from 'mnv3compile tune'; --no-db ignores it)", soft_wrap=True)
    else:
        how = "arm64 instruction counts under qemu" if shipped.get("measure") == "instructions" else "timings"
        console.print(f"tuning database: shipped for {isa} {model_key} (tuned on {shipped.get('target')} by {how}; "
                      "'mnv3compile tune' on your device replaces it, --no-db ignores it)", soft_wrap=True)
    return folder


def _shapes_from_calibration(model, calib: str | None) -> dict[str, list[int]] | None:
    """A dynamic input's shape taken from the calibration tensors (.npy/.npz), said so."""
    from mnv3compile.analysis import dynamic_input_shape
    from mnv3compile.quant.calibration import tensor_file_shape

    shapes = dynamic_input_shape(model, tensor_file_shape(calib))
    for name, shape in (shapes or {}).items():
        console.print(f"note: input '{name}' is {tuple(shape)}, the shape of the calibration data's samples",
                      soft_wrap=True)
    return shapes


def _load_model(model, onnx_path, width, resolution, weights, input_shapes, calib: str | None = None):
    from mnv3compile.model_source import load_model
    from mnv3compile.onnx_io import load_onnx

    shapes = None
    if input_shapes:
        if onnx_path is None:
            raise UserError("--input-shape fixes an ONNX model's dynamic inputs; a zoo model has none")
        shapes = parse_input_shapes(input_shapes, load_onnx(onnx_path))
    elif onnx_path is not None and calib is not None:
        shapes = _shapes_from_calibration(load_onnx(onnx_path), calib)
    with console.status("loading the model") as status:
        return load_model(model, onnx_path, width, resolution, weights, shapes, on_status=status.update)


def _check_build_inputs(labels: Path | None, calib: str | None, database: Path | None, output: Path | None,
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


@cli.command(context_settings=CONTEXT, epilog="""\b
Examples:
  mnv3compile bench build/small-int8-host --vs-onnxruntime
  mnv3compile bench build/small-int8-host build/small-fake build/small-none-host --vs-onnxruntime
  mnv3compile bench build/large-int8-host --runs 300 --threads 2 --json > large.json
""")
@click.argument("bundles", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--vs-onnxruntime", is_flag=True,
              help="Also time onnxruntime on each bundle's float model and on its int8 QDQ model.")
@click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Threads for every contender (TVM_NUM_THREADS and onnxruntime's intra-op threads).")
@click.option("--runs", type=click.IntRange(10, 100000), default=100, show_default=True,
              help="Timed calls of each contender, after 5 warm-up calls.")
@click.option("--max-seconds", type=click.FloatRange(1, None), default=120, show_default=True,
              help="Stop earlier when the timed rounds have taken this long (at least 10 rounds).")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
def bench(bundles: tuple[Path, ...], vs_onnxruntime: bool, threads: int, runs: int, max_seconds: float,
          as_json: bool) -> None:
    """Latency of host bundles (median and 10th-90th percentile of single calls), side by side
    with onnxruntime when asked, measured interleaved in one process: each round calls every
    contender once in turn, so a busy machine slows all of them alike and the ratios stay fair.
    Ratios are against onnxruntime fp32 when it is measured, else against the first bundle."""
    from mnv3compile import bench as benchmark

    entries = benchmark.contenders(list(bundles), vs_onnxruntime, threads)
    with console.status("measuring") as status:
        benchmark.measure(entries, runs, max_seconds,
                          lambda done, total: status.update(f"measuring: round {done} of {total}"))
    table_rows = benchmark.rows(entries)
    reference, cpu = benchmark.reference_label(entries), benchmark.cpu_name()
    if as_json:
        click.echo(json.dumps(benchmark.to_json(table_rows, threads, reference, cpu), indent=2))
        return
    table = Table(title=f"{cpu}, {threads} thread{'s' if threads > 1 else ''}; ratio = median / {reference}")
    for column in ("contender", "what", "median ms", "p10-p90 ms", "runs", "ratio"):
        table.add_column(column, justify="right" if column not in ("contender", "what") else "left")
    for row in table_rows:
        table.add_row(row.name, row.detail, f"{row.median_ms:.3f}", f"{row.p10_ms:.3f}-{row.p90_ms:.3f}",
                      str(row.runs), f"{row.ratio:.2f}x")
    wide_console().print(table)


@cli.command(context_settings=CONTEXT, epilog="""\b
Examples:
  mnv3compile profile build/small-int8-host
  mnv3compile profile build/small-none-host --png small-fp32.png --json > small-fp32.json
""")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--runs", type=int, default=20, show_default=True, help="Inferences per kernel median.")
@click.option("--top", type=int, default=25, show_default=True, help="How many of the slowest kernels to list.")
@click.option("--png", "png_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also draw the slowest kernels as a bar chart.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def profile(bundle: Path, runs: int, top: int, png_path: Path | None, as_json: bool) -> None:
    """Time per kernel of a host bundle (median over runs), its share of one inference and the
    template that scheduled it; the time outside kernels (VM dispatch, allocation) is the
    uninstrumented total minus the kernels' sum."""
    from mnv3compile.profile import plot, profile_bundle

    with console.status("profiling"):
        result = profile_bundle(bundle, runs)
    if png_path is not None:
        plot(result, png_path, Path(bundle).name, top)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    total_us = result.total_ms * 1e3
    table = Table(title=f"{Path(bundle).name}: {result.total_ms:.3f} ms per inference, kernels "
                        f"{result.kernel_ms:.3f} ms, outside kernels {result.total_ms - result.kernel_ms:.3f} ms "
                        f"(timed calls add {result.instrumented_ms - result.total_ms:.3f} ms)")
    for column in ("kernel", "template", "calls", "us", "share"):
        table.add_column(column, justify="right" if column in ("calls", "us", "share") else "left")
    for k in result.kernels[:top]:
        table.add_row(k.kernel[:48], k.template, str(k.calls), f"{k.microseconds:.1f}",
                      f"{100 * k.microseconds / total_us:.1f}%")
    wide_console().print(table)
    if png_path is not None:
        console.print(f"wrote {png_path}")


@cli.command(context_settings=CONTEXT, epilog="""\b
Examples:
  mnv3compile run build/small-int8-host examples/sample.png  (a bundle built with --preprocess)
  mnv3compile run build/small-none-host input.npy --top 3
  mnv3compile run build/ssd-int8-host street.jpg --draw boxes.png --score 0.5
""")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("input_path", metavar="IMAGE|TENSOR.npy", type=click.Path(path_type=Path))
@click.option("--top", type=int, default=5, show_default=True, help="Classes (or detections) to print.")
@click.option("--score", "score_threshold", type=click.FloatRange(0, 1), default=0.3, show_default=True,
              help="Detectors: the lowest class probability a detection may have.")
@click.option("--iou", "iou_threshold", type=click.FloatRange(0, 1), default=0.55, show_default=True,
              help="Detectors: boxes of one class overlapping more than this are suppressed.")
@click.option("--draw", "draw_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Detectors: write the image with its detections drawn.")
@click.option("--rpc", "rpc_tracker", default=None, is_flag=False, flag_value="phone", metavar="[HOST:PORT]",
              help="Run on a device behind a TVM RPC tracker; bare --rpc means the stand-in phone.")
@click.option("--key", default=None, help="The device key at the tracker [default: the stand-in phone's].")
def run(bundle: Path, input_path: Path, top: int, score_threshold: float, iou_threshold: float,
        draw_path: Path | None, rpc_tracker: str | None, key: str | None) -> None:
    """Run a bundle on one image (preprocessed as the manifest says) or a .npy tensor: here for a
    host bundle, or over TVM RPC on a phone (or the stand-in phone) for an arm64 one.

    \b
    Classifiers print the top classes; SSDLite detectors print boxes after per-class non-maximum
    suppression (in Python here, as the C runtime does on the device side)."""
    import numpy as np

    from mnv3compile import detection
    from mnv3compile.runner import BundleRunner

    runner = BundleRunner(bundle, remote=rpc_tracker is not None)
    if rpc_tracker is not None:
        from mnv3compile.targets.compatibility import require_runs_on_device

        require_runs_on_device(bundle, runner.manifest["target"]["preset"], stand_in=rpc_tracker == "phone", key=key)
    names = [o["name"] for o in runner.manifest["outputs"]]
    if draw_path is not None and not detection.is_detector(names):
        raise UserError("--draw is for detectors (a bundle with boxes and scores outputs)")
    if draw_path is not None and input_path.suffix.lower() in (".npy", ".npz"):
        raise UserError("--draw needs an image input, not a tensor")
    x = runner.load_input(input_path)
    if rpc_tracker is not None:
        from mnv3compile.phone import run_remote

        tracker = None if rpc_tracker == "phone" else rpc_tracker
        _warn_if_remote(tracker)
        (outputs,) = run_remote(runner.library_path, [x], tracker, key, outputs_per_call=len(names))
        outputs = outputs if isinstance(outputs, list) else [outputs]
    else:
        outputs = runner.outputs(x)
    labels = runner.labels()
    if detection.is_detector(names):
        _print_detections(detection.detect(*outputs, score_threshold, iou_threshold), runner.input_shape, labels,
                          top, input_path, draw_path)
        return
    output = outputs[0]
    if output.ndim != 2:
        console.print(f"output {runner.manifest['outputs'][0]['name']}: shape {output.shape}, "
                      f"min {output.min():.4g}, max {output.max():.4g}")
        return
    scores = output[0]
    for rank, index in enumerate(np.argsort(-scores)[:top], 1):
        label = f"  {labels[index]}" if labels and index < len(labels) else ""
        console.print(f"{rank}. class {index}{label}: {scores[index]:.4f}")


def _print_detections(found, input_shape, labels, top: int, input_path: Path, draw_path: Path | None) -> None:
    from mnv3compile import detection

    height, width = input_shape[2:]
    console.print(f"{len(found)} detections" + (f", the best {top}:" if len(found) > top else ":"))
    for item in found[:top]:
        x1, y1, x2, y2 = item.box
        label = f" {labels[item.class_id]}" if labels and item.class_id < len(labels) else ""
        console.print(f"  class {item.class_id}{label}: {item.score:.3f} at ({x1 * width:.0f}, {y1 * height:.0f})-"
                      f"({x2 * width:.0f}, {y2 * height:.0f}) px of the {width}x{height} input")
    if draw_path is not None:
        detection.draw(input_path, found[:top], draw_path, labels)
        console.print(f"wrote {draw_path}")


@cli.command(context_settings=CONTEXT, epilog="""\b
Examples:
  mnv3compile targets
  mnv3compile build --model small --target pixel6
""")
def targets() -> None:
    """List the target presets: TVM target, toolchain."""
    from mnv3compile.targets.presets import PRESETS

    table = Table(title="targets")
    for column in ("name", "description", "triple", "mcpu", "features", "toolchain"):
        table.add_column(column)
    for p in PRESETS:
        table.add_row(p.name, p.description, p.triple or "(this machine)", p.mcpu or "",
                      " ".join(p.mattr), p.toolchain)
    wide_console(160).print(table)


@cli.command(context_settings=CONTEXT, epilog="""\b
Examples:
  mnv3compile doctor
  ANDROID_NDK_HOME=~/Android/Sdk/ndk/27.0.12077973 mnv3compile doctor
""")
def doctor() -> None:
    """Which toolchains and tools are here, and how to install what is missing."""
    import shutil

    from mnv3compile.targets.toolchains import INSTALL, status

    table = Table(title="toolchains")
    for column in ("for", "found", "install with"):
        table.add_column(column)
    for kind in INSTALL:
        found = status(kind)
        table.add_row(kind, found.found or "[red]missing[/red]", "" if found.found else found.how_to_install)
    qemu = shutil.which("qemu-aarch64")
    table.add_row("stand-in phone (qemu)", qemu or "[red]missing[/red]",
                  "" if qemu else "apt-get install qemu-user binfmt-support")
    console.print(table)
    try:
        import tvm

        console.print(f"TVM {tvm.__version__} from {Path(tvm.__file__).parent}")
    except Exception as exc:  # the doctor reports, it does not fail
        console.print(f"[red]TVM does not import: {exc}[/red]")


@cli.group(context_settings=CONTEXT, epilog="""\b
Examples:
  mnv3compile phone start
  mnv3compile build --model small --target arm64-linux --quant none -o build/small-arm
  mnv3compile run build/small-arm input.npy --rpc
  mnv3compile phone stop
""")
def phone() -> None:
    """The stand-in phone: arm64 TVM runtime under qemu-user, serving TVM RPC on 127.0.0.1.

    Lets you try the arm64 path without a phone. The first start builds an arm64 sysroot
    (about a minute; apt and pip downloads, nothing emulated) and registers qemu-aarch64 with
    binfmt_misc (needs root, qemu-user and binfmt-support). Emulated time is not phone speed.
    """


@phone.command("start", epilog="""\b
Examples:
  mnv3compile phone start && mnv3compile run build/small-arm x.npy --rpc
  mnv3compile phone start --devices 2     (two devices under one key: 'tune' measures on both)
""")
@click.option("--devices", type=click.IntRange(min=1, max=5), default=1, show_default=True,
              help="Emulated devices behind the tracker, all under one key (adds to running ones).")
def phone_start(devices: int) -> None:
    """Start the tracker and the emulated RPC servers (reuses running ones; replaces dead ones)."""
    from mnv3compile import phone as stand_in

    with console.status("starting the stand-in phone"):
        state = stand_in.start(devices=devices)
    pids = ", ".join(str(pid) for pid in [state.tracker_pid, *state.server_pids])
    console.print(f"stand-in phone up: tracker {state.tracker()}, key {state.key!r}, "
                  f"{len(state.server_pids)} device{'s' if len(state.server_pids) > 1 else ''} (pids {pids})")


@phone.command("status", epilog="""\b
Examples:
  mnv3compile phone status
""")
def phone_status() -> None:
    """Say whether the stand-in phone is running, and where."""
    from mnv3compile import phone as stand_in

    state = stand_in.read_state()
    if state is None:
        console.print("stand-in phone: not running")
    else:
        console.print(f"stand-in phone: running, tracker {state.tracker()}, key {state.key!r}")


@phone.command("stop", epilog="""\b
Examples:
  mnv3compile phone stop
""")
def phone_stop() -> None:
    """Stop the tracker and server this tool started (by PID)."""
    from mnv3compile import phone as stand_in

    console.print("stand-in phone stopped" if stand_in.stop() else "stand-in phone was not running")


@cli.command("deploy-test", context_settings=CONTEXT, epilog="""\b
Examples:
  mnv3compile deploy-test build/small-int8-host
  mnv3compile deploy-test build/small-int8-arm64-linux       # under qemu-aarch64
  mnv3compile deploy-test build/small-none-host --image cat.png
  mnv3compile deploy-test build/small-int8-pixel6            # Android: the loader check only
""")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--image", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also compare on this image (PPM, or PNG/JPEG when stb_image is installed): the C "
                   "runtime's preprocessing against Python's. Needs a bundle built with --preprocess.")
@click.option("--build-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where CMake builds the runtime (default: a folder under the user's cache, reused).")
def deploy_test(bundle: Path, image: Path | None, build_dir: Path | None) -> None:
    """Build the C runtime and examples/classify with CMake for the bundle's target, run them on
    the bundle and compare every output with the Python runtime's (max |difference| <= 1e-5).

    Host bundles run here; arm64-linux bundles run under qemu-aarch64 with the stand-in phone's
    sysroot, the Python reference running inside it too. Both run under Android's loading rules:
    every symbol bound at load (LD_BIND_NOW=1), and once more with the runtime loaded RTLD_LOCAL,
    as System.loadLibrary loads it. Android bundles (arm64-android, pixel*) cannot run here: their
    library is checked as Android's loader would check it (every undefined symbol provided by a
    library it names in DT_NEEDED, 16 KiB segment alignment). Exit code 1 when a check fails.
    """
    from mnv3compile import deploy_check
    from mnv3compile.targets.arm64_sysroot import home

    if image is not None and not image.is_file():
        raise UserError(f"{image}: no such image")
    android = deploy_check.android_loader_check(bundle)
    if android is not None:
        _print_android_loader_check(android)
        return
    folder = build_dir or home().parent / "runtime-build"
    with console.status("building the C runtime with CMake and running it"):
        report = deploy_check.check_bundle(bundle, folder, image)
    table = Table(title=f"C runtime vs Python runtime: {bundle} ({report.arch})")
    for column in ("input", "max |diff|", "top-5 C", "top-5 Python", "result"):
        table.add_column(column, justify="right" if column == "max |diff|" else "left")
    for row in report.rows:
        table.add_row(row.what, f"{row.max_abs_diff:.2e}", " ".join(map(str, row.top5_c)),
                      " ".join(map(str, row.top5_python)), "ok" if row.ok else f"DIFFERS (> {deploy_check.TOLERANCE:g})")
    wide_console().print(table)
    console.print(f"runtime built in {report.runtime}")
    if not report.ok:
        sys.exit(1)


def _print_android_loader_check(check) -> None:
    table = Table(title=f"Android loader check: {check.library}")
    table.add_column("undefined symbol")
    table.add_column("bound to (DT_NEEDED)")
    for symbol, library in check.bindings:
        table.add_row(symbol, library)
    for symbol in check.unresolved:
        table.add_row(symbol, "NOTHING: the load fails")
    wide_console().print(table)
    console.print(f"DT_NEEDED: {', '.join(check.needed)}; segment alignment: {min(check.load_alignments)} bytes")
    if check.problems:
        console.print("[red]it would not load on Android:[/red] " + "; ".join(check.problems))
        sys.exit(1)
    console.print("ok: it loads under Android's rules. Running it needs a device (README, 'Deploy').")


@cli.command("passes", context_settings=CONTEXT, epilog="""\b
Examples:
  mnv3compile passes
  mnv3compile optimize model.onnx --passes cleanup,fold_batchnorm -o model.bn.onnx
""")
def list_passes() -> None:
    """List the optimize pipeline's passes, in order, with what each does."""
    from mnv3compile.passes.registry import PIPELINE

    table = Table(title="optimize pipeline")
    table.add_column("#", justify="right")
    table.add_column("pass")
    table.add_column("what it does")
    for index, graph_pass in enumerate(PIPELINE, 1):
        table.add_row(str(index), graph_pass.name, graph_pass.summary)
    wide_console().print(table)


def _print_pass_report(pass_report) -> None:
    table = Table(title="passes")
    for column in ("pass", "matched", "rewritten", "refused", "nodes", "max rel err"):
        table.add_column(column, justify="left" if column in ("pass", "refused") else "right")
    for entry in pass_report.passes:
        refused = "; ".join(f"{reason} x{count}" for reason, count in entry.refused.items())
        error = "" if entry.errors is None else f"{max(e.max_rel for e in entry.errors):.2e}"
        table.add_row(entry.name, str(entry.matched), str(entry.rewritten), refused,
                      f"{sum(entry.ops_before.values())} -> {sum(entry.ops_after.values())}", error)
    wide = wide_console()
    wide.print(table)
    ops = Table(title="ops before -> after")
    for column in ("op", "before", "after"):
        ops.add_column(column, justify="left" if column == "op" else "right")
    before, after = pass_report.ops_before, pass_report.ops_after
    for op_type in sorted(set(before) | set(after)):
        ops.add_row(op_type, str(before.get(op_type, 0)), str(after.get(op_type, 0)))
    wide.print(ops)


def _shape(shape) -> str:
    return "?" if shape is None else "x".join(str(d) for d in shape)


@cli.command(context_settings=CONTEXT, epilog="""\b
Examples:
  mnv3compile inspect large.onnx
  mnv3compile inspect ch_ppocr_mobile_v2.0_cls_infer.onnx --json > layers.json
""")
@click.argument("model_path", metavar="MODEL.onnx", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="[NAME=]N,C,H,W",
              help="Fix a dynamic input's shape, e.g. --input-shape x=1,3,48,192 (NAME may be "
                   "omitted for a one-input model). Repeatable.")
def inspect(model_path: Path, as_json: bool, input_shapes: tuple[str, ...]) -> None:
    """Per-layer table of any ONNX model: op, output shape, MAdds, parameters, totals.

    MAdds count the multiply-adds of Conv/Gemm/MatMul for a batch of one; parameters are
    learnable tensors (BatchNorm running statistics are not parameters). Dynamic input
    dimensions are counted as 1.
    """
    from mnv3compile.analysis import analyze
    from mnv3compile.onnx_io import load_onnx

    model = load_onnx(model_path)
    stats = analyze(model, parse_input_shapes(input_shapes, model))
    if as_json:
        click.echo(json.dumps({"model": str(model_path), **stats.to_json()}, indent=2))
        return
    table = Table(title=str(model_path))
    for column, justify in (("#", "right"), ("name", "left"), ("op", "left"),
                            ("output", "left"), ("MAdds", "right"), ("params", "right")):
        table.add_column(column, justify=justify)
    for index, layer in enumerate(stats.layers):
        table.add_row(str(index), layer.name, layer.op, _shape(layer.output_shape),
                      f"{layer.madds:,}" if layer.madds else "", f"{layer.params:,}" if layer.params else "")
    table.add_section()
    table.add_row("", "total", f"{len(stats.layers)} nodes", "",
                  f"{stats.total_madds:,}", f"{stats.total_params:,}")
    wide_console().print(table)
    inputs = ", ".join(f"{k} {_shape(v)}" for k, v in stats.inputs.items())
    outputs = ", ".join(f"{k} {_shape(v)}" for k, v in stats.outputs.items())
    console.print(f"inputs: {inputs}; outputs: {outputs}")
    console.print(f"{stats.total_madds / 1e6:.2f} M MAdds, {stats.total_params / 1e6:.3f} M parameters")
    for note in stats.notes:
        console.print(f"note: {note}")


_INVOCATION: list[str] = []  # the arguments main() runs with ('tune' repeats them to say how to resume)


def user_message(exc: UserError) -> str:
    """The library's typed errors, worded with what to do about them on the command line."""
    if isinstance(exc, DynamicShapeError):
        return f"{exc}; give --input-shape {exc.input_name}=N,C,H,W {exc.purpose}"
    if isinstance(exc, NotCanonicalError):
        return f"{exc}; run 'mnv3compile optimize' first"
    return str(exc)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry: run the CLI; user errors become one line on stderr and exit 2;
    SIGINT/SIGTERM one line and exit 130/143, nothing half-written (mnv3compile/signals.py)."""
    from mnv3compile import signals

    _INVOCATION[:] = sys.argv[1:] if argv is None else argv

    with signals.handled():
        try:
            cli.main(args=argv, prog_name="mnv3compile", standalone_mode=False)
            signals.check()  # a signal swallowed inside C++ code still ends the command as one
        except signals.Interrupted as exc:
            print(f"error: aborted ({exc})", file=sys.stderr)
            return signals.exit_code(exc.signum)
        except UserError as exc:
            print(f"error: {user_message(exc)}", file=sys.stderr)
            return 2
        except click.exceptions.Exit as exc:
            return exc.exit_code
        except click.exceptions.Abort:
            print("error: aborted (SIGINT)", file=sys.stderr)
            return 130
        except click.ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare 'mnv3compile': help, not an error
                print(exc.format_message())
                return 0
            print(f"error: {exc.format_message()}", file=sys.stderr)
            return 2
        except Exception:
            signum = signals.received()
            if signum is None:
                raise
            # The signal arrived inside TVM's C++ code and came back as TVM's own error.
            print(f"error: aborted ({signals.name(signum)})", file=sys.stderr)
            return signals.exit_code(signum)
    return 0


if __name__ == "__main__":
    sys.exit(main())
