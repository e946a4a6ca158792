"""Run the float model over calibration samples and turn what each observer saw into ranges."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort

from mnv3compile.errors import UserError
from mnv3compile.quant.adaround import gram_sums
from mnv3compile.quant.bias_correction import ConvGeometry, tap_sums
from mnv3compile.quant.calibration import Sample
from mnv3compile.quant.observers import NoFiniteValues, RangeObserver

Progress = Callable[[str, int], Callable[[], None]]  # (description, total) -> advance()


def session_with_outputs(model: onnx.ModelProto, names: Sequence[str]) -> ort.InferenceSession:
    """An onnxruntime session that also returns the named intermediate tensors."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {o.name for o in probe.graph.output}
    for name in names:
        if name not in existing:
            probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # what ONNX's checker lets through and onnxruntime refuses
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise UserError(f"onnxruntime cannot run the model to calibrate it: {first}") from exc


@dataclass
class Calibration:
    """What the float model showed on the calibration samples."""

    candidates: dict[str, dict[str, tuple[float, float]]]  # tensor -> method -> (low, high)
    input_means: dict[str, np.ndarray]  # layer -> what its taps read on average (bias correction)
    input_moments: dict[str, np.ndarray]  # layer -> E[x x^T] of its taps, per group (AdaRound)


def calibrate(model: onnx.ModelProto, names: Sequence[str], samples: Sequence[Sample], method: str,
              percentile: float = 99.99, moving_average: float | None = None, progress: Progress | None = None,
              layers: dict[str, tuple[str, ConvGeometry | None]] | None = None,
              moment_layers: dict[str, tuple[str, ConvGeometry | None, int]] | None = None) -> Calibration:
    """Candidate ranges per tensor in ``names`` by ``method`` over ``samples``; for each layer of
    ``layers`` (name -> its input tensor and conv geometry, None for a matrix layer) the mean of
    what each of its taps reads (``bias_correction.tap_sums``); for each of ``moment_layers``
    (the same and the conv's groups) the second moment of its taps (``adaround.gram_sums``)."""
    layers, moment_layers = layers or {}, moment_layers or {}
    fetched = list(dict.fromkeys([*names, *(tensor for tensor, _ in layers.values()),
                                  *(tensor for tensor, _, _ in moment_layers.values())]))
    session = session_with_outputs(model, fetched)
    input_name = session.get_inputs()[0].name
    observers = {n: RangeObserver(method, percentile, moving_average) for n in names}
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    moment_sums: dict[str, np.ndarray] = {}
    moment_counts: dict[str, int] = {}
    passes = ["ranges", "histograms"] if method != "minmax" else ["ranges"]
    for stage in passes:
        advance = progress(f"calibration: {stage}", len(samples)) if progress else (lambda: None)
        for sample in samples:
            try:
                outputs = dict(zip(fetched, session.run(fetched, {input_name: sample.tensor})))
            except Exception as exc:  # shapes the checker cannot see (a conv's channels), found when run
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
                raise UserError(f"onnxruntime failed running the model on a calibration sample: {first}") from exc
            for name in names:
                if stage == "ranges":
                    observers[name].observe_range(outputs[name])
                else:
                    observers[name].observe_histogram(outputs[name])
            if stage == "ranges":
                for layer, (tensor, geometry) in layers.items():
                    total, count = tap_sums(outputs[tensor], geometry)
                    sums[layer] = sums.get(layer, 0.0) + total
                    counts[layer] = counts.get(layer, 0) + count
                for layer, (tensor, geometry, groups) in moment_layers.items():
                    total, count = gram_sums(outputs[tensor], geometry, groups)
                    moment_sums[layer] = moment_sums.get(layer, 0.0) + total
                    moment_counts[layer] = moment_counts.get(layer, 0) + count
            advance()
    candidates = {}
    for name, observer in observers.items():
        try:
            candidates[name] = observer.candidates()
        except NoFiniteValues:
            raise UserError(f"tensor {name!r} is NaN or infinite on every calibration sample: check the model's "
                            "weights (or the calibration data)") from None
    means = {layer: sums[layer] / max(counts[layer], 1) for layer in sums}
    moments = {layer: moment_sums[layer] / max(moment_counts[layer], 1) for layer in moment_sums}
    return Calibration(candidates, means, moments)


def collect_outputs(session: ort.InferenceSession, names: Sequence[str], sample: Sample) -> dict[str, np.ndarray]:
    input_name = session.get_inputs()[0].name
    return dict(zip(names, session.run(list(names), {input_name: sample.tensor})))
