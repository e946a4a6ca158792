"""Running bundles: run (one input, here or on a device over TVM RPC), bench (latency, beside
onnxruntime) and profile (time per kernel)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from mnv3compile.cli import CONTEXT, cli, console, warn_if_remote, wide_console
from mnv3compile.cli.options import AFFINITY_OPTION, threads_option
from mnv3compile.errors import UserError


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
@threads_option(0)
@AFFINITY_OPTION
def run(bundle: Path, input_path: Path, top: int, score_threshold: float, iou_threshold: float,
        draw_path: Path | None, rpc_tracker: str | None, key: str | None, threads: int, affinity: str) -> None:
    """Run a bundle on one image (preprocessed as the manifest says) or a .npy tensor: here for a
    host bundle, or over TVM RPC on a phone (or the stand-in phone) for an arm64 one.

    \b
    Classifiers print the top classes; SSDLite detectors print boxes after per-class non-maximum
    suppression (in Python here, as the C runtime does on the device side)."""
    import numpy as np

    from mnv3compile import detection
    from mnv3compile.bundle import Bundle

    loaded = Bundle.load(bundle, threads=threads, affinity=affinity)
    names = [o["name"] for o in loaded.outputs]
    if draw_path is not None and not detection.is_detector(names):
        raise UserError("--draw is for detectors (a bundle with boxes and scores outputs)")
    if draw_path is not None and input_path.suffix.lower() in (".npy", ".npz"):
        raise UserError("--draw needs an image input, not a tensor")
    if rpc_tracker is not None:
        warn_if_remote(None if rpc_tracker == "phone" else rpc_tracker)
    def remote_threads(count: int) -> None:
        if threads and count < threads:
            console.print(f"[yellow]warning:[/] the device runs {count} worker{'s' if count > 1 else ''}, "
                          f"not the {threads} asked (its TVM_NUM_THREADS?)")

    outputs = loaded.run(input_path, tracker=rpc_tracker, key=key, on_threads=remote_threads)
    labels = loaded.labels
    if detection.is_detector(names):
        _print_detections(detection.detect(*outputs, score_threshold, iou_threshold), loaded.inputs[0]["shape"], labels,
                          top, input_path, draw_path)
        return
    output = outputs[0]
    if output.ndim != 2:
        console.print(f"output {names[0]}: shape {output.shape}, "
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
  mnv3compile bench build/small-int8-host --vs-onnxruntime
  mnv3compile bench build/small-int8-host build/small-fake build/small-none-host --vs-onnxruntime
  mnv3compile bench build/large-int8-host --runs 300 --threads 2 --json > large.json
  mnv3compile bench build/small-int8-host --vs-onnxruntime --cold-starts 5

\b
Each contender runs in a process of its own, stopped while the others run (two thread
pools in one process take each other's cores). Its start is measured from cold: time to
first result (ours: library load + VM; onnxruntime: session creation; then the first
inference), and peak resident memory, with what the model added to its runtime's.
""")
@click.argument("bundles", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--vs-onnxruntime", is_flag=True,
              help="Also time onnxruntime on each bundle's float model and on its int8 QDQ model.")
@threads_option(1)
@AFFINITY_OPTION
@click.option("--runs", type=click.IntRange(10, 100000), default=100, show_default=True,
              help="Timed calls of each contender, after 5 warm-up calls.")
@click.option("--max-seconds", type=click.FloatRange(1, None), default=120, show_default=True,
              help="Stop earlier when the timed rounds have taken this long (at least 10 rounds).")
@click.option("--cold-starts", type=click.IntRange(1, 100), default=3, show_default=True,
              help="Fresh processes each contender's start-up is measured in (medians).")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
def bench(bundles: tuple[Path, ...], vs_onnxruntime: bool, threads: int, affinity: str, runs: int,
          max_seconds: float, cold_starts: int, as_json: bool) -> None:
    """Latency of host bundles (median and 10th-90th percentile of single calls), side by side
    with onnxruntime when asked, measured interleaved: each round gives every contender a turn
    (10 calls), in a new order, so a busy machine slows all of them alike and the ratios stay
    fair; and each one's start from a cold process. Ratios are against onnxruntime fp32 when it
    is measured, else against the first bundle."""
    from mnv3compile import api

    with console.status("measuring") as status:
        result = api.bench(list(bundles), vs_onnxruntime=vs_onnxruntime, threads=threads, affinity=affinity,
                           runs=runs, max_seconds=max_seconds, cold_starts=cold_starts, on_status=status.update,
                           progress=lambda done, total: status.update(f"measuring: round {done} of {total}"))
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    table = Table(title=f"{result.cpu}, {threads} thread{'s' if threads > 1 else ''}; ratio = median / "
                        f"{result.reference}")
    for column in ("contender", "what", "median ms", "p10-p90 ms", "runs", "ratio"):
        table.add_column(column, justify="right" if column not in ("contender", "what") else "left")
    for row in result.rows:
        table.add_row(row.name, row.detail, f"{row.median_ms:.3f}", f"{row.p10_ms:.3f}-{row.p90_ms:.3f}",
                      str(row.runs), f"{row.ratio:.2f}x")
    wide_console().print(table)
    starts = Table(title=f"start from a cold process (medians of {cold_starts}); first result = open + first "
                         "inference; model MiB = peak resident minus after the runtime's import")
    for column in ("contender", "what", "first result ms", "open ms", "first run ms", "import ms", "peak MiB",
                   "model MiB"):
        starts.add_column(column, justify="right" if column not in ("contender", "what") else "left")
    for row in result.rows:
        starts.add_row(row.name, row.detail, f"{row.first_result_ms:.1f}", f"{row.open_ms:.1f}",
                       f"{row.first_run_ms:.1f}", f"{row.import_ms:.0f}", f"{row.peak_mib:.0f}", f"{row.model_mib:.1f}")
    wide_console().print(starts)


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
@threads_option(0)
@AFFINITY_OPTION
def profile(bundle: Path, runs: int, top: int, png_path: Path | None, as_json: bool, threads: int,
            affinity: str) -> None:
    """Time per kernel of a host bundle (median over runs), its share of one inference and the
    template that scheduled it; the time outside kernels (VM dispatch, allocation) is the
    uninstrumented total minus the kernels' sum."""
    from mnv3compile.bundle import Bundle
    from mnv3compile.profile import plot

    with console.status("profiling"):
        result = Bundle.load(bundle, threads=threads, affinity=affinity).profile(runs)
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
