"""Threads: our bundles and onnxruntime at 1 and at N threads (each count one interleaved run of
mnv3compile.bench), and the speed-up the threads give.

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
            one = m3.bench([serial, parallel], vs_onnxruntime=True, threads=1, runs=args.runs, max_seconds=300)
            many = m3.bench([parallel], vs_onnxruntime=True, threads=n, runs=args.runs, max_seconds=300)
            cpu = one.cpu
            s1, p1, pn = (r.row(b.path.name).median_ms for r, b in ((one, serial), (one, parallel), (many, parallel)))
            o1, on = (r.row(f"onnxruntime ({serial.path.name})" if r is one else f"onnxruntime ({parallel.path.name})",
                            "fp32").median_ms for r in (one, many))
            print(f"{model + '-' + ('fp32' if quant == 'none' else quant):14} {s1:9.3f} {p1:9.3f} {pn:9.3f} "
                  f"{s1 / pn:8.2f}x {o1:10.3f} {on:10.3f} {s1 / o1:7.2f}x {pn / on:7.2f}x")
    print(f"cpu: {cpu}; ms are medians; ratio = ours (serial at 1, parallel at {n}) / onnxruntime fp32's")


if __name__ == "__main__":
    main()
