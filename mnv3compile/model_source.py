"""The model 'build' and 'tune' take: a zoo variant or an ONNX file, with its dynamic input
dimensions fixed, and the key under which 'tune' stores its database (schedules/tuning/database.py)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import onnx


@dataclass
class LoadedModel:
    model: onnx.ModelProto
    name: str  # library and file stem, e.g. mobilenetv3_small
    source: dict  # for the manifest
    notes: list[str] = field(default_factory=list)
    identity: str = ""  # what decides the kernels' shapes: zoo variant or the ONNX file's digest

    @property
    def folder_name(self) -> str:
        """The default bundle folder's first part: the zoo variant's name, or the model's."""
        return self.source.get("zoo") or self.name.replace("_", "-")

    def key(self, quant: str, int8_lowering: str = "integer", weight_bits: int = 8) -> str:
        """The tuning database's folder name: kernels differ by model, shape, quantization,
        lowering and weight range (7-bit weights take other kernels on AVX2); the weights' values
        only change constants, which tuned schedules do not depend on."""
        lowering = "" if quant != "int8" or int8_lowering == "integer" else f"-{int8_lowering}"
        bits = "" if quant != "int8" or weight_bits == 8 else f"-w{weight_bits}"
        return f"{self.identity}-{quant}{lowering}{bits}"


def load_model(zoo_model: str | None, onnx_path: Path | None, width: float, resolution: int | str | tuple[int, int],
               weights: Path | None, input_shapes: dict[str, list[int]] | None,
               on_status=lambda text: None, in_memory: onnx.ModelProto | None = None) -> LoadedModel:
    """A zoo variant, an ONNX file, or an ONNX model ``in_memory`` (named after its graph)."""
    from mnv3compile import zoo
    from mnv3compile.analysis import with_static_inputs
    from mnv3compile.onnx_io import load_onnx
    from mnv3compile.zoo.spec import format_resolution

    if in_memory is not None:
        from mnv3compile.onnx_io import check_model

        model = check_model(in_memory, "the model given")
        name = "".join(c if c.isalnum() else "_" for c in (model.graph.name or "model")).strip("_") or "model"
        source = {"onnx": f"in memory (graph {model.graph.name!r})"}
        digest = hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest()[:12]
        identity = f"{name.replace('_', '-')}-{digest}"
    elif onnx_path is not None:
        model = load_onnx(onnx_path)
        name = onnx_path.stem.replace(".", "_").replace("-", "_")
        source = {"onnx": str(onnx_path)}
        digest = hashlib.sha256(Path(onnx_path).read_bytes()).hexdigest()[:12]
        identity = f"{name.replace('_', '-')}-{digest}"
    else:
        zoo_model = zoo_model or "large"
        spec = zoo.build_spec(zoo_model, width, resolution)
        size = format_resolution(spec.resolution)
        on_status(f"building zoo model {zoo_model} x{width} @ {size}")
        model = zoo.build_model(spec, weights=weights)
        name = f"mobilenetv3_{zoo_model.replace('-', '_')}"
        source = {"zoo": zoo_model, "width": width, "resolution": size,
                  "weights": str(weights) if weights else "random (seed 0)"}
        identity = f"{zoo_model}-w{width:g}-r{size}"
    model, notes = with_static_inputs(model, input_shapes)
    if input_shapes:
        identity += "-" + "-".join(f"{k}{'x'.join(map(str, v))}" for k, v in sorted(input_shapes.items()))
    return LoadedModel(model, name, source, notes, identity)
