"""PaddleOCR's PP-OCRv4 text recognizer through mnv3compile: fp32 and int8 host bundles against
onnxruntime, and what int8 does to the text it reads.

    python benchmarks/ocr_recognizer.py [--width 640] [--calib 32] [--eval 200] [--out build/ocr-rec]

Lines of words and numbers rendered in DejaVu fonts (benchmarks/textlines.py) are the input, so
the text each one shows is known: a line counts as read when the CTC-decoded string (greedy:
best class per step, repeats collapsed, blanks dropped; the character list is the model's
``character`` metadata) equals it, spaces at its ends aside. Preprocessing as rapidocr's: height 48 keeping the aspect
ratio, (x/255 - 0.5)/0.5 in BGR, zero padding on the right to ``--width``; lines too wide for it
are not rendered. int8 is built twice: all integer, and with ``--keep-float-output`` (the
final softmax over 6625 classes in float32). Latency: median of 10 single calls, 1 thread, the same process.
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

from ocr_detector import data_arguments, median_ms, one_thread_session  # noqa: E402
from textlines import fonts, render_text_line  # noqa: E402

HEIGHT = 48


def rendered_lines(count: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    from PIL import Image

    from mnv3compile.quant.preprocess import preset

    spec = preset("paddle")
    font_files = fonts()
    tensors, texts = [], []
    while len(texts) < count:
        image, text = render_text_line(rng, font_files)
        resized_width = int(np.ceil(HEIGHT * image.width / image.height))
        if resized_width > width:
            continue
        x = np.zeros((3, HEIGHT, width), np.float32)
        x[:, :, :resized_width] = spec.normalize(np.asarray(image.resize((resized_width, HEIGHT), Image.BILINEAR)))
        tensors.append(x)
        texts.append(text)
    return np.stack(tensors), texts


def read_as(decoded: str, text: str) -> bool:
    """The line was read: the same string, but for spaces at its ends (the model reads the paper
    around a line as spaces now and then)."""
    return decoded.strip() == text


def ctc_decode(probabilities: np.ndarray, characters: list[str]) -> str:
    best = probabilities.reshape(-1, probabilities.shape[-1]).argmax(axis=1)
    kept = [c for i, c in enumerate(best) if c != 0 and (i == 0 or c != best[i - 1])]
    return "".join(characters[c] for c in kept)


def main() -> None:
    from assets import paddle_rec_model

    from mnv3compile.analysis import with_static_inputs
    from mnv3compile.pipeline import BuildRequest, QuantizeSettings, build
    from mnv3compile.runner import BundleRunner
    from mnv3compile.targets.presets import preset

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=640)
    data_arguments(parser, "lines", 32, 200, "build/ocr-rec")
    args = parser.parse_args()
    source = onnx.load(str(paddle_rec_model()))
    characters = ["<blank>", *dict((p.key, p.value) for p in source.metadata_props)["character"].splitlines(), " "]
    rng = np.random.default_rng(0)
    calib, _ = rendered_lines(args.calib, args.width, rng)
    evaluation, truth = rendered_lines(args.eval, args.width, rng)
    args.out.mkdir(parents=True, exist_ok=True)
    calib_file = args.out / "calib.npy"
    np.save(calib_file, calib)
    model, _ = with_static_inputs(source, {"x": [1, 3, HEIGHT, args.width]})
    reference = one_thread_session(model)
    fp32 = [reference.run(None, {"x": x[None]})[0] for x in evaluation]
    fp32_text = [ctc_decode(p, characters) for p in fp32]
    rows = [{"name": "onnxruntime fp32", "read": np.mean([read_as(a, b) for a, b in zip(fp32_text, truth)]), "same": 1.0}]
    for quant, keep_float_output in (("none", False), ("int8", False), ("int8", True)):
        folder = args.out / (quant + ("-float-output" if keep_float_output else ""))
        started = time.perf_counter()
        result = build(BuildRequest(target=preset("host"), output=folder, name="rec", model=model, quant=quant,
                                    calib=str(calib_file) if quant == "int8" else None,
                                    quant_settings=QuantizeSettings(keep_float_output=keep_float_output)))
        seconds = time.perf_counter() - started
        runner = BundleRunner(result.bundle)
        own = one_thread_session(folder / runner.manifest["model"])
        ours = [runner(x[None]) for x in evaluation]
        theirs = [own.run(None, {"x": x[None]})[0] for x in evaluation]
        text = [ctc_decode(p, characters) for p in ours]
        report = json.loads((folder / "build_report.json").read_text())
        rows.append({
            "name": f"bundle {'fp32' if quant == 'none' else 'int8'}" + (" `--keep-float-output`" if keep_float_output else ""),
            "build_s": seconds,
            "kernels": report.get("templates", {}),
            "fallbacks": (report.get("int8") or {}).get("fallback_groups", "-"),
            "vs_own_model": max(float(np.abs(a - b).max()) for a, b in zip(ours, theirs)),
            "read": np.mean([read_as(a, b) for a, b in zip(text, truth)]),
            "same": np.mean([a == b for a, b in zip(text, fp32_text)]),
            "steps_same": np.mean([(a.argmax(-1) == f.argmax(-1)).mean() for a, f in zip(ours, fp32)]),
            "ms": median_ms(lambda: runner(evaluation[0][None])),
            "ort_ms": median_ms(lambda: reference.run(None, {"x": evaluation[0][None]})),
        })
    print(f"\nPP-OCRv4 recognizer at {HEIGHT}x{args.width}, {args.calib} calibration and {args.eval} evaluation lines")
    print("| run | build s | groups left fake-quantized | max diff vs onnxruntime (its own model) | lines read exactly "
          "| lines as fp32 reads them | CTC steps with fp32's class | latency ms | onnxruntime fp32 ms | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "ms" not in r:
            print(f"| {r['name']} | - | - | - | {100 * r['read']:.1f}% | 100% | 100% | - | - | - |")
            continue
        print(f"| {r['name']} | {r['build_s']:.0f} | {r['fallbacks']} | {r['vs_own_model']:.2g} | {100 * r['read']:.1f}% | "
              f"{100 * r['same']:.1f}% | {100 * r['steps_same']:.2f}% | {r['ms']:.1f} | {r['ort_ms']:.1f} | "
              f"{r['ms'] / r['ort_ms']:.2f}x |")


if __name__ == "__main__":
    main()
