"""MobileNetV3 model zoo: layer tables as data, one ONNX emitter, weights by seed or state dict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from mnv3compile.zoo.emit import emit, parameter_list
from mnv3compile.zoo.spec import MODEL_NAMES, ModelSpec, build_spec, make_divisible
from mnv3compile.zoo.weights import (
    check_state_dict,
    load_state_dict,
    random_state_dict,
    save_state_dict,
    state_dict_from_onnx,
)

__all__ = [
    "MODEL_NAMES", "ModelSpec", "build_spec", "make_divisible", "emit", "parameter_list",
    "build_model", "structure_only", "random_state_dict", "load_state_dict", "save_state_dict", "check_state_dict",
    "state_dict_from_onnx",
]


def structure_only(spec: ModelSpec) -> onnx.ModelProto:
    """The graph of ``spec`` with all-zero weights: for counting, not for running."""
    return emit(spec, lambda info: np.zeros(info.shape, np.float32))


def build_model(spec: ModelSpec, weights: str | Path | None = None, seed: int = 0) -> onnx.ModelProto:
    """The ONNX model for ``spec``: weights from a state-dict file if given, else random by ``seed``."""
    if weights is not None:
        state = check_state_dict(spec, load_state_dict(weights))
    else:
        state = random_state_dict(spec, seed)
    return emit(spec, lambda info: state[info.key])
