"""How much quantization costs: per-layer and output SQNR, top-1 agreement and accuracy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx

from mnv3compile.quant.calibrate import collect_outputs, session_with_outputs
from mnv3compile.quant.calibration import Sample


@dataclass
class AccuracyReport:
    layers: list[tuple[str, float]] = field(default_factory=list)  # (tensor, SQNR dB), worst first
    outputs: dict[str, float] = field(default_factory=dict)  # graph output -> SQNR dB
    samples: int = 0
    top1_agreement: float | None = None  # share of samples whose argmax is unchanged
    float_accuracy: float | None = None  # with labels
    int8_accuracy: float | None = None

    def to_json(self) -> dict:
        return {"layers_sqnr_db": dict(self.layers), "outputs_sqnr_db": self.outputs, "samples": self.samples,
                "top1_agreement": self.top1_agreement, "float_accuracy": self.float_accuracy,
                "int8_accuracy": self.int8_accuracy}


def sqnr_db(signal: float, noise: float) -> float:
    if noise <= 0:
        return float("inf")
    return float(10.0 * np.log10(max(signal, 1e-30) / noise))


def compare(float_model: onnx.ModelProto, int8_model: onnx.ModelProto, dequantized: dict[str, str],
            samples: Sequence[Sample], progress=None) -> AccuracyReport:
    """Run both models on ``samples``; ``dequantized`` maps float tensor names to their DQ outputs."""
    output_names = [o.name for o in float_model.graph.output]
    layer_names = [n for n in dequantized if n not in output_names]
    float_session = session_with_outputs(float_model, output_names + layer_names)
    int8_session = session_with_outputs(int8_model, output_names + [dequantized[n] for n in layer_names])
    energy = {n: [0.0, 0.0] for n in output_names + layer_names}
    agree = correct_float = correct_int8 = labelled = 0
    advance = progress("evaluation", len(samples)) if progress else (lambda: None)
    for sample in samples:
        reference = collect_outputs(float_session, output_names + layer_names, sample)
        quantized = collect_outputs(int8_session, output_names + [dequantized[n] for n in layer_names], sample)
        for name in output_names + layer_names:
            x = reference[name].astype(np.float64)
            y = quantized[dequantized.get(name, name) if name in layer_names else name].astype(np.float64)
            energy[name][0] += float(np.sum(x * x))
            energy[name][1] += float(np.sum((x - y) ** 2))
        logits_f, logits_q = reference[output_names[0]], quantized[output_names[0]]
        top_f, top_q = np.argmax(logits_f, axis=1), np.argmax(logits_q, axis=1)
        agree += float(np.mean(top_f == top_q))
        if sample.label is not None:
            labelled += 1
            correct_float += int(top_f.reshape(-1)[0] == sample.label)
            correct_int8 += int(top_q.reshape(-1)[0] == sample.label)
        advance()
    report = AccuracyReport(samples=len(samples))
    report.layers = sorted(((n, sqnr_db(*energy[n])) for n in layer_names), key=lambda item: item[1])
    report.outputs = {n: sqnr_db(*energy[n]) for n in output_names}
    if samples:
        report.top1_agreement = agree / len(samples)
    if labelled:
        report.float_accuracy, report.int8_accuracy = correct_float / labelled, correct_int8 / labelled
    return report


def plot_sqnr(report: AccuracyReport, path, title: str) -> None:
    """Per-layer SQNR as a horizontal bar chart PNG (Pillow only, no plotting library needed)."""
    from PIL import Image, ImageDraw, ImageFont

    rows = report.layers
    row_height, label_width, bar_width = 14, 360, 420
    image = Image.new("RGB", (label_width + bar_width + 80, 40 + row_height * max(len(rows), 1)), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=11)
    draw.text((8, 8), title, fill="black", font=ImageFont.load_default(size=14))
    finite = [v for _, v in rows if np.isfinite(v)]
    top = max(finite + [1.0])
    for i, (name, value) in enumerate(rows):
        y = 34 + i * row_height
        draw.text((8, y), name[-52:], fill="black", font=font)
        shown = top if not np.isfinite(value) else max(value, 0.0)
        color = "#c0392b" if value < 20 else "#e67e22" if value < 30 else "#27ae60"
        draw.rectangle((label_width, y + 2, label_width + int(bar_width * shown / top), y + row_height - 2), fill=color)
        draw.text((label_width + bar_width + 6, y), f"{value:.1f} dB", fill="black", font=font)
    image.save(path)
