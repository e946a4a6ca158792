"""PaddleOCR's PP-OCRv4 text detector through mnv3compile: fp32 and int8 host bundles at 640x640
against onnxruntime, and what int8 does to the text mask.

    python benchmarks/ocr_detector.py [--size 640] [--calib 16] [--eval 8] [--out build/ocr-det]

Calibration and evaluation pages are rendered text (benchmarks/textlines.py: lines of words and
numbers in DejaVu fonts pasted on paper), preprocessed as rapidocr does ((x/255 - 0.5)/0.5, BGR).
The text mask is the probability map above 0.3 (rapidocr's threshold). Latency: median of 10
single calls, 1 thread, the same process, onnxruntime fp32 on its own model beside each bundle.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from textlines import detector_input, render_page  # noqa: E402


def median_ms(call, runs: int = 10) -> float:
    call()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1e3)


def one_thread_session(model):
    """onnxruntime on one thread (as every latency here) for a ModelProto or a path."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def data_arguments(parser: argparse.ArgumentParser, what: str, calib: int, evaluation: int, out: str) -> None:
    """--calib, --eval (rendered samples) and --out, as every OCR benchmark takes them."""
    parser.add_argument("--calib", type=int, default=calib, help=f"rendered calibration {what}")
    parser.add_argument("--eval", type=int, default=evaluation, help=f"rendered evaluation {what} (others)")
    parser.add_argument("--out", type=Path, default=Path(out))


def main() -> None:
    from assets import paddle_det_model

    from mnv3compile.analysis import with_static_inputs
    from mnv3compile.pipeline import BuildRequest, build
    from mnv3compile.runner import BundleRunner
    from mnv3compile.targets.presets import preset

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=640)
    data_arguments(parser, "pages", 16, 8, "build/ocr-det")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    pages = [detector_input(render_page(rng, args.size, args.size, lines=12)) for _ in range(args.calib + args.eval)]
    args.out.mkdir(parents=True, exist_ok=True)
    calib_file = args.out / "calib.npy"
    np.save(calib_file, np.concatenate(pages[:args.calib]))
    evaluation = pages[args.calib:]
    model, _ = with_static_inputs(onnx.load(str(paddle_det_model())), {"x": [1, 3, args.size, args.size]})
    reference = one_thread_session(model)
    fp32_maps = [reference.run(None, {"x": x})[0] for x in evaluation]
    rows = []
    for quant in ("none", "int8"):
        folder = args.out / quant
        started = time.perf_counter()
        result = build(BuildRequest(target=preset("host"), output=folder, name="det", model=model, quant=quant,
                                    calib=str(calib_file) if quant == "int8" else None))
        seconds = time.perf_counter() - started
        runner = BundleRunner(result.bundle)
        own = one_thread_session(folder / runner.manifest["model"])
        ours = [runner(x) for x in evaluation]
        theirs = [own.run(None, {"x": x})[0] for x in evaluation]
        report = json.loads((folder / "build_report.json").read_text())
        rows.append({
            "quant": "fp32" if quant == "none" else "int8",
            "build_s": seconds,
            "fallbacks": (report.get("int8") or {}).get("fallback_groups", "-"),
            "vs_own_model": max(float(np.abs(a - b).max()) for a, b in zip(ours, theirs)),
            "mad_vs_fp32": float(np.mean([np.abs(a - f).mean() for a, f in zip(ours, fp32_maps)])),
            "mask_differs": float(np.mean([((a > 0.3) != (f > 0.3)).mean() for a, f in zip(ours, fp32_maps)])),
            "text": float(np.mean([(f > 0.3).mean() for f in fp32_maps])),
            "ms": median_ms(lambda: runner(evaluation[0])),
            "ort_ms": median_ms(lambda: reference.run(None, {"x": evaluation[0]})),
        })
    print(f"\nPP-OCRv4 detector at {args.size}x{args.size}, {args.calib} calibration and {args.eval} evaluation pages")
    print("| bundle | build s | groups left fake-quantized | max diff vs onnxruntime (its own model) "
          "| mean abs diff vs fp32 | text-mask pixels differing (text covers) | latency ms | onnxruntime fp32 ms | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['quant']} | {r['build_s']:.0f} | {r['fallbacks']} | {r['vs_own_model']:.2g} | {r['mad_vs_fp32']:.4f} | "
              f"{100 * r['mask_differs']:.2f}% ({100 * r['text']:.1f}%) | {r['ms']:.1f} | {r['ort_ms']:.1f} | "
              f"{r['ms'] / r['ort_ms']:.2f}x |")


if __name__ == "__main__":
    main()
