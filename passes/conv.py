"""Helpers shared by the passes that rewrite a Conv's weights and bias."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from mnv3compile.passes.matcher import RewriteBuilder, add_initializer, constant_array


def per_channel(array: np.ndarray, channels: int) -> np.ndarray | None:
    """``array`` as a length-``channels`` vector if it broadcasts only along the channel axis of
    an NCHW tensor (shapes (C,), (C,1,1), (1,C,1,1), or a scalar); else None."""
    if array.size == 1:
        return np.full(channels, array.reshape(()).item(), dtype=array.dtype)
    squeezed = array.reshape(-1)
    if squeezed.size != channels:
        return None
    trailing = array.shape[-3:] if array.ndim >= 3 else array.shape
    if array.ndim == 1 or (array.ndim >= 3 and trailing[1:] == (1, 1) and all(d == 1 for d in array.shape[:-3])):
        return squeezed
    return None


def conv_weight_and_bias(conv: ir.Node) -> tuple[np.ndarray, np.ndarray] | None:
    """Constant weight and bias (zeros when absent) of a Conv, or None when not constant."""
    weight = constant_array(conv.inputs[1])
    if weight is None:
        return None
    if len(conv.inputs) > 2 and conv.inputs[2] is not None:
        bias = constant_array(conv.inputs[2])
        if bias is None:
            return None
    else:
        bias = np.zeros(weight.shape[0], weight.dtype)
    return weight, bias


def rebuild_conv(b: RewriteBuilder, graph: ir.Graph, conv: ir.Node, weight: np.ndarray,
                 bias: np.ndarray, name: str) -> ir.Value:
    """A copy of ``conv`` (same input and attributes) with new weight and bias initializers."""
    w = add_initializer(graph, weight.astype(np.float32), f"{name}.weight")
    bv = add_initializer(graph, bias.astype(np.float32), f"{name}.bias")
    node = ir.Node("", "Conv", [conv.inputs[0], w, bv], attributes=list(conv.attributes.values()), name=name)
    b.nodes.append(node)
    return node.outputs[0]
