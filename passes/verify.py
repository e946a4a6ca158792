"""Numerical proof of a rewrite: onnxruntime on the model before and after, same seeded inputs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort

from mnv3compile.errors import DynamicShapeError, OutputMismatchError, UserError

DEFAULT_TOLERANCE = 1e-4  # relative to the largest magnitude of each output (absolute below 1)


@dataclass(frozen=True)
class OutputError:
    name: str
    max_abs: float
    max_rel: float  # max |before - after| / max(max |before|, 1)


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    """onnxruntime with its own graph optimizations off, so it runs exactly the graph given."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


_NUMPY_TYPES = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.FLOAT16: np.float16,
                onnx.TensorProto.DOUBLE: np.float64}


def random_feeds(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded standard-normal inputs for every graph input; shapes must be static."""
    initializer_names = {i.name for i in model.graph.initializer}
    rng = np.random.default_rng(seed)
    feeds = {}
    for value in model.graph.input:
        if value.name in initializer_names:
            continue
        tensor_type = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in tensor_type.shape.dim]
        if any(d <= 0 for d in dims):
            raise DynamicShapeError(value.name, "to verify")
        dtype = _NUMPY_TYPES.get(tensor_type.elem_type)
        if dtype is None:
            raise UserError(f"input '{value.name}' is not a float tensor; cannot make random inputs")
        feeds[value.name] = rng.standard_normal(dims).astype(dtype)
    return feeds


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    sess = session(model)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def compare(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> list[OutputError]:
    errors = []
    for name, expected in before.items():
        actual = after[name]
        if actual.shape != expected.shape:
            raise OutputMismatchError(f"output {name!r} changed shape {expected.shape} -> {actual.shape}")
        diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
        # Relative to the output's largest magnitude, but never to less than 1: a sigmoid map of
        # random inputs is ~1e-3 everywhere, where float32 noise of 1e-6 in its logits is 1e-4.
        scale = max(float(np.abs(expected).max()), 1.0)
        errors.append(OutputError(name, float(diff.max()), float(diff.max()) / scale))
    return errors
