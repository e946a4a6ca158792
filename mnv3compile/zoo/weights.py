"""Parameters for zoo models: seeded random initialisation, and torchvision-format state dicts.

Random weights are He-initialised convolutions whose BatchNorm running statistics are then set to
the statistics each BN actually sees on normalised random images, layer after layer. That keeps
activations at unit scale through twenty blocks (no vanishing, no explosion), so rewrites and
quantization are tested on realistic numbers. Statistics are rounded to 4 significant digits so
the same seed gives the same bits on any machine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx

from mnv3compile.errors import UserError
from mnv3compile.zoo.emit import ParamInfo, emit, parameter_list
from mnv3compile.zoo.spec import ModelSpec

StateDict = dict[str, np.ndarray]
WEIGHT_SUFFIXES = (".npz", ".safetensors", ".pth", ".pt")
# Statistics are gathered at this resolution whatever the model's own: the weights of a variant do
# not depend on its input size, so one seed gives one set of weights for every resolution.
CALIBRATION_RESOLUTION = 128
CALIBRATION_BATCH = 4


def _initial_value(info: ParamInfo, rng: np.random.Generator) -> np.ndarray:
    shape = info.shape
    if info.role in ("conv_weight", "linear_weight"):
        return rng.normal(0.0, np.sqrt(2.0 / info.fan_in), shape)
    if info.role == "bias":
        return rng.normal(0.0, 0.05, shape)
    if info.role == "bn_weight":
        return rng.uniform(0.6, 1.4, shape)
    if info.role == "bn_bias":
        return rng.normal(0.1, 0.2, shape)
    if info.role == "bn_mean":
        return np.zeros(shape)
    if info.role == "bn_var":
        return np.ones(shape)
    if info.role == "bn_count":
        return np.zeros(shape, np.int64)
    raise ValueError(f"no initialiser for role {info.role}")


def _round_sig(values: np.ndarray, digits: int = 4) -> np.ndarray:
    return np.array([float(f"{v:.{digits}g}") for v in values.ravel()]).reshape(values.shape)


def _calibrate_batchnorm(spec: ModelSpec, state: StateDict, rng: np.random.Generator) -> None:
    """Set every BN's running mean/var to the statistics of its input, in graph order.

    The running statistics become graph inputs so one onnxruntime session serves every step.
    """
    import onnxruntime as ort

    calib_spec = replace(spec, resolution=(CALIBRATION_RESOLUTION,) * 2)
    model = emit(calib_spec, lambda info: state[info.key])
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = CALIBRATION_BATCH
    for init in model.graph.initializer:  # Resize targets carry the batch size too
        if init.name.endswith(".sizes"):
            sizes = onnx.numpy_helper.to_array(init).copy()
            sizes[0] = CALIBRATION_BATCH
            init.CopyFrom(onnx.numpy_helper.from_array(sizes, init.name))
    stat_keys = [init.name for init in model.graph.initializer
                 if init.name.endswith((".running_mean", ".running_var"))]
    keep = [init for init in model.graph.initializer if init.name not in set(stat_keys)]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    for key in stat_keys:
        model.graph.input.append(
            onnx.helper.make_tensor_value_info(key, onnx.TensorProto.FLOAT, state[key].shape))
    bn_nodes = [n for n in model.graph.node if n.op_type == "BatchNormalization"]
    del model.graph.output[:]
    for node in bn_nodes:
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(node.input[0]))

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    images = rng.standard_normal((CALIBRATION_BATCH, 3, CALIBRATION_RESOLUTION,
                                  CALIBRATION_RESOLUTION)).astype(np.float32)
    for node in bn_nodes:
        feeds = {"input": images, **{k: state[k] for k in stat_keys}}
        bn_input = session.run([node.input[0]], feeds)[0]
        axes = (0, 2, 3)
        state[node.input[3]] = _round_sig(bn_input.mean(axis=axes)).astype(np.float32)
        state[node.input[4]] = _round_sig(bn_input.var(axis=axes) + 1e-5).astype(np.float32)


@lru_cache(maxsize=64)
def _random_state_cached(spec: ModelSpec, seed: int) -> tuple[tuple[str, np.ndarray], ...]:
    rng = np.random.default_rng(seed)
    state: StateDict = {}
    for info in parameter_list(spec):
        value = _initial_value(info, rng)
        state[info.key] = value.astype(np.int64 if info.role == "bn_count" else np.float32)
    _calibrate_batchnorm(spec, state, rng)
    return tuple(state.items())


def random_state_dict(spec: ModelSpec, seed: int = 0) -> StateDict:
    """Seeded random weights for ``spec``, identical for every input resolution."""
    canonical = replace(spec, resolution=(CALIBRATION_RESOLUTION,) * 2)
    return {k: v.copy() for k, v in _random_state_cached(canonical, seed)}


def check_state_dict(spec: ModelSpec, state: Mapping[str, np.ndarray]) -> StateDict:
    """Validate ``state`` against ``spec``; the error names the first mismatching key and both shapes."""
    expected = parameter_list(spec)
    checked: StateDict = {}
    for info in expected:
        if info.key not in state:
            if info.role == "bn_count":
                checked[info.key] = np.zeros((), np.int64)
                continue
            raise UserError(
                f"weights do not fit {spec.name} width {spec.width}: missing key '{info.key}' "
                f"(model expects shape {info.shape})")
        value = np.asarray(state[info.key])
        if tuple(value.shape) != info.shape:
            raise UserError(
                f"weights do not fit {spec.name} width {spec.width}: key '{info.key}' has shape "
                f"{tuple(value.shape)} in the file, the model expects {info.shape}")
        checked[info.key] = value
    known = {info.key for info in expected}
    extra = [k for k in state if k not in known]
    if extra:
        raise UserError(
            f"weights do not fit {spec.name} width {spec.width}: unexpected key '{extra[0]}' "
            f"with shape {tuple(np.asarray(state[extra[0]]).shape)} ({len(extra)} unexpected in all)")
    return checked


def load_state_dict(path: str | Path) -> StateDict:
    """Read a torchvision-format state dict from .npz, .safetensors or (with torch) .pth/.pt."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WEIGHT_SUFFIXES:
        raise UserError(f"cannot read weights file {path}: unsupported extension "
                        f"'{suffix}' (use one of {', '.join(WEIGHT_SUFFIXES)})")
    if not path.is_file():
        raise UserError(f"cannot read weights file {path}: no such file")
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return {k: archive[k] for k in archive.files}
        if suffix == ".safetensors":
            from safetensors.numpy import load_file

            return load_file(str(path))
        return _load_torch(path)
    except UserError:
        raise
    except Exception as exc:  # any decoder failure is the file's fault; say which file and why
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot read weights file {path}: {reason}") from exc


def _load_torch(path: Path) -> StateDict:
    try:
        import torch
    except ImportError as exc:
        raise UserError(f"cannot read weights file {path}: .pth needs torch "
                        "(pip install 'mnv3compile[torch]'), or convert it to .npz/.safetensors") from exc
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):  # common checkpoint wrappers
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict):
        raise UserError(f"cannot read weights file {path}: expected a state dict, found {type(obj).__name__}")
    return {k: v.detach().cpu().numpy() for k, v in obj.items()}


def save_state_dict(state: Mapping[str, np.ndarray], path: str | Path) -> None:
    """Write a state dict as .npz, .safetensors or .pth, chosen by the file's extension."""
    path = Path(path)
    suffix = path.suffix.lower()
    arrays = {k: np.array(v, order="C") for k, v in state.items()}  # ascontiguousarray makes 0-d 1-d
    if suffix == ".npz":
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)
    elif suffix == ".safetensors":
        from safetensors.numpy import save_file

        save_file(arrays, str(path))
    elif suffix in (".pth", ".pt"):
        import torch

        torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, path)
    else:
        raise UserError(f"cannot write weights file {path}: unsupported extension '{suffix}' "
                        f"(use one of {', '.join(WEIGHT_SUFFIXES)})")


def state_dict_from_onnx(model: onnx.ModelProto, spec: ModelSpec) -> StateDict:
    """Recover the torchvision-format state dict from a model this zoo emitted."""
    by_name = {init.name: init for init in model.graph.initializer}
    state: StateDict = {}
    for info in parameter_list(spec):
        if info.role == "bn_count":
            state[info.key] = np.zeros((), np.int64)
        else:
            state[info.key] = onnx.numpy_helper.to_array(by_name[info.key])
    return state
