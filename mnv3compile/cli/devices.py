"""Targets and devices: targets (the presets), doctor (toolchains here), phone (the stand-in phone
under qemu) and deploy-test (the C runtime on a bundle, or Android's loader check)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.table import Table

from mnv3compile.cli import CONTEXT, cli, console, wide_console
from mnv3compile.cli.options import AFFINITY_OPTION, threads_option


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
@threads_option(0)
@AFFINITY_OPTION
def deploy_test(bundle: Path, image: Path | None, build_dir: Path | None, threads: int, affinity: str) -> None:
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
    from mnv3compile.bundle import Bundle
    from mnv3compile.targets.android_loader import LoaderCheck

    loaded = Bundle.load(bundle)
    with console.status("building the C runtime with CMake and running it"):
        report = loaded.deploy_test(image, build_dir, threads, affinity)
    if isinstance(report, LoaderCheck):
        _print_android_loader_check(report)
        return
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
