"""upgrade_opset: convert models older than opset 17 to opset 17.

Later stages rely on modern spellings: Clip bounds as inputs (opset 11+), HardSwish (14+),
per-axis QuantizeLinear/DequantizeLinear (13+). Exporters such as Paddle2ONNX still write opset 11.
"""

from __future__ import annotations

import onnx
import onnx_ir as ir
from onnx import version_converter

from mnv3compile.errors import UserError
from mnv3compile.passes.base import GraphPass
from mnv3compile.passes.rules import PassStats

TARGET_OPSET = 17


def _run(model: ir.Model) -> tuple[ir.Model, PassStats]:
    current = model.opset_imports.get("", 1)
    if current >= TARGET_OPSET:
        return model, PassStats()
    try:
        converted = version_converter.convert_version(ir.to_proto(model), TARGET_OPSET)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot upgrade the model from opset {current} to {TARGET_OPSET}: {first}") from exc
    # The converter leaves the IR version as it was; opset 17 requires IR 8.
    converted.ir_version = max(converted.ir_version, 8)
    onnx.checker.check_model(converted)
    return ir.from_proto(converted), PassStats(matched=1, rewritten=1)


PASS = GraphPass("upgrade_opset", f"convert models below opset {TARGET_OPSET} to opset {TARGET_OPSET}", _run)
