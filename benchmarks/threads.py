"""Threads: our bundles and onnxruntime at 1 and at N threads, the speed-up the threads give, and
each one's start from a cold process (time to first result, peak memory).

Two `mnv3compile bench --vs-onnxruntime` runs (`api.bench`): at 1 thread (the serial and the
parallel libraries and onnxruntime) and at N (the parallel libraries and onnxruntime). Each
contender runs in a process of its own, stopped while the others run (mnv3compile/benchmark.py).

    python benchmarks/threads.py [--models small,large] [--threads 2] [--runs 200] [--cold-starts 5]

Builds Small and Large at 224 (int8 and fp32, this machine, untuned templates) twice into
build/threads-bench/ unless they are there: with parallel kernels (the default build) and with
`--threads 1` (serial kernels). Prints, per bundle: median ms of the serial build at 1 thread, of
the parallel build at 1 and at N threads, the speed-up (parallel at 1 / parallel at N), onnxruntime
fp32 at 1 and N and its speed-up, and our ratio to it at 1 (serial) and N; then the start-up table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import mnv3compile as m3


def bundle(model: str, quant: str, threads: int, folder: Path) -> Path:
    path = folder / f"{model}-{quant}-{'serial' if threads == 1 else 'parallel'}"
    if not path.is_dir():
        m3.build(model, quant=quant, output=path, database=None, threads=threads)
    return path


def onnxruntime_fp32(result, model: str):
    """onnxruntime's row on ``model``'s float model (one per distinct model: the int8 and fp32
    bundles of a model share it, named after the first)."""
    return next(r for r in result.rows if r.kind == "onnxruntime" and r.detail == "fp32"
                and r.name.startswith(f"onnxruntime ({model}-"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="small,large")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--cold-starts", type=int, default=5)
    parser.add_argument("--folder", type=Path, default=Path("build/threads-bench"))
    args = parser.parse_args()
    n = args.threads
    pairs = [(f"{model}-{'fp32' if quant == 'none' else quant}", bundle(model, quant, 1, args.folder),
              bundle(model, quant, 0, args.folder))
             for model in args.models.split(",") for quant in ("int8", "none")]
    one = m3.bench([p for _, serial, parallel in pairs for p in (serial, parallel)], vs_onnxruntime=True, threads=1,
                   runs=args.runs, max_seconds=600, cold_starts=args.cold_starts)
    many = m3.bench([parallel for _, _, parallel in pairs], vs_onnxruntime=True, threads=n, runs=args.runs,
                    max_seconds=600, cold_starts=1)
    print(f"{one.cpu}; medians of {args.runs} calls; ratio = ours / onnxruntime fp32 at the same thread count")
    print(f"| bundle | serial@1 | parallel@1 | parallel@{n} | speed-up | ort fp32@1 | ort fp32@{n} | ort speed-up "
          f"| ratio@1 | ratio@{n} |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, serial, parallel in pairs:
        s1, p1 = one.row(serial.name).median_ms, one.row(parallel.name).median_ms
        pn = many.row(parallel.name).median_ms
        model = name.split("-")[0]
        o1, on = onnxruntime_fp32(one, model).median_ms, onnxruntime_fp32(many, model).median_ms
        print(f"| {name} | {s1:.3f} | {p1:.3f} | {pn:.3f} | {p1 / pn:.2f}x | {o1:.3f} | {on:.3f} | {o1 / on:.2f}x "
              f"| {s1 / o1:.2f}x | {pn / on:.2f}x |")
    print(f"\nstart from a cold process, 1 thread (medians of {args.cold_starts}): first result = open + first "
          "inference; model MiB = peak resident memory minus the process's after its runtime's import")
    print("| contender | what | first result ms | open ms | first run ms | peak MiB | model MiB |")
    print("|---|---|---|---|---|---|---|")
    for row in one.rows:
        if not (row.kind == "bundle" and row.name.endswith("-serial")):
            print(f"| {row.name} | {row.detail} | {row.first_result_ms:.1f} | {row.open_ms:.1f} | "
                  f"{row.first_run_ms:.1f} | {row.peak_mib:.0f} | {row.model_mib:.1f} |")


if __name__ == "__main__":
    main()
