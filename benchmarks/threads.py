"""Threads: our bundles and onnxruntime at 1 and at N threads, and the speed-up the threads give.

Ours and onnxruntime are timed in separate rounds here (each alone, interleaved with its own kind
only): at N > 1 threads two thread pools in one process steal each other's cores (each spins a
while after its work, waiting for more), which slowed both several-fold on this 2-core machine.

    python benchmarks/threads.py [--models small,large] [--threads 2] [--runs 200]

Builds Small and Large at 224 (int8 and fp32, this machine, untuned templates) twice into
build/threads-bench/ unless they are there: with parallel kernels (the default build) and with
`--threads 1` (serial kernels, what every build was before). Prints, per bundle: median ms of the
serial build at 1 thread, of the parallel build at 1 and at N threads, the speed-up (serial at 1 /
parallel at N), and the ratio to onnxruntime fp32 at 1 and at N threads (onnxruntime given as many
intra-op threads).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import mnv3compile as m3


def bundle(model: str, quant: str, threads: int, folder: Path) -> m3.Bundle:
    path = folder / f"{model}-{quant}-{'serial' if threads == 1 else 'parallel'}"
    return m3.Bundle.load(path) if path.is_dir() else m3.build(model, quant=quant, output=path, database=None,
                                                                threads=threads)


def onnxruntime_ms(bundle: m3.Bundle, threads: int, runs: int) -> float:
    """onnxruntime's median on the bundle's float model, alone in its rounds."""
    import numpy as np

    from mnv3compile import benchmark

    x = np.random.default_rng(0).standard_normal(bundle.inputs[0]["shape"]).astype(np.float32)
    model = bundle.path / (bundle.manifest.get("float_model") or bundle.manifest["model"])
    entry = benchmark.Contender("onnxruntime", "onnxruntime", "fp32",
                                benchmark._onnxruntime_call(model, {bundle.inputs[0]["name"]: x}, threads))
    benchmark.measure([entry], runs, 300)
    return float(np.median(entry.times_ms))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="small,large")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--folder", type=Path, default=Path("build/threads-bench"))
    args = parser.parse_args()
    n = args.threads
    print(f"{'bundle':14} {'serial@1':>9} {'par@1':>9} {f'par@{n}':>9} {'speed-up':>9} {'ort fp32@1':>10} "
          f"{f'ort fp32@{n}':>10} {'ratio@1':>8} {f'ratio@{n}':>8}")
    cpu = ""
    for model in args.models.split(","):
        for quant in ("int8", "none"):
            serial, parallel = bundle(model, quant, 1, args.folder), bundle(model, quant, 0, args.folder)
            one = m3.bench([serial, parallel], threads=1, runs=args.runs, max_seconds=300)
            many = m3.bench([parallel], threads=n, runs=args.runs, max_seconds=300)
            cpu = one.cpu
            s1, p1 = (one.row(b.path.name).median_ms for b in (serial, parallel))
            pn = many.row(parallel.path.name).median_ms
            o1, on = (onnxruntime_ms(parallel, count, args.runs) for count in (1, n))
            print(f"{model + '-' + ('fp32' if quant == 'none' else quant):14} {s1:9.3f} {p1:9.3f} {pn:9.3f} "
                  f"{s1 / pn:8.2f}x {o1:10.3f} {on:10.3f} {s1 / o1:7.2f}x {pn / on:7.2f}x")
    print(f"cpu: {cpu}; ms are medians; ratio = ours (serial at 1, parallel at {n}) / onnxruntime fp32's")


if __name__ == "__main__":
    main()
