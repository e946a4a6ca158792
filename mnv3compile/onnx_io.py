"""Reading and writing files with user-facing errors; every write is atomic."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx

from mnv3compile.errors import UserError


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """Load and sanity-check an ONNX model; any problem becomes one UserError line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"cannot read {path}: no such file")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf says little more than "error parsing message"
        raise UserError(f"{path} is not an ONNX model ({type(exc).__name__}: {exc})") from exc
    # Random bytes sometimes decode as an empty ModelProto; a real model has a graph and an opset.
    if not model.graph.node or not model.opset_import:
        raise UserError(f"{path} is not an ONNX model (no graph nodes or no opset)")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"{path} is not a valid ONNX model: {first}") from exc
    return model


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: never half a file on disk."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_onnx(model: onnx.ModelProto, path: str | Path) -> None:
    """Write ``model`` to ``path`` atomically."""
    write_atomic(path, model.SerializeToString())
