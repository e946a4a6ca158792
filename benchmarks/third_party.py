"""MobileNetV3-family models from other exporters through optimize, quantize and build: one table.

    python benchmarks/third_party.py [--android] [--out build/third-party] [--only NAME ...]

Models (each skipped, saying why, when its file is missing):
- ``keras-small``, ``keras-large``: Keras ``MobileNetV3Small/Large`` (random weights) exported by
  tf2onnx, NHWC; ``keras-small-zoo-weights``: the same Small with the zoo Small's parameters (made
  by benchmarks/keras_models.py, see its docstring); the final Softmax cut off (logits measured).
- ``torch-small``: ``torch.onnx.export`` (TorchScript exporter) of a torchvision-structured
  MobileNetV3-Small (tests/torch_reference.py) with the zoo's random parameters.
- ``zoo-small``: our own export, the reference the others are measured against.
- ``paddle-cls``, ``paddle-det``, ``paddle-rec``: PaddleOCR's text-orientation classifier, PP-OCRv4
  detector and recognizer from the rapidocr_onnxruntime 1.4.4 wheel, on rendered text.

Per model: ops and Transposes before -> after ``optimize``; whether ``quantize`` takes it; host
fp32 and int8 bundles: fp32 against onnxruntime (max |difference| / max |output|), int8 output
SQNR against fp32 (beside onnxruntime's on the same QDQ model), int8 bundle against onnxruntime
running that QDQ model (in output steps),
latency (median of 20 single calls, 1 thread) against onnxruntime fp32 on the original model;
with ``--android``, the arm64-android int8 build's kernels and how many have a template.
Calibration: 16 inputs (random normal for the ImageNet models, rendered text for PaddleOCR),
evaluation on 8 others.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from ocr_detector import median_ms, one_thread_session as _session  # noqa: E402

KERAS = Path.home() / ".cache" / "mnv3compile" / "keras"
CALIBRATION, EVALUATION = 16, 8


def _logits(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model up to its final Softmax's input (random weights make the softmax uniform)."""
    from onnx.utils import Extractor

    model = onnx.shape_inference.infer_shapes(model)
    last = model.graph.node[-1]
    if last.op_type != "Softmax" or last.output[0] != model.graph.output[0].name:
        return model
    return Extractor(model).extract_model([i.name for i in model.graph.input], [last.input[0]])


def _normal(shape, count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(count)]


def _keras(file: str):
    def load():
        path = KERAS / file
        if not path.exists():
            raise FileNotFoundError(f"{path} (benchmarks/keras_models.py makes it)")
        return _logits(onnx.load(str(path))), (1, 224, 224, 3)
    return load, _normal


def _zoo():
    from mnv3compile.zoo import build_model, build_spec

    return build_model(build_spec("small", 1.0, 224)), (1, 3, 224, 224)


def _torch_small():
    import tempfile

    from torch_reference import export_with_zoo_parameters

    from mnv3compile.zoo import build_spec

    spec = build_spec("small", 1.0, 224)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "torch_small.onnx"
        export_with_zoo_parameters(spec, path)
        return onnx.load(str(path)), spec.input_shape


def _paddle(loader: str, shape):
    """``loader``: the tests/assets.py function that fetches the model from the rapidocr wheel."""
    def load():
        import assets

        from mnv3compile.analysis import with_static_inputs

        model, _ = with_static_inputs(onnx.load(str(getattr(assets, loader)())), {"x": list(shape)})
        return model, shape
    return load


def _lines(shape, count: int, seed: int) -> list[np.ndarray]:
    from ocr_recognizer import rendered_lines

    return [x[None] for x in rendered_lines(count, shape[3], np.random.default_rng(seed))[0]]


def _pages(shape, count: int, seed: int) -> list[np.ndarray]:
    from textlines import detector_input, render_page

    rng = np.random.default_rng(seed)
    return [detector_input(render_page(rng, shape[2], shape[3], lines=12)) for _ in range(count)]


MODELS = {
    "keras-small": _keras("keras_mobilenetv3_small.onnx"),
    "keras-small-zoo-weights": _keras("keras_mobilenetv3_small_zoo_weights.onnx"),
    "keras-large": _keras("keras_mobilenetv3_large.onnx"),
    "torch-small": (_torch_small, _normal),
    "zoo-small": (_zoo, _normal),
    "paddle-cls": (_paddle("paddle_cls_model", (1, 3, 48, 192)), _lines),
    "paddle-det": (_paddle("paddle_det_model", (1, 3, 640, 640)), _pages),
    "paddle-rec": (_paddle("paddle_rec_model", (1, 3, 48, 320)), _lines),
}


def _sqnr(reference: list[np.ndarray], other: list[np.ndarray]) -> float:
    signal = sum(float(np.sum(r.astype(np.float64) ** 2)) for r in reference)
    noise = sum(float(np.sum((r.astype(np.float64) - o) ** 2)) for r, o in zip(reference, other))
    return float("inf") if noise == 0 else 10 * np.log10(signal / noise)


def measure(name: str, out: Path, android: bool) -> dict:
    from mnv3compile.passes.optimize import optimize
    from mnv3compile.passes.registry import PIPELINE
    from mnv3compile.pipeline import BuildRequest, build
    from mnv3compile.runner import BundleRunner
    from mnv3compile.targets.presets import preset

    load, data = MODELS[name]
    model, shape = load()
    row = {"model": name}
    before = Counter(n.op_type for n in model.graph.node)
    optimized, _ = optimize(model, PIPELINE)
    after = Counter(n.op_type for n in optimized.graph.node)
    row["ops"] = f"{sum(before.values())} -> {sum(after.values())}"
    row["transposes"] = f"{before['Transpose']} -> {after['Transpose']}"
    calibration, evaluation = data(shape, CALIBRATION, 0), data(shape, EVALUATION, 1)
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "calib.npy", np.concatenate(calibration))
    reference = _session(model)
    input_name = reference.get_inputs()[0].name
    expected = [reference.run(None, {input_name: x})[0] for x in evaluation]
    row["onnxruntime_ms"] = median_ms(lambda: reference.run(None, {input_name: evaluation[0]}), 20)
    for quant in ("none", "int8"):
        bundle = folder / quant
        try:
            result = build(BuildRequest(target=preset("host"), output=bundle, name=name.replace("-", "_"), model=model,
                                        quant=quant, calib=str(folder / "calib.npy") if quant == "int8" else None))
        except Exception as exc:  # a refusal is a result: the table says why
            row[quant] = f"refused: {str(exc).splitlines()[0]}"
            continue
        runner = BundleRunner(result.bundle)
        got = [runner(x) for x in evaluation]
        row[f"{quant}_ms"] = median_ms(lambda: runner(evaluation[0]), 20)
        if quant == "none":
            row["fp32_vs_onnxruntime"] = max(float(np.abs(g - e).max() / max(np.abs(e).max(), 1e-12))
                                             for g, e in zip(got, expected))
            continue
        report = json.loads((bundle / "build_report.json").read_text())
        qdq = _session(bundle / runner.manifest["model"])
        own = [qdq.run(None, {input_name: x})[0] for x in evaluation]
        sidecar = json.loads(next(bundle.glob("*.quant.json")).read_text())
        output = reference.get_outputs()[0].name
        scale = sidecar.get("activations", {}).get(output, {}).get("scale")
        row["int8_sqnr_db"] = _sqnr(expected, got)
        row["qdq_sqnr_db"] = _sqnr(expected, own)  # onnxruntime on the same int8 model
        if scale:  # near-ties a kernel rounds the other way compound: the worst element, and how many
            steps = np.concatenate([np.abs(g - o).reshape(-1) / scale for g, o in zip(got, own)])
            row["int8_vs_qdq_steps"] = float(np.round(steps.max()))
            row["int8_vs_qdq_beyond_one"] = float(np.mean(steps > 1.5))
        row["fallbacks"] = report["int8"]["fallback_groups"]
    if android and "int8_ms" in row:
        bundle = folder / "int8-android"
        result = build(BuildRequest(target=preset("arm64-android"), output=bundle, name=name.replace("-", "_"),
                                    model=model, quant="int8", calib=str(folder / "calib.npy")))
        report = json.loads((bundle / "build_report.json").read_text())
        row["android"] = f"{report['kernel_count']} kernels, {report['templates']['templated']} templated, " \
                         f"{report['int8']['fallback_groups']} fake-quantized"
    return row


def _cell(value, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("build/third-party"))
    parser.add_argument("--android", action="store_true", help="also build int8 for arm64-android (compile only)")
    parser.add_argument("--only", nargs="*", choices=list(MODELS), default=list(MODELS))
    args = parser.parse_args()
    rows = []
    for name in args.only:
        started = time.perf_counter()
        try:
            rows.append(measure(name, args.out, args.android))
        except FileNotFoundError as exc:
            print(f"{name}: skipped, no {exc}")
            continue
        except Exception:
            traceback.print_exc()
            rows.append({"model": name, "ops": "failed"})
        rows[-1]["seconds"] = time.perf_counter() - started
        print(json.dumps(rows[-1]), flush=True)
    header = ["model", "ops before -> after optimize", "Transposes", "fp32 bundle vs onnxruntime",
              "int8 output SQNR vs fp32 (onnxruntime on the same QDQ model)",
              "int8 bundle vs its QDQ: max steps (outputs > 1 step)",
              "groups fake-quantized",
              "int8 / fp32 / onnxruntime fp32 ms", "int8 vs onnxruntime"]
    if args.android:
        header.append("arm64-android int8")
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for r in rows:
        if "int8_ms" not in r:
            cells = [r["model"], r.get("ops", "-"), r.get("transposes", "-"), r.get("none", "-"), r.get("int8", "-")]
            print("| " + " | ".join(cells + ["-"] * (len(header) - len(cells))) + " |")
            continue
        cells = [r["model"], r["ops"], r["transposes"], _cell(r.get("fp32_vs_onnxruntime"), "{:.1e}"),
                 f"{r['int8_sqnr_db']:.1f} dB ({r['qdq_sqnr_db']:.1f})",
                 f"{_cell(r.get('int8_vs_qdq_steps'), '{:.0f}')} ({_cell(r.get('int8_vs_qdq_beyond_one'), '{:.1%}')})",
                 str(r["fallbacks"]),
                 f"{r['int8_ms']:.2f} / {r['none_ms']:.2f} / {r['onnxruntime_ms']:.2f}",
                 f"{r['int8_ms'] / r['onnxruntime_ms']:.2f}x"]
        if args.android:
            cells.append(r.get("android", "-"))
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
