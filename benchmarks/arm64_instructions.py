"""arm64 cost without a phone: guest instructions executed per inference under qemu-aarch64.

Emulated time says nothing about a phone; executed instructions are deterministic and track the
work a kernel does (not its memory stalls or how well it dual-issues: a proxy, not a latency).
For each configuration this builds a bundle (unstripped, so kernels keep their symbols), runs
runtime/tests/api_test.c's `bench` mode (the C runtime, cross-compiled) under qemu-aarch64 with
the TCG plugin schedules/tuning/qemu/count_insns.c, which counts instructions between two marker
syscalls around the timed loop, and splits the count by kernel (symbol ranges of the library;
what runs outside it is the TVM runtime and libc: VM calls, allocation).

    python benchmarks/arm64_instructions.py [--resolution 224] [--runs 3] [--out build/arm64-insns] [--tuned]
        [--models small,large] [--only int8] [--threads 4] [--serial]

Each kernel's row counts its parallel loop body too (a private function without a symbol, found by
its address, which the kernel passes to TVMBackendParallelLaunch). --serial builds the libraries
for one thread ('build --threads 1'), as an app that runs one thread would.

With --threads N each configuration is also run on N workers: qemu-user runs each guest thread as
a vCPU of its own and the plugin counts per thread, so the table shows the busiest thread's kernel
instructions and the critical path (that plus the serial work outside kernels, counted at 1 thread:
at N, a thread that waits for the others spins, which is instructions but not work) beside the
1-thread count. Instructions, not time: memory bandwidth shared by the cores is not in them.

Needs Debian's qemu-user, g++-aarch64-linux-gnu, cmake and (once) `apt-get source qemu` for
QEMU's plugin header (fetched into the user's cache; nothing of QEMU is committed here).
The onnxruntime-aarch64 figure is the issue's measurement (1 thread, Small fp32 at 224, same
method, in a chroot of the sysroot), and so are LiteRT + XNNPACK's (issue 38, Keras' MobileNetV3s,
Cortex-A76 and Cortex-A53 CPU models): not re-measured in this run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from bisect import bisect_right
from pathlib import Path

import numpy as np

from mnv3compile.deploy_check import build_runtime
from mnv3compile.model_source import load_model
from mnv3compile.targets.arm64_sysroot import home
from mnv3compile.pipeline import BuildRequest, build
from mnv3compile.schedules.tuning.instructions import counted, helpers_folder, plugin
from mnv3compile.schedules.kernels.isa import isa_of
from mnv3compile.schedules.tuning.shipped import find_database
from mnv3compile.targets.presets import preset
from mnv3compile.tvm.build import tvm_target
from mnv3compile.zoo import build_model, build_spec

ONNXRUNTIME_SMALL_FP32_224 = 81.8e6  # instructions per inference, onnxruntime-aarch64 1 thread (issue 15)
# LiteRT 2.3 with its XNNPACK delegate on Keras' MobileNetV3 at 224, 1 thread, counted by the same
# method under qemu -cpu cortex-a76 (rpi5's ISA) or cortex-a53 (arm64-linux's): issue 38's
# measurement, not re-run here (it needs the aarch64 LiteRT wheel in a chroot of the sysroot).
XNNPACK_224 = {("small", "none", "rpi5"): 27.6e6, ("small", "int8", "rpi5"): 15.3e6,
               ("large", "none", "rpi5"): 91.6e6, ("large", "int8", "rpi5"): 43.3e6,
               ("small", "none", "arm64-linux"): 38.1e6, ("small", "int8", "arm64-linux"): 30.1e6,
               ("large", "none", "arm64-linux"): 140.1e6, ("large", "int8", "arm64-linux"): 102.9e6}
HERE = Path(__file__).resolve().parent
CONFIGS = [  # (model, quant, target preset, schedule)
    ("small", "none", "arm64-linux", "templates"),
    ("small", "none", "arm64-linux", "default"),
    ("small", "int8", "arm64-linux", "templates"),
    ("small", "int8", "arm64-linux", "default"),
    ("small", "none", "rpi5", "templates"),
    ("small", "int8", "rpi5", "templates"),
    ("ssdlite-small", "none", "rpi5", "templates"),  # SSDLite at its own 320 unless --resolution
    ("ssdlite-small", "int8", "rpi5", "templates"),
]


# Large's rows, as Small's on the same targets: with --models large
CONFIGS += [("large", quant, target, schedule) for model, quant, target, schedule in CONFIGS if model == "small"]


def configurations(resolution: int, tuned: bool, models: tuple[str, ...] = ("small", "ssdlite-small")) -> list[tuple]:
    """CONFIGS of ``models`` with no database; with ``tuned``, each templates one again with the
    database build would find for it (the user's 'tune' folder, else the one shipped for its ISA), if any."""
    rows = [(*config, None) for config in CONFIGS if config[0] in models]
    if tuned:
        for model_name, quant, target, schedule in CONFIGS:
            if model_name not in models:
                continue
            key = load_model(model_name, None, 1.0, resolution or build_spec(model_name).resolution[0], None,
                             None).key(quant)
            found = find_database(target, isa_of(tvm_target(preset(target))).name, key)
            if schedule == "templates" and found is not None:
                rows.append((model_name, quant, target, schedule, found[0]))
    return rows


def kernel_ranges(library: Path) -> tuple[list[int], list[tuple[int, str]]]:
    """(sorted start offsets, [(end, name)]) of the library's function symbols."""
    listing = subprocess.run(["aarch64-linux-gnu-nm", "--defined-only", "-S", str(library)], capture_output=True,
                             text=True, check=True).stdout
    symbols = []
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tT":
            start, size = int(parts[0], 16), int(parts[1], 16)
            symbols.append((start, start + size, parts[3]))
    symbols.sort()
    return [s for s, _, _ in symbols], [(e, n) for _, e, n in symbols]


def parallel_bodies(library: Path, starts: list[int], ends: list[tuple[int, str]]) -> tuple[list[int], list[tuple[int, str]]]:
    """The parallel loop bodies (LLVM's private functions, no symbol) as ranges named after the
    kernel that launches them: a kernel passes its body's address to TVMBackendParallelLaunch in x0
    (adrp + add), and a body runs from there to the next function."""
    listing = subprocess.run(["aarch64-linux-gnu-objdump", "-d", "--no-show-raw-insn", str(library)],
                             capture_output=True, text=True, check=True).stdout
    launched: dict[int, str] = {}
    page, current = None, None
    for line in listing.splitlines():
        header = re.match(r"([0-9a-f]+) <(.+)>:$", line)
        if header:
            current = kernel_of(header.group(2))
            continue
        match = re.match(r"\s*[0-9a-f]+:\t(adrp|add)\s+(.*)", line)
        operands = match.group(2).split(", ") if match else []
        if not operands or operands[0] != "x0":
            continue
        if match.group(1) == "adrp":
            page = int(operands[1].split()[0], 16)
        elif page is not None and len(operands) == 3 and operands[1] == "x0" and operands[2].startswith("#"):
            target = page + int(operands[2].split()[0][1:], 0)
            index = bisect_right(starts, target) - 1
            if not (index >= 0 and target < ends[index][0]) and current is not None:  # no symbol there
                launched.setdefault(target, current)
            page = None
    bodies = sorted(launched.items())
    boundaries = sorted(starts + [start for start, _ in bodies])
    ranges = []
    for start, kernel in bodies:
        following = boundaries[bisect_right(boundaries, start)] if bisect_right(boundaries, start) < len(boundaries) else start + 4
        ranges.append((start, following, kernel))
    return [r[0] for r in ranges], [(r[1], r[2]) for r in ranges]


def text_range(library: Path) -> tuple[int, int]:
    """[start, end) of the library's .text: the kernels, and the bodies of their parallel loops,
    which LLVM emits as private functions (no symbol)."""
    from elftools.elf.elffile import ELFFile

    with open(library, "rb") as handle:
        text = ELFFile(handle).get_section_by_name(".text")
        return text["sh_addr"], text["sh_addr"] + text["sh_size"]


PARALLEL_BODIES = "(parallel loop bodies: private functions, no symbol)"


def kernel_of(symbol: str) -> str:
    """TVM emits a kernel as <name> (argument checks) and <name>_compute_ (the loops): one row."""
    return re.sub(r"_compute_$", "", symbol)


OUTSIDE = "(TVM runtime, libc: outside kernels)"
SKIPPED = re.compile(r"^(b|bl|br|blr|ret|cbz|cbnz|tbz|tbnz|b\.\w+|adr|adrp)$")  # control flow, PC-relative


def block_text(library: Path, offset: int, insns: int) -> list[str]:
    """The block's instructions as llvm-mca reads them (branches and PC-relative ones left out)."""
    listing = subprocess.run(["aarch64-linux-gnu-objdump", "-d", "--no-show-raw-insn", f"--start-address={offset}",
                              f"--stop-address={offset + 4 * insns}", str(library)], capture_output=True, text=True).stdout
    lines = []
    for line in listing.splitlines():
        match = re.match(r"\s*[0-9a-f]+:\t(\S+)\s*(.*)", line)
        if match and not SKIPPED.match(match.group(1)) and "<" not in match.group(2):
            lines.append(f"{match.group(1)} {match.group(2)}".strip())
    return lines


def a76_cycles(library: Path, blocks: list[tuple[int, int]]) -> dict[tuple[int, int], float]:
    """llvm-mca's steady-state cycles per execution of each block on a Cortex-A76, one run for all
    blocks (one code region each)."""
    source = []
    for index, (offset, insns) in enumerate(blocks):
        source += [f"# LLVM-MCA-BEGIN b{index}", *block_text(library, offset, insns), f"# LLVM-MCA-END b{index}"]
    result = subprocess.run(["llvm-mca", "-mtriple=aarch64", "-mcpu=cortex-a76", "-iterations=100"],
                            input="\n".join(source) + "\n", capture_output=True, text=True)
    cycles = {}
    for region, total in re.findall(r"Code Region - b(\d+).*?Total Cycles:\s+(\d+)", result.stdout, re.S):
        cycles[blocks[int(region)]] = int(total) / 100
    return cycles


def measure(runtime, bundle: Path, manifest: dict, runs: int, counter: Path, scratch: Path, threads: int = 1) -> dict:
    shape = manifest["inputs"][0]["shape"]
    x_path, pcs = scratch / "input.f32", scratch / f"pcs-{threads}.txt"
    np.random.default_rng(0).standard_normal(shape).astype(np.float32).tofile(x_path)
    command = ["qemu-aarch64", "-plugin", f"{counter},pcs={pcs}", "-d", "plugin",
               str(runtime.folder / "mnv3_api_test"), "bench", str(bundle), str(x_path), str(runs), str(threads)]
    result = subprocess.run(command, capture_output=True, text=True, env=runtime.environment())
    if result.returncode != 0:
        raise SystemExit(f"bench failed: {result.stdout}{result.stderr}")
    total = counted(result.stdout + result.stderr)
    base = int(re.search(r"base 0x([0-9a-f]+)", result.stdout).group(1), 16)
    library = bundle / manifest["library"]
    starts, ends = kernel_ranges(library)
    body_starts, body_ends = parallel_bodies(library, starts, ends)
    text_start, text_end = text_range(library)
    per_kernel: dict[str, int] = {}
    executions: dict[tuple[int, int], int] = {}  # (offset in the library, instructions) -> times run
    # per guest thread (0: the main one): instructions in the library's kernels, and outside them
    # (the VM and, with workers, the pool's waiting: a waiting thread spins, as much as it waits)
    thread_kernels: dict[int, int] = {}
    thread_outside: dict[int, int] = {}
    for line in pcs.read_text().splitlines():
        address, executed, insns, *by_thread = line.split()
        address, executed, insns = int(address, 16), int(executed), int(insns)
        offset = address - base
        index = bisect_right(starts, offset) - 1
        named = index >= 0 and offset < ends[index][0]
        inside = named or text_start <= offset < text_end
        body = bisect_right(body_starts, offset) - 1
        in_body = not named and body >= 0 and offset < body_ends[body][0]
        name = (kernel_of(ends[index][1]) if named else body_ends[body][1] if in_body
                else PARALLEL_BODIES if inside else OUTSIDE)
        per_kernel[name] = per_kernel.get(name, 0) + executed * insns
        if inside:
            executions[(offset, insns)] = executions.get((offset, insns), 0) + executed
        for token in by_thread:
            thread, count = (int(v) for v in token[1:].split("="))
            tally = thread_kernels if inside else thread_outside
            tally[thread] = tally.get(thread, 0) + count * insns
    # Cortex-A76 cycles (llvm-mca) of the blocks that make up 98% of the kernels' instructions; the
    # rest is counted at the measured blocks' cycles per instruction.
    ranked = sorted(executions, key=lambda b: -executions[b] * b[1])
    covered, chosen, kernel_total = 0, [], sum(executions[b] * b[1] for b in ranked)
    for block in ranked:
        if covered >= 0.98 * kernel_total:
            break
        chosen.append(block)
        covered += executions[block] * block[1]
    cycles = a76_cycles(library, chosen)
    measured_cycles = sum(executions[b] * cycles[b] for b in chosen if b in cycles)
    measured_insns = sum(executions[b] * b[1] for b in chosen if b in cycles)
    estimate = measured_cycles * kernel_total / measured_insns if measured_insns else float("nan")
    return {"per_inference": total / runs, "a76_kernel_cycles": estimate / runs, "threads": threads, "base": base,
            "kernels": {k: v / runs for k, v in sorted(per_kernel.items(), key=lambda kv: -kv[1])},
            "thread_kernels": {k: v / runs for k, v in sorted(thread_kernels.items())},
            "thread_outside": {k: v / runs for k, v in sorted(thread_outside.items())}}


def critical_path(one: dict, many: dict) -> float:
    """Instructions per inference on the parallel run's critical path, about: the busiest thread's
    kernel instructions at N threads, plus the serial work outside kernels (the VM, on the main
    thread) as the 1-thread run counts it (at N, threads that wait spin: instructions, not work)."""
    return max(many["thread_kernels"].values()) + one["per_inference"] - sum(one["thread_kernels"].values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=None, help="[default: 224; 320 for SSDLite]")
    parser.add_argument("--runs", type=int, default=3, help="inferences between the markers")
    parser.add_argument("--out", type=Path, default=Path("build/arm64-insns"))
    parser.add_argument("--top", type=int, default=12, help="kernels listed per configuration")
    parser.add_argument("--models", default="small,ssdlite-small",
                        help="zoo models, comma-separated: small, large, ssdlite-small [default: small,ssdlite-small]")
    parser.add_argument("--only", default="", help="run the configurations whose name contains this, e.g. int8")
    parser.add_argument("--threads", type=int, default=1,
                        help="also run each configuration on this many workers and count per thread")
    parser.add_argument("--serial", action="store_true",
                        help="build the libraries for one thread ('build --threads 1': no parallel loops, no "
                             "fork-join), as an app that runs one thread would")
    parser.add_argument("--tuned", action="store_true",
                        help="also build each templates configuration with the tuning database build finds "
                             "for it ('mnv3compile tune' in the default folder, else the one shipped for its ISA)")
    args = parser.parse_args()
    counter = plugin(helpers_folder())
    runtime = build_runtime("arm64", home().parent / "runtime-build" / "arm64")
    results = []
    models = tuple(args.models.split(","))
    for model_name, quant, target, schedule, database in configurations(args.resolution, args.tuned, models):
        label = f"{model_name}-{'fp32' if quant == 'none' else quant}-{target}-{schedule}{'-tuned' if database else ''}{'-serial' if args.serial else ''}"
        if args.only not in label:
            continue
        print(f"building {label} ...", file=sys.stderr, flush=True)
        bundle = args.out / label
        spec = build_spec(model_name, 1.0, args.resolution)
        request = BuildRequest(target=preset(target), output=bundle, name=model_name, model=build_model(spec),
                               quant=quant, calib="synthetic:8" if quant == "int8" else None, debug=True,
                               schedule=schedule, database=database, threads=1 if args.serial else 0)
        manifest = build(request).manifest
        scratch = args.out / f"{label}.scratch"
        scratch.mkdir(parents=True, exist_ok=True)
        measured = measure(runtime, bundle, manifest, args.runs, counter, scratch)
        parallel = measure(runtime, bundle, manifest, args.runs, counter, scratch, args.threads) if args.threads > 1 else None
        results.append({"config": label, "model": model_name, "quant": quant, "target": target, "schedule": schedule,
                        "resolution": spec.resolution[0], **measured, "parallel": parallel})
    (args.out / "arm64_instructions.json").write_text(json.dumps(results, indent=2))
    print("\n| bundle (zoo, 1 thread) | input | M instructions / inference | "
          f"vs onnxruntime-aarch64 fp32 ({ONNXRUNTIME_SMALL_FP32_224 / 1e6:.1f} M) | "
          "vs LiteRT + XNNPACK (issue 38's count) | outside kernels | kernels' Cortex-A76 cycles (llvm-mca) |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        outside = r["kernels"].get(OUTSIDE, 0.0)
        ratio = f"{r['per_inference'] / ONNXRUNTIME_SMALL_FP32_224:.2f}x" if (r["model"], r["resolution"]) == (
            "small", 224) else "-"
        peer = XNNPACK_224.get((r["model"], r["quant"], r["target"])) if r["resolution"] == 224 else None
        versus = f"{r['per_inference'] / peer:.2f}x of {peer / 1e6:.1f} M" if peer else "-"
        print(f"| {r['config']} | {r['resolution']} | {r['per_inference'] / 1e6:.1f} | {ratio} | {versus} | "
              f"{outside / 1e6:.2f} M | {r['a76_kernel_cycles'] / 1e6:.1f} M |")
    if args.threads > 1:
        n = args.threads
        print(f"\n| bundle | 1 thread M | {n} threads: all threads M | busiest thread's kernels M | critical path M "
              f"| critical path / 1 thread | kernels per thread M |")
        print("|---|---|---|---|---|---|---|")
        for r in results:
            many = r["parallel"]
            path = critical_path(r, many)
            spread = " / ".join(f"{v / 1e6:.1f}" for v in many["thread_kernels"].values())
            print(f"| {r['config']} | {r['per_inference'] / 1e6:.1f} | {many['per_inference'] / 1e6:.1f} | "
                  f"{max(many['thread_kernels'].values()) / 1e6:.1f} | {path / 1e6:.1f} | "
                  f"{path / r['per_inference']:.2f}x | {spread} |")
    for r in results:
        print(f"\n{r['config']}: top kernels (M instructions / inference)")
        for name, count in list(r["kernels"].items())[: args.top]:
            print(f"  {count / 1e6:7.2f}  {name[:110]}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
