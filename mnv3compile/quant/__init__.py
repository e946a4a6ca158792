"""Post-training int8 quantization: canonicalize, plan groups, calibrate, emit QDQ + sidecar."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import onnx
import onnx_ir as ir
from onnx_ir.passes import common as ir_passes

from mnv3compile.passes.canonical import require_units
from mnv3compile.passes.optimize import optimize
from mnv3compile.passes.registry import PIPELINE
from mnv3compile.quant.auto_ranges import choose_ranges
from mnv3compile.quant.calibrate import Progress, calibrate
from mnv3compile.quant.calibration import Sample
from mnv3compile.quant.observers import METHODS
from mnv3compile.errors import UserError
from mnv3compile.quant.plan import CALIBRATED, FLOAT_OUTPUT_OPS, plan_groups, split_float_outputs
from mnv3compile.quant.qdq import CORRECTED, QuantRecord, conv_geometry, layer_key, quantize_graph

__all__ = ["QuantizeSettings", "QuantizedModel", "quantize", "METHODS"]


@dataclass(frozen=True)
class QuantizeSettings:
    method: str = "auto"  # per tensor, the range that least hurts its readers (quant/auto_ranges.py)
    percentile: float = 99.99
    moving_average: float | None = None
    symmetric_activations: bool = False
    weight_bits: int = 8  # 7: weights in -63..63 (AVX2's vpmaddubsw multiplies them exactly)
    bias_correction: bool = True  # quant/bias_correction.py
    adaround: bool = False  # quant/adaround.py: weights rounded for the layer's output, not each alone
    keep_float_output: bool = False  # a Softmax/Sigmoid producing a model output runs in float (plan.py)

    def to_json(self) -> dict:
        values = "" if self.weight_bits == 8 else f", {self.weight_bits}-bit values (-63..63)"
        corrected = ", corrected for the weights' mean rounding error" if self.bias_correction else ""
        values += ", rounded by AdaRound" if self.adaround else ""
        return {**asdict(self), "weights": f"int8 symmetric per output channel (depthwise included){values}",
                "activations": "int8 per tensor, " + ("symmetric" if self.symmetric_activations else "asymmetric"),
                "bias": f"int32, scale = input scale * weight scale{corrected}"}


@dataclass
class QuantizedModel:
    float_model: onnx.ModelProto  # the canonical float model the quantizer worked on
    model: onnx.ModelProto  # QDQ
    record: QuantRecord
    settings: QuantizeSettings
    calibration_samples: int

    def sidecar(self, extra: dict | None = None) -> dict:
        return {"calibration": {**self.settings.to_json(), "samples": self.calibration_samples, **(extra or {})},
                "activations": self.record.activations, "weights": self.record.weights,
                "biases": self.record.biases, "dequantized": self.record.dequantized, "groups": self.record.groups,
                "float_outputs": self.record.float_outputs}

    def sidecar_json(self, extra: dict | None = None) -> dict:
        """``sidecar`` with plain JSON values (numpy scalars as numbers), as the file holds it."""
        import json

        return json.loads(json.dumps(self.sidecar(extra), default=_plain))

    def evaluate(self, samples: Sequence[Sample], progress: Progress | None = None):
        """How much quantization costs on ``samples`` (quant/report.py ``AccuracyReport``): per-layer
        and output SQNR against the float model, top-1 agreement, accuracy when samples have labels."""
        from mnv3compile.quant.report import compare

        return compare(self.float_model, self.model, self.record.dequantized, samples, progress)

    def save(self, path: str | Path, extra: dict | None = None, accuracy: dict | None = None) -> Path:
        """Write the QDQ model to ``path`` (.onnx) and its sidecar (scales, zero points, groups, the
        calibration's settings and ``extra``, and an ``evaluate`` report's ``to_json()`` when given)
        beside it with .json; each written atomically."""
        import json

        from mnv3compile.onnx_io import save_onnx, write_atomic

        path = Path(path)
        if path.suffix.lower() != ".onnx":
            raise UserError(f"output {path} must end in .onnx (the scales go to {path.with_suffix('.json')})")
        save_onnx(self.model, path)
        sidecar = self.sidecar(extra) | ({"accuracy": accuracy} if accuracy is not None else {})
        write_atomic(path.with_suffix(".json"), json.dumps(sidecar, indent=2, default=_plain).encode())
        return path


def _plain(value):
    """numpy scalars in a sidecar, as JSON numbers."""
    import numpy as np

    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(type(value).__name__)


def quantize(model: onnx.ModelProto, samples: Sequence[Sample], settings: QuantizeSettings = QuantizeSettings(),
             progress: Progress | None = None, optimized: bool = False) -> QuantizedModel:
    """Quantize ``model`` on ``samples``: any opset 11-21 float model, canonicalized first, or one
    ``optimized`` already (``build`` optimizes once), whose fused units are then checked."""
    if optimized:
        require_units(model, "the quantizer")
        canonical = model
    else:
        canonical, _ = optimize(model, PIPELINE)
    ir_model = ir.from_proto(canonical)
    groups = plan_groups(ir_model)
    groups, kept = split_float_outputs(groups) if settings.keep_float_output else (groups, [])
    if settings.keep_float_output and not kept:
        raise UserError("--keep-float-output: no model output is produced by a "
                        f"{' or '.join(FLOAT_OUTPUT_OPS)}; nothing would stay float")
    inputs = [v.name for v in ir_model.graph.inputs if v.const_value is None]
    observed = inputs + [g.output.name for g in groups if g.range_rule == CALIBRATED]
    # Bias correction needs what each weighted layer's taps read on average, AdaRound their second
    # moment; a Conv whose taps are unknown is left alone by both.
    layers, moment_layers = {}, {}
    for head in (g.head for g in groups if g.head.op_type in CORRECTED):
        geometry = conv_geometry(head)
        if head.op_type == "Conv" and geometry is None:
            continue
        if settings.bias_correction:
            layers[layer_key(head)] = (head.inputs[0].name, geometry)
        if settings.adaround:
            moment_layers[layer_key(head)] = (head.inputs[0].name, geometry, head.attributes.get_int("group", 1))
    found = calibrate(canonical, observed, samples, settings.method, settings.percentile, settings.moving_average,
                      progress, layers, moment_layers)
    ranges, methods = choose_ranges(canonical, groups, found.candidates, samples, settings.symmetric_activations,
                                    progress)
    record = quantize_graph(ir_model, groups, ranges, settings.symmetric_activations, settings.weight_bits,
                            found.input_means, found.input_moments)
    record.float_outputs = [g.output.name for g in kept]
    for name, method in methods.items():
        record.activations[name]["method"] = method
    ir_passes.RemoveUnusedNodesPass()(ir_model)  # the float weights the int8 ones replaced
    quantized = ir.to_proto(ir_model)
    onnx.checker.check_model(quantized)
    return QuantizedModel(canonical, quantized, record, settings, len(samples))
