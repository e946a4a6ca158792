"""LR-ASPP at segmentation resolutions: build time, peak memory and bundle size of
'mnv3compile build' for host and arm64-android, fp32 and int8, and each host bundle against
onnxruntime on the same input (fp32: its model; int8: its QDQ model, the same integers up to a
rounding now and then, so the per-pixel class agreement is given too).

    python benchmarks/segmenter_sizes.py [--out build/segmenters] [--only large]

Each build is a separate 'mnv3compile build' process under /usr/bin/time (wall time, maximum
resident set). int8 calibrates on 4 synthetic inputs (the default 16 at 1024x2048 only costs time).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CONFIGS = [("lraspp-small", "512x1024"), ("lraspp-large", "1024x2048")]
TARGETS = ("host", "arm64-android")
QUANTS = ("none", "int8")


def build(model: str, resolution: str, quant: str, target: str, out: Path) -> dict:
    command = ["/usr/bin/time", "-f", "mnv3-time %e %M", sys.executable, "-m", "mnv3compile.cli", "build",
               "--model", model, "--resolution", resolution, "--quant", quant, "--target", target, "-o", str(out)]
    if quant == "int8":
        command += ["--calib", "synthetic:4"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[3:])} failed:\n{result.stderr[-2000:]}")
    seconds, kilobytes = re.search(r"mnv3-time ([\d.]+) (\d+)", result.stderr).groups()
    library = next(out.glob("lib*.so"))
    return {"seconds": float(seconds), "peak_mb": int(kilobytes) / 1024, "library_mb": library.stat().st_size / 1e6}


def against_onnxruntime(bundle: Path) -> dict:
    """The host bundle and onnxruntime on one random input: largest difference relative to the
    output's range, how many pixels get the same class, and for int8 how many pixels keep the fp32
    model's class, ours and onnxruntime's QDQ model alike (with random weights the 19 logits are
    near ties, so one rounding apart early in the network moves a few percent of the pixels)."""
    import onnxruntime as ort

    from mnv3compile.runner import BundleRunner

    runner = BundleRunner(bundle)
    x = np.random.default_rng(0).standard_normal(runner.input_shape).astype(np.float32)

    def onnxruntime_output(model_file: str) -> np.ndarray:
        session = ort.InferenceSession(str(bundle / model_file), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x})[0]

    deployed = runner.manifest["model"]
    expected = onnxruntime_output(deployed)
    actual = runner(x)
    started = time.perf_counter()
    for _ in range(3):
        runner(x)
    latency = (time.perf_counter() - started) / 3
    same_class = lambda a, b: float((a.argmax(1) == b.argmax(1)).mean())  # noqa: E731
    row = {"max_diff_rel": float(np.abs(actual - expected).max() / np.abs(expected).max()),
           "class_agreement": same_class(actual, expected), "latency_ms": latency * 1e3}
    if deployed.endswith(".int8.onnx"):
        fp32 = onnxruntime_output(deployed.replace(".int8.onnx", ".opt.onnx"))
        row.update(ours_vs_fp32=same_class(actual, fp32), onnxruntime_int8_vs_fp32=same_class(expected, fp32))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/segmenters"))
    parser.add_argument("--only", default="", help="the configurations whose model contains this")
    args = parser.parse_args()
    rows = []
    for model, resolution in CONFIGS:
        if args.only not in model:
            continue
        for quant in QUANTS:
            for target in TARGETS:
                out = args.out / f"{model}-{resolution}-{quant}-{target}"
                print(f"building {out.name} ...", file=sys.stderr, flush=True)
                row = {"model": model, "resolution": resolution, "quant": quant, "target": target,
                       **build(model, resolution, quant, target, out)}
                if target == "host":
                    row.update(against_onnxruntime(out))
                rows.append(row)
    print("\n| model | input | quant | target | build s | peak memory MB | library MB | vs onnxruntime (max diff / range) "
          "| same class (pixels) | fp32's class kept: ours / onnxruntime int8 | latency here ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        kept = (f"{100 * r['ours_vs_fp32']:.1f}% / {100 * r['onnxruntime_int8_vs_fp32']:.1f}%"
                if "ours_vs_fp32" in r else "-")
        compared = (f"{r['max_diff_rel']:.1e} | {100 * r['class_agreement']:.3f}% | {kept} | {r['latency_ms']:.0f}"
                    if "max_diff_rel" in r else "- | - | - | -")
        print(f"| {r['model']} | {r['resolution']} | {'fp32' if r['quant'] == 'none' else 'int8'} | {r['target']} | "
              f"{r['seconds']:.0f} | {r['peak_mb']:.0f} | {r['library_mb']:.2f} | {compared} |")


if __name__ == "__main__":
    main()
