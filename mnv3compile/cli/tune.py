"""'mnv3compile tune': its options, and the tuning session (schedules/tuning/session.py) shown on the
console: a live table of the tasks while it measures, the report at the end."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click
from rich.live import Live

from mnv3compile.cli import (CONTEXT, INVOCATION, RegistryChoice, cli, console, parse_input_shapes, warn_if_remote,
                             wide_console)
from mnv3compile.cli.options import RESOLUTION_HELP, WEIGHT_BITS_OPTION, model_argument
from mnv3compile.errors import UserError
from mnv3compile.schedules.tuning.session import MEASURES, Display
from mnv3compile.zoo.spec import MODEL_NAMES


def parse_duration(text: str) -> float:
    """'90s', '30m', '2h', '1h30m' or plain seconds -> seconds."""
    import re

    parts = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", text)
    if not text.strip() or parts is None or not any(parts.groups()):
        raise UserError(f"--time-budget {text}: expected a duration like 90s, 30m, 2h or 1h30m")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in parts.groups())
    return hours * 3600 + minutes * 60 + seconds


class ConsoleDisplay(Display):
    """The session on the console: spinners for the slow steps, notes, and a live table of the 15
    tasks that weigh most, gone when the run ends (the whole report is printed then)."""

    def status(self, text: str):
        return console.status(text)

    def note(self, text: str) -> None:
        console.print(f"note: {text}")

    def started(self, tuner, folder: Path) -> None:
        total = sum(len(t.candidates) for t in tuner.tasks)
        done = sum(tuner.measured(c) for t in tuner.tasks for c in t.candidates)
        console.print(f"tuning {len(tuner.tasks)} tasks ({sum(t.weight for t in tuner.tasks)} kernels), "
                      f"{total} candidates, {done} measured before; database: {folder}", soft_wrap=True)

    @contextlib.contextmanager
    def progress(self, tuner, title: str):
        from mnv3compile.tuning_report import tasks_table

        with Live(tasks_table(tuner.report(), title, top=15), console=console, refresh_per_second=2,
                  transient=True) as live:
            yield lambda t: live.update(tasks_table(t.report(), title, top=15))


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
@click.option("--measure", type=click.Choice(MEASURES), default="time", show_default=True,
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
@click.option("--int8-lowering", "int8_lowering",
              type=RegistryChoice("mnv3compile.compile_choices", "INT8_LOWERINGS", leave_out=("fake",)),
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
@click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Threads each candidate runs on (the count the app will run the model on; a build "
                   "takes the database whatever count it later runs on).")
def tune(model: str | None, onnx_path: Path | None, width: float, resolution: str, target_name: str, measure: str,
         quant: str,
         calib: str | None, weight_bits: int, input_shapes: tuple[str, ...], int8_lowering: str,
         trials: int | None, time_budget: str | None, database: Path | None, resume: bool, tracker: str | None,
         key: str | None, devices: int | None, device_timeout: float, repeat: int, min_repeat_ms: int,
         cooldown: float | None, threads: int) -> None:
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

    Timing: TVM's time_evaluator, on --threads threads (default 1), median of --repeat timings of
    --min-repeat-ms each, in this process for --target host; for a phone preset, on a device
    behind a TVM RPC tracker (--tracker, --key): candidates are cross-compiled here, uploaded and
    timed there, on --threads threads pinned to the device's big cores, after a --cooldown pause
    each. (--measure instructions counts one thread.) A device that goes away is
    waited for (--device-timeout); with several devices under the key (a farm behind one tracker,
    or 'mnv3compile phone start --devices 2'), each takes the next candidate when it is free, and
    one that goes away leaves its candidate to the others; with none left the run ends with its
    records kept.
    """
    from mnv3compile import api
    from mnv3compile.tuning_report import tasks_table

    warn_if_remote(tracker)
    seconds = parse_duration(time_budget) if time_budget is not None else None
    outcome = api.tune(model_argument(model, onnx_path), target=target_name, quant=quant, calibration=calib,
                       width=width, resolution=resolution, input_shapes=parse_input_shapes(input_shapes),
                       weight_bits=weight_bits, int8_lowering=int8_lowering, measure=measure, trials=trials,
                       seconds=seconds, database=database, resume=resume, tracker=tracker, key=key, devices=devices,
                       device_timeout=device_timeout, repeat=repeat, min_repeat_ms=min_repeat_ms, cooldown=cooldown,
                       threads=threads, display=ConsoleDisplay())
    folder = outcome.folder
    wide_console().print(tasks_table(outcome.report, outcome.title))
    if outcome.per_device:
        console.print("timed per device: " + ", ".join(f"{name} {count}" for name, count in outcome.per_device))
    console.print(f"database: {folder} ({outcome.report['trials_this_run']} candidates measured in this run, "
                  f"{outcome.remaining} left; report: tuning_report.json, tuning_report.png)", soft_wrap=True)
    if outcome.interrupted is not None or outcome.remaining:
        again = " ".join(a for a in INVOCATION if a != "--resume")
        console.print(f"continue with: mnv3compile {again} --resume", soft_wrap=True)
    outcome.check()
    console.print("build applies it: mnv3compile build " + (f"--db {folder}" if database else
                                                             "(same model options; it finds the database)"),
                  soft_wrap=True)
