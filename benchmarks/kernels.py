"""Every kernel variant of the spec tables (schedules/kernels/specs.py) measured on its own: on this
host, the time of one call, GMAC/s and the share of the ISA's peak (isa.py's peak_macs at this
CPU's clock: an estimate of the ceiling; the int8 one for kernels on the dot instruction, the float32
one for the others); with --arm64, the arm64 instructions one call executes
under qemu (NEON as Cortex-A53, NEON + dotprod as Cortex-A76).

    python benchmarks/kernels.py [--arm64] [--only int8] [--cpu znver3]

Prints a markdown table (docs/results.md keeps the last one). Each kernel runs with its real
constants and random inputs, 1 thread; times are TVM's time_evaluator median.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

import tvm

from mnv3compile.schedules.kernels.dispatch import NoTemplate, apply_template
from mnv3compile.schedules.kernels.isa import isa_of
from mnv3compile.schedules.kernels.specs import ARM64_TARGETS, SPECS, kernels_of
from mnv3compile.schedules.tuning.measure import LocalMeasurer, Measurement
from mnv3compile.targets.presets import preset
from mnv3compile.tvm.build import HOST_CPU_VARIABLE, tvm_target

def clock_ghz() -> float:
    """This CPU's clock as /proc/cpuinfo reports it now (turbo and power states make it a guess)."""
    found = re.findall(r"^cpu MHz\s*:\s*([\d.]+)", Path("/proc/cpuinfo").read_text(), re.M)
    return max(float(v) for v in found) / 1000 if found else float("nan")


def rows_for(target, only: str):
    """(spec, variant, kernel) for each templated kernel of each spec on ``target``."""
    isa = isa_of(target)
    for spec in SPECS:
        if only not in spec.label:
            continue
        for kernel in kernels_of(spec, target):
            try:
                scheduled, variant = apply_template(kernel.func, isa)
            except NoTemplate:
                continue
            yield spec, variant, kernel, scheduled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arm64", action="store_true", help="also count arm64 instructions per call under qemu")
    parser.add_argument("--only", default="", help="the spec rows whose label contains this, e.g. int8")
    parser.add_argument("--cpu", default=None, help=f"LLVM CPU for the host target (as {HOST_CPU_VARIABLE}), "
                                                    "e.g. znver3 for the AVX2 path on an AVX-512 machine")
    args = parser.parse_args()
    if args.cpu:
        import os

        os.environ[HOST_CPU_VARIABLE] = args.cpu
    target = tvm_target(preset("host"))
    isa, ghz = isa_of(target), clock_ghz()
    print(f"host: {isa.name} ({target.attrs.get('mcpu')}), {ghz:.2f} GHz by /proc/cpuinfo; peak per core "
          f"{isa.peak_macs[0]} float32 / {isa.peak_macs[1] or '-'} int8 MAC per cycle (isa.py)\n", file=sys.stderr)
    print("| spec | variant | us / call | GMAC/s | share of peak |")
    print("|---|---|---|---|---|")
    work = Path(tempfile.mkdtemp(prefix="mnv3-kernels-"))
    timed = LocalMeasurer(target, work, Measurement(repeat=7, min_repeat_ms=50))
    for spec, variant, kernel, scheduled in rows_for(target, args.only):
        time = timed(scheduled.with_attr("global_symbol", "main"), kernel.arrays)
        main_kernel = spec.macs and variant.family in ("conv", "dot4", "gemv")
        gmacs = spec.macs / time / 1e3 if main_kernel else None
        on_dot = isa.dot is not None and variant.instruction == isa.dot.mnemonic  # else on FMAs / widening
        peak = isa.peak_macs[1 if on_dot else 0] * ghz
        share = f"{gmacs / peak:.0%}" if gmacs and peak else "-"
        print(f"| {spec.label} | {variant.name} | {time:.2f} | {f'{gmacs:.1f}' if gmacs else '-'} | {share} |",
              flush=True)
    shutil.rmtree(work, ignore_errors=True)
    if not args.arm64:
        return
    from mnv3compile.schedules.tuning.instructions import InstructionMeasurer

    print("\n| spec | variant (arm64) | instructions / call | MAC per instruction |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        for name, spec_target in ARM64_TARGETS.items():
            arm = tvm.target.Target({"kind": "llvm", "num-cores": 1, **spec_target})
            count = InstructionMeasurer(arm, Path(work) / name)
            for spec, variant, _, scheduled in rows_for(arm, args.only):
                instructions = count(scheduled.with_attr("global_symbol", "main"))
                per = f"{spec.macs / instructions:.2f}" if spec.macs and variant.family in ("conv", "dot4", "gemv") \
                    else "-"
                print(f"| {spec.label} | {variant.name} | {instructions:,.0f} | {per} |", flush=True)


if __name__ == "__main__":
    main()
