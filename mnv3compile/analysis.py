"""Per-layer statistics of any ONNX CNN: output shape, multiply-adds and parameters.

Conventions (the paper's and torchvision's): MAdds count only the multiply-adds of Conv,
ConvTranspose, Gemm and MatMul for a batch of one; parameters are the learnable tensors (weights,
biases, BatchNorm scale and shift), not BatchNorm running statistics, quantization scales/zero
points or shape constants.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import onnx

from mnv3compile.errors import UserError

# Inputs that hold state or metadata rather than learnable parameters, per op type (by position).
_NON_PARAMETER_INPUTS = {
    "BatchNormalization": {3, 4},
    "QuantizeLinear": {1, 2},
    "DequantizeLinear": {1, 2},
}
# Initializers that are data, not learned parameters: SSDLite's anchor tables (zoo/ssdlite.py).
_NON_PARAMETER_PREFIXES = ("anchors.",)
_PARAMETER_DTYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
                     onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.INT32}


@dataclass(frozen=True)
class LayerStats:
    name: str
    op: str
    output_shape: tuple[int | str, ...] | None
    madds: int
    params: int


@dataclass(frozen=True)
class ModelStats:
    layers: tuple[LayerStats, ...]
    inputs: dict[str, tuple[int | str, ...]]
    outputs: dict[str, tuple[int | str, ...]]
    notes: tuple[str, ...]

    @property
    def total_madds(self) -> int:
        return sum(layer.madds for layer in self.layers)

    @property
    def total_params(self) -> int:
        return sum(layer.params for layer in self.layers)

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for layer in self.layers:
            counts[layer.op] = counts.get(layer.op, 0) + 1
        return dict(sorted(counts.items()))

    def to_json(self) -> dict:
        return {
            "inputs": {k: list(v) for k, v in self.inputs.items()},
            "outputs": {k: list(v) for k, v in self.outputs.items()},
            "layers": [asdict(layer) | {"output_shape": list(layer.output_shape or [])}
                       for layer in self.layers],
            "totals": {"madds": self.total_madds, "params": self.total_params,
                       "nodes": len(self.layers), "ops": self.op_counts()},
            "notes": list(self.notes),
        }


def _dims(value_info: onnx.ValueInfoProto) -> tuple[int | str, ...] | None:
    tensor_type = value_info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                 for d in tensor_type.shape.dim)


def _known(shape: tuple[int | str, ...] | None) -> bool:
    return shape is not None and all(isinstance(d, int) and d > 0 for d in shape)


def dynamic_input_shape(model: onnx.ModelProto, data_shape: Sequence[int] | None) -> dict[str, list[int]] | None:
    """``{input: data_shape}`` when the model's single input has dynamic dimensions and data of
    ``data_shape`` (calibration tensors) says what they are; None when there is nothing to fix.
    A fixed dimension the data contradicts is one error naming both shapes."""
    if data_shape is None:
        return None
    initializer_names = {init.name for init in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializer_names]
    if len(inputs) != 1:
        return None
    dims = inputs[0].type.tensor_type.shape.dim
    model_shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?")
                        for d in dims)
    fits = len(dims) == len(data_shape) and all(
        not isinstance(m, int) or m == n or axis == 0 for axis, (m, n) in enumerate(zip(model_shape, data_shape)))
    if not fits:
        raise UserError(f"the calibration data's samples have shape {tuple(data_shape)}, the model input "
                        f"'{inputs[0].name}' is {model_shape}")
    if all(isinstance(m, int) for m in model_shape[1:]):
        return None
    return {inputs[0].name: [1, *data_shape[1:]]}


def with_static_inputs(model: onnx.ModelProto, shapes: Mapping[str | None, Sequence[int]] | None = None
                       ) -> tuple[onnx.ModelProto, list[str]]:
    """``model`` with input shapes fixed (a copy when any changes): ``shapes[name]`` where given (the
    name None: the model's only input), else every dynamic dimension set to 1 (with a note), so
    shapes can be inferred. A model whose inputs are all static already is returned as it is
    (``build`` fixes shapes once, when it loads the model; the TVM frontend's call is then free)."""
    shapes = dict(shapes or {})
    initializer_names = {init.name for init in model.graph.initializer}
    if None in shapes:
        names = [v.name for v in model.graph.input if v.name not in initializer_names]
        if len(names) != 1:
            raise UserError(f"input shape {','.join(map(str, shapes[None]))}: the model has {len(names)} inputs "
                            f"({', '.join(names)}); name the one it fixes (NAME=SHAPE)")
        shapes[names[0]] = shapes.pop(None)
    if not shapes and all(d.HasField("dim_value") and d.dim_value > 0 for v in model.graph.input
                          if v.name not in initializer_names for d in v.type.tensor_type.shape.dim):
        return model, []
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    real_inputs = [v for v in fixed.graph.input if v.name not in initializer_names]
    unknown = set(shapes) - {v.name for v in real_inputs}
    if unknown:
        names = ", ".join(v.name for v in real_inputs)
        raise UserError(f"model has no input named {sorted(unknown)[0]!r} (inputs: {names})")
    notes = []
    for value in real_inputs:
        dims = value.type.tensor_type.shape.dim
        given = list(shapes.get(value.name, [-1] * len(dims)))  # -1 (or 0): leave that axis dynamic
        if len(given) != len(dims):
            raise UserError(f"input '{value.name}' has rank {len(dims)}, "
                            f"the given shape {tuple(given)} has rank {len(given)}")
        for axis, (dim, size) in enumerate(zip(dims, given)):
            if size > 0:
                if dim.HasField("dim_value") and dim.dim_value > 0 and dim.dim_value != size:
                    raise UserError(f"input '{value.name}' is fixed at "
                                    f"{tuple(d.dim_value for d in dims)}, cannot be {tuple(given)}")
                dim.Clear()
                dim.dim_value = size
            elif not dim.HasField("dim_value") or dim.dim_value <= 0:
                notes.append(f"input '{value.name}' axis {axis} is dynamic "
                             f"({dim.dim_param or '?'}); counted as 1 (give its shape to override)")
                dim.Clear()
                dim.dim_value = 1
    return fixed, notes


def _madds(node: onnx.NodeProto, shapes: dict, out_shape) -> int:
    if not _known(out_shape):
        return 0
    out_elems = int(np.prod(out_shape))
    if node.op_type == "Conv":
        w = shapes.get(node.input[1])
        if not _known(w):
            return 0
        return out_elems * int(np.prod(w[1:]))  # w is (Cout, Cin/groups, kh, kw)
    if node.op_type == "ConvTranspose":
        x, w = shapes.get(node.input[0]), shapes.get(node.input[1])
        if not (_known(x) and _known(w)):
            return 0
        return int(np.prod(x)) * int(np.prod(w[1:]))  # w is (Cin, Cout/groups, kh, kw)
    if node.op_type in ("Gemm", "MatMul"):
        a = shapes.get(node.input[0])
        if not _known(a):
            return 0
        trans_a = next((a_.i for a_ in node.attribute if a_.name == "transA"), 0)
        k = a[-2] if (node.op_type == "Gemm" and trans_a) else a[-1]
        return out_elems * int(k)
    return 0


def analyze(model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]] | None = None) -> ModelStats:
    """Per-node statistics in graph order (works on any ONNX model with inferable shapes).

    Constant nodes are not layers: their tensors count as initializers of their consumers.
    """
    fixed, notes = with_static_inputs(model, input_shapes)
    try:
        inferred = onnx.shape_inference.infer_shapes(fixed, data_prop=True)
    except Exception as exc:  # inference is best effort; the table still lists every node
        inferred = fixed
        notes.append(f"shape inference failed ({exc}); shapes and MAdds may be missing")
    graph = inferred.graph
    shapes = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        shapes[value.name] = _dims(value)
    initializers = {init.name: init for init in graph.initializer}
    constants = [n for n in graph.node if n.op_type == "Constant"]
    for node in constants:
        value = next((a.t for a in node.attribute if a.name == "value"), None)
        if value is not None:
            initializers[node.output[0]] = value
    if constants:
        notes.append(f"{len(constants)} Constant nodes are counted as initializers, not layers")
    for name, init in initializers.items():
        shapes[name] = tuple(init.dims)
    counted: set[str] = set()
    layers = []
    for index, node in enumerate(graph.node):
        if node.op_type == "Constant":
            continue
        out_shape = shapes.get(node.output[0]) if node.output else None
        params = 0
        skip = _NON_PARAMETER_INPUTS.get(node.op_type, set())
        for position, name in enumerate(node.input):
            init = initializers.get(name)
            if init is None or position in skip or name in counted or name.startswith(_NON_PARAMETER_PREFIXES):
                continue
            if init.data_type in _PARAMETER_DTYPES and len(init.dims) > 0:
                params += int(np.prod(init.dims))
                counted.add(name)
        layers.append(LayerStats(node.name or f"{node.op_type}_{index}", node.op_type, out_shape,
                                 _madds(node, shapes, out_shape), params))
    real_inputs = [v for v in graph.input if v.name not in initializers]
    return ModelStats(
        layers=tuple(layers),
        inputs={v.name: _dims(v) for v in real_inputs},
        outputs={v.name: _dims(v) for v in graph.output},
        notes=tuple(notes),
    )
