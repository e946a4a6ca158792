"""``--method auto``: per activation tensor, the candidate range whose quantization hurts least
where it matters, the output of the groups that read it.

Every calibrated tensor has several candidate ranges (``observers.AUTO_CANDIDATES``: percentiles
99.99, 99.9 and 99.999, min-max, entropy). Which one is best depends on what reads the tensor: a
clipped outlier may not matter to a ReLU after a conv and may be all that matters to a residual
add. So each group that reads the tensor is cut out of the float model (as its integer kernel
computes it), run on the float values of its inputs with only that tensor quantized and
dequantized with each candidate, and compared with its float output. The candidate with the least
error summed over the readers (each relative to its output's energy) wins; a graph output counts
its own quantization error. Weights stay float here: their error does not depend on the choice.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx.utils import Extractor

from mnv3compile.quant.calibrate import Progress, session_with_outputs
from mnv3compile.quant.calibration import Sample
from mnv3compile.quant.plan import SAME_AS_INPUT, Group, data_inputs
from mnv3compile.quant.qparams import QMAX, QMIN, activation_qparams

AUTO_SAMPLES = 16  # calibration samples the choice is measured on (the first ones)


@dataclass
class Reader:
    """A group that reads calibrated tensors: its inputs, output and the model that computes it."""

    inputs: list[str]
    output: str
    session: ort.InferenceSession


def fake_quantize(values: np.ndarray, low: float, high: float, symmetric: bool) -> np.ndarray:
    """Quantize to int8 with the parameters ``activation_qparams`` gives, then dequantize."""
    qp = activation_qparams(low, high, symmetric)
    q = np.clip(np.round(values / qp.scale) + qp.zero_point, QMIN, QMAX)
    return ((q - qp.zero_point) * qp.scale).astype(values.dtype)


def _group_inputs(group: Group, known: set[str]) -> list[str]:
    inside = {o.name for node in group.nodes for o in node.outputs}
    names = [v.name for node in group.nodes for _, v in data_inputs(node)
             if v.name not in inside and v.name in known]
    return list(dict.fromkeys(names))


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # One session per reading group: each keeping its own memory arena held several GB at 1024x2048.
    options.enable_cpu_mem_arena = False
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def choose_ranges(model: onnx.ModelProto, groups: Sequence[Group], candidates: dict[str, dict[str, tuple[float, float]]],
                  samples: Sequence[Sample], symmetric: bool = False,
                  progress: Progress | None = None) -> tuple[dict[str, tuple[float, float]], dict[str, str]]:
    """(range, method name) per tensor of ``candidates``, chosen as the module docstring says."""
    graph_inputs = [i.name for i in model.graph.input]
    known = set(graph_inputs) | {g.output.name for g in groups}
    # A tensor read through data movement (Flatten, Reshape, ...) keeps its parameters there.
    root = {name: name for name in candidates}
    for group in groups:
        if group.range_rule == SAME_AS_INPUT:
            source = data_inputs(group.head)[0][1].name
            if source in root:
                root[group.output.name] = root[source]
    contested = {name for name, found in candidates.items() if len(set(found.values())) > 1}
    extractor = Extractor(model)
    readers: list[Reader] = []
    for group in groups:
        if group.range_rule == SAME_AS_INPUT:
            continue
        inputs = _group_inputs(group, known)
        if not any(root.get(name) in contested for name in inputs):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cut = extractor.extract_model(inputs, [group.output.name])
        readers.append(Reader(inputs, group.output.name, _session(cut)))
    outputs = [o.name for o in model.graph.output if root.get(o.name) in contested]
    fetched = list(dict.fromkeys([n for r in readers for n in (*r.inputs, r.output)] + outputs))
    errors = {name: {method: 0.0 for method in candidates[name]} for name in contested}
    if not fetched:
        return _chosen(candidates, errors)
    session = session_with_outputs(model, fetched)
    input_name = session.get_inputs()[0].name
    used = list(samples)[:AUTO_SAMPLES]
    advance = progress("calibration: choosing ranges", len(used)) if progress else (lambda: None)
    noise: dict[tuple[str, str, str], float] = defaultdict(float)  # (tensor, method, where) -> squared error
    energy: dict[str, float] = defaultdict(float)
    for sample in used:
        values = dict(zip(fetched, session.run(fetched, {input_name: sample.tensor})))
        for reader in readers:
            reference = values[reader.output].astype(np.float64)
            energy[reader.output] += float(np.sum(reference ** 2))
            for tensor in {root[n] for n in reader.inputs if root.get(n) in contested}:
                for method, (low, high) in _distinct(candidates[tensor]):
                    feeds = {n: fake_quantize(values[n], low, high, symmetric) if root.get(n) == tensor else values[n]
                             for n in reader.inputs}
                    got = reader.session.run([reader.output], feeds)[0]
                    noise[(tensor, method, reader.output)] += float(np.sum((got - reference) ** 2))
        for output in outputs:
            reference = values[output].astype(np.float64)
            energy[output] += float(np.sum(reference ** 2))
            for method, (low, high) in _distinct(candidates[root[output]]):
                got = fake_quantize(values[output], low, high, symmetric)
                noise[(root[output], method, output)] += float(np.sum((got - reference) ** 2))
        advance()
    for (tensor, method, where), value in noise.items():
        errors[tensor][method] += value / max(energy[where], 1e-30)
    # Candidates with the same range as one measured share its error.
    for tensor in contested:
        by_range = {}
        for method, found in _distinct(candidates[tensor]):
            by_range[found] = errors[tensor][method]
        for method, found in candidates[tensor].items():
            errors[tensor][method] = by_range[found]
    return _chosen(candidates, errors)


def _distinct(found: dict[str, tuple[float, float]]):
    """(method, range) with each range once, the first method that gives it."""
    seen = set()
    for method, value in found.items():
        if value not in seen:
            seen.add(value)
            yield method, value


def _chosen(candidates, errors) -> tuple[dict[str, tuple[float, float]], dict[str, str]]:
    ranges, methods = {}, {}
    for name, found in candidates.items():
        method = min(found, key=lambda m: errors[name][m]) if name in errors else next(iter(found))
        ranges[name], methods[name] = found[method], method
    return ranges, methods
