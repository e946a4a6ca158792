"""reduce_mean_to_global_pool: a mean over both spatial axes is a ``GlobalAveragePool``.

TensorFlow exporters (tf2onnx: Keras' squeeze-excite and classifier pooling) write global pooling
as ``ReduceMean``, over axes (2, 3) of an NCHW tensor or over axes (1, 2) of a channels-last view
``Transpose(x, perm=(0, 2, 3, 1))`` of one. Both become ``GlobalAveragePool(x)``, the one
spelling the quantizer and the integer lowering know, followed where the shape differs by
``Flatten`` (``keepdims=0``: N x C) or ``Transpose`` (channels-last ``keepdims=1``: N x 1 x 1 x
C). The transpose itself is left to its other readers. Axes come from the attribute (opset < 18)
or from a constant second input (opset 18+). onnxscript has no such rule.
"""

from __future__ import annotations

import onnx_ir as ir

from mnv3compile.passes.base import rule_pass
from mnv3compile.passes.graph_edit import reduce_axes
from mnv3compile.passes.rules import SKIP, Rule

CHANNELS_LAST = (0, 2, 3, 1)


def _channels_last_source(node: ir.Node) -> ir.Value | None:
    """x when the ReduceMean reads Transpose(x, perm=(0, 2, 3, 1)), else None."""
    producer = node.inputs[0].producer()
    if producer is None or producer.op_type != "Transpose":
        return None
    perm = producer.attributes.get_ints("perm", None)
    return producer.inputs[0] if perm is not None and tuple(perm) == CHANNELS_LAST else None


def _axes(node: ir.Node) -> set[int] | None:
    """The reduced axes, when the input is known to be 4-D (its shape, or a 4-D transpose)."""
    shape = node.inputs[0].shape
    rank = len(shape) if shape is not None else 4 if _channels_last_source(node) is not None else None
    if rank != 4:
        return None
    values = reduce_axes(node)
    if values is None:
        return None  # not constant, or all axes: not a pooling
    return {a % rank for a in values}


class SpatialMeanToGlobalPool(Rule):
    def pattern(self, op, x):
        return op.ReduceMean(x, _allow_other_inputs=True)

    def refusal(self, x):
        axes = _axes(self.root)
        spatial = axes == {2, 3} or (axes == {1, 2} and _channels_last_source(self.root) is not None)
        return None if spatial else SKIP

    def rewrite(self, op, x):
        node = self.root
        channels_last = _axes(node) == {1, 2}
        source = _channels_last_source(node) if channels_last else x
        pooled = op.GlobalAveragePool(source, _name=self.node_name("pool"))
        if not node.attributes.get_int("keepdims", 1):
            return op.Flatten(pooled, axis=1, _name=self.node_name("flatten"))
        if channels_last:
            return op.Transpose(pooled, perm=list(CHANNELS_LAST), _name=self.node_name("channels_last"))
        return pooled


RULES = [SpatialMeanToGlobalPool.sweep("ReduceMean")]
PASS = rule_pass("reduce_mean_to_global_pool", "a ReduceMean over both spatial axes becomes GlobalAveragePool",
                 RULES)
