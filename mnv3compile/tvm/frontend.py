"""ONNX -> Relax, with the checks a user needs before TVM's own errors: unsupported ops named with
their node, dynamic input dimensions fixed to 1 (with a note)."""

from __future__ import annotations

import re

import onnx

from mnv3compile.analysis import with_static_inputs
from mnv3compile.errors import UserError


def supported_ops() -> set[str]:
    from tvm.relax.frontend.onnx import onnx_frontend

    return set(onnx_frontend._get_convert_map())  # the importer's own table, so never out of date


def check_supported(model: onnx.ModelProto) -> None:
    known = supported_ops()
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in known:
            raise UserError(f"TVM's ONNX importer does not support op {node.op_type!r} "
                            f"(node {node.name!r}, domain {node.domain or 'ai.onnx'!r})")


def import_onnx(model: onnx.ModelProto):
    """The Relax module of ``model`` with static input shapes; returns (module, notes)."""
    from tvm.relax.frontend.onnx import from_onnx

    from mnv3compile import signals

    fixed, notes = with_static_inputs(model)
    check_supported(fixed)
    try:
        return from_onnx(fixed), notes
    except Exception as exc:  # shapes ONNX's checker lets through and TVM's ops refuse (a bias of 4 for 8 channels)
        signals.check()  # a signal that arrived inside the importer ends the command as that signal
        text = str(exc).strip()
        op = re.search(r"Error converting operator (\w+)", text)
        where = f" (converting a {op.group(1)} node)" if op else ""
        first = (text.splitlines() or [type(exc).__name__])[0][:300]
        raise UserError(f"TVM cannot import this model{where}: {first}") from exc
