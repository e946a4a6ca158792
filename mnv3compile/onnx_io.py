"""Reading and writing files with user-facing errors; every write is atomic."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx

from mnv3compile import signals
from mnv3compile.errors import UserError


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """Load and sanity-check an ONNX model; any problem becomes one UserError line naming the file."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"cannot read {path}: a folder, not an ONNX file")
    if not path.is_file():
        raise UserError(f"cannot read {path}: no such file")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf says little more than "error parsing message"
        raise UserError(f"{path} is not an ONNX model ({type(exc).__name__}: {exc})") from exc
    return check_model(model, path)


def check_model(model: onnx.ModelProto, path: str | Path) -> onnx.ModelProto:
    """The checks of ``load_onnx`` on a model already in memory (``path`` names it in errors)."""
    if not isinstance(model, onnx.ModelProto):
        raise UserError(f"{path} is not an ONNX model (a {type(model).__name__}, not an onnx.ModelProto)")
    # Random bytes sometimes decode as an empty ModelProto; a real model has a graph and an opset.
    if not model.graph.node or not model.opset_import:
        raise UserError(f"{path} is not an ONNX model (no graph nodes or no opset)")
    check_structure(model, path)
    try:
        onnx.checker.check_model(model)
        if all(node.domain in ("", "ai.onnx") for node in model.graph.node):  # others: no schema to check
            # types against each op's constraints (a uint8 Conv input), shapes that cannot meet
            onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, UnicodeDecodeError, ValueError) as exc:
        first = "a name or string is not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else \
            str(exc).strip().splitlines()[0]
        raise UserError(f"{path} is not a valid ONNX model: {first}") from exc
    check_initializers(model, path)
    check_input_sizes(model, path)
    return model


MAX_INPUT_ELEMENTS = 2**31 - 1  # TVM indexes tensors with int32 by default; no real image comes near


def check_initializers(model: onnx.ModelProto, path: str | Path) -> None:
    """Each initializer's data must fill its shape (a wrong dtype or a cut tensor does not)."""
    from onnx import numpy_helper

    for tensor in model.graph.initializer:
        try:
            numpy_helper.to_array(tensor)
        except Exception as exc:
            raise UserError(f"{path}: initializer {tensor.name!r} ({onnx.TensorProto.DataType.Name(tensor.data_type)} "
                            f"{tuple(tensor.dims)}) does not hold its data: {str(exc).splitlines()[0]}") from exc


def check_input_sizes(model: onnx.ModelProto, path: str | Path) -> None:
    """An input of fixed dimensions must be of a sane size (dimensions <= 0 are dynamic, as
    exporters write them: ``analysis.with_static_inputs`` fixes them)."""
    initializers = {i.name for i in model.graph.initializer}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in value.type.tensor_type.shape.dim]
        shape = tuple(d if d is not None else "?" for d in dims)
        elements = 1
        for d in dims:
            elements *= d or 1
        if elements > MAX_INPUT_ELEMENTS:
            raise UserError(f"{path}: input {value.name!r} has shape {shape}: {elements} elements, more than "
                            f"{MAX_INPUT_ELEMENTS}")


def _node_label(node: onnx.NodeProto) -> str:
    return f"node {node.name!r} ({node.op_type})" if node.name else f"a {node.op_type} node"


def check_structure(model: onnx.ModelProto, path: str | Path) -> None:
    """Name the node behind the structural faults the checker reports obscurely: an input nothing
    produces, a wrong number of inputs, a cycle. An unsorted but acyclic graph is sorted in place."""
    graph = model.graph
    available = {v.name for v in graph.input} | {i.name for i in graph.initializer} | {""}
    producer = {out: node for node in graph.node for out in node.output}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    for node in graph.node:
        for name in node.input:
            if name not in available and name not in producer:
                raise UserError(f"{path}: {_node_label(node)} reads {name!r}, which nothing produces")
        if node.domain in ("", "ai.onnx") and opset is not None:
            try:
                schema = onnx.defs.get_schema(node.op_type, opset, "")
            except (onnx.defs.SchemaError, TypeError):  # TypeError: an op type that is not text
                continue  # unknown ops are for the checker (or a later stage) to name
            count = len(node.input)
            if not schema.min_input <= count <= schema.max_input:
                raise UserError(f"{path}: {_node_label(node)} has {count} input(s); {node.op_type} needs "
                                f"{schema.min_input} to {schema.max_input}")
    # Kahn's algorithm: what cannot be ordered lies on a cycle.
    pending = {id(n): sum(1 for i in n.input if i in producer) for n in graph.node}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            if name in producer:
                readers.setdefault(name, []).append(node)
    ready = [n for n in graph.node if pending[id(n)] == 0]
    ordered = []
    while ready:
        node = ready.pop(0)
        ordered.append(node)
        for out in node.output:
            for reader in readers.get(out, []):
                pending[id(reader)] -= 1
                if pending[id(reader)] == 0:
                    ready.append(reader)
    if len(ordered) != len(graph.node):
        stuck = [n for n in graph.node if pending[id(n)] > 0]
        names = ", ".join(repr(n.name or n.op_type) for n in stuck[:4])
        raise UserError(f"{path}: the graph has a cycle through {names}")
    if [id(n) for n in ordered] != [id(n) for n in graph.node]:
        sorted_nodes = [onnx.NodeProto.FromString(n.SerializeToString()) for n in ordered]
        del graph.node[:]
        graph.node.extend(sorted_nodes)


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: never half a file on disk."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        # mkstemp makes the file private; give it the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        signals.check()  # an interrupted command publishes nothing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_onnx(model: onnx.ModelProto, path: str | Path) -> None:
    """Write ``model`` to ``path`` atomically."""
    write_atomic(path, model.SerializeToString())
