"""The model commands: export (a zoo variant as ONNX), zoo (the variants' sizes), inspect (any ONNX
model, layer by layer), optimize (into the canonical form) and passes (what optimize runs)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from mnv3compile.cli import CONTEXT, cli, console, parse_input_shapes, wide_console
from mnv3compile.cli.options import RESOLUTION_HELP
from mnv3compile.errors import UserError
from mnv3compile.zoo.spec import MODEL_NAMES


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
    from mnv3compile import api, zoo
    from mnv3compile.onnx_io import save_onnx

    spec = zoo.build_spec(model, width, resolution, classes, reduced_tail)
    size = "x".join(map(str, spec.resolution))
    with console.status(f"building {spec.name} x{width} @ {size}"):
        onnx_model = api.export(model, width=width, resolution=resolution, classes=classes, weights=weights,
                                seed=seed, reduced_tail=reduced_tail)
    if save_weights is not None:
        zoo.save_state_dict(zoo.state_dict_from_onnx(onnx_model, spec), save_weights)
    save_onnx(onnx_model, output)
    stats = api.analyze(onnx_model)
    source = f"weights {weights}" if weights else f"random weights, seed {seed}"
    console.print(f"wrote {output}: MobileNetV3-{spec.name} width {width} {size}, "
                  f"{spec.num_classes} classes, {stats.total_params:,} parameters, "
                  f"{stats.total_madds / 1e6:.1f} M MAdds ({source})")
    if save_weights is not None:
        console.print(f"wrote {save_weights}: state dict")


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
    from mnv3compile import api
    from mnv3compile.onnx_io import save_onnx, write_atomic
    from mnv3compile.passes.census import non_canonical

    passes = [n.strip() for n in pass_names.split(",") if n.strip()] if pass_names else None
    shapes = parse_input_shapes(input_shapes)
    if explain_pass is not None:
        for line in api.explain(model_path, explain_pass, passes=passes, input_shapes=shapes):
            print(line)
        return
    if output is None:
        raise UserError("give -o OUT.onnx (where to write the optimized model)")
    with console.status("optimizing") as status:
        result, pass_report = api.optimize_with_report(model_path, passes=passes, verify=verify, tolerance=tolerance,
                                                       input_shapes=shapes,
                                                       on_pass=lambda name: status.update(f"pass {name}"))
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
    from mnv3compile import api

    stats = api.analyze(model_path, input_shapes=parse_input_shapes(input_shapes))
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
