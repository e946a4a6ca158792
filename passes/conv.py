"""Helpers shared by the passes that rewrite a Conv's (or ConvTranspose's) weights and bias."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from mnv3compile.passes.graph_edit import constant_array
from mnv3compile.passes.rules import SKIP, Rule


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


def output_axis(conv: ir.Node) -> int | None:
    """The weight axis of the output channels: 0 for a Conv (any group count), 1 for an ungrouped
    ConvTranspose (C_in x C_out x kh x kw); None for a grouped ConvTranspose, whose output channels
    are split over groups along axis 1."""
    if conv.op_type == "ConvTranspose":
        return 1 if conv.attributes.get_int("group", 1) == 1 else None
    return 0


def conv_weight_and_bias(conv: ir.Node) -> tuple[np.ndarray, np.ndarray] | None:
    """Constant weight and bias (zeros when absent) of a Conv or ConvTranspose, or None when not
    constant (or a grouped ConvTranspose)."""
    weight = constant_array(conv.inputs[1])
    axis = output_axis(conv)
    if weight is None or axis is None:
        return None
    if len(conv.inputs) > 2 and conv.inputs[2] is not None:
        bias = constant_array(conv.inputs[2])
        if bias is None:
            return None
    else:
        bias = np.zeros(weight.shape[axis], weight.dtype)
    return weight, bias


def scale_outputs(conv: ir.Node, weight: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``weight`` with each output channel's filter multiplied by ``k`` (per output channel)."""
    shape = [1] * weight.ndim
    shape[output_axis(conv)] = -1
    return weight * k.reshape(shape)


def rebuild_conv(rule: Rule, op, conv: ir.Node, weight: np.ndarray, bias: np.ndarray, name: str) -> ir.Value:
    """A copy of ``conv`` (same input and attributes) with new weight and bias initializers."""
    w = rule.initializer(op, weight.astype(np.float32), f"{name}.weight")
    b = rule.initializer(op, bias.astype(np.float32), f"{name}.bias")
    return op.op(conv.op_type, conv.inputs[0], w, b, _name=name, **dict(conv.attributes))


class ConvThenConstant(Rule):
    """Base of the rules folding ``op_type(Conv(x, ...), c)``, c a per-output-channel constant,
    into the Conv (or an ungrouped ConvTranspose): ``op_type`` and what c is called are set by
    the subclass."""

    op_type = ""
    constant_role = ""

    def __init__(self, name: str, conv_type: str):
        super().__init__(name)
        self.conv_type = conv_type

    def pattern(self, op, x, c):
        conv = getattr(op, self.conv_type)(x, _allow_other_inputs=True, _outputs=["conv_out"])
        return getattr(op, self.op_type)(conv, c)

    def refusal(self, x, c, conv_out):
        if constant_array(c) is None:
            return SKIP  # a product or sum of two activations: not this rule's case
        parts = conv_weight_and_bias(conv_out.producer())
        if parts is None:
            return "conv weights are not constant (or a grouped ConvTranspose)"
        if per_channel(constant_array(c), parts[1].size) is None:
            return f"{self.constant_role} is not per output channel"
        return None
