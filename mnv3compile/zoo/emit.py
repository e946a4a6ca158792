"""Write a :class:`ModelSpec` as an ONNX graph, spelled the way ``torch.onnx.export`` spells it.

Node names and initializer names follow torchvision's module paths and state-dict keys
(``features.4.block.2.fc1`` / ``features.4.block.2.fc1.weight``), so a torchvision state dict maps
onto the graph one key to one initializer. Parameters are drawn from a :class:`WeightSource`, which
also lets us list the expected state-dict keys and shapes without building anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mnv3compile.zoo import ssdlite
from mnv3compile.zoo.spec import BN_EPS, Block, ModelSpec, format_resolution

OPSET = 17
IR_VERSION = 8  # the IR version that goes with opset 17; every onnxruntime since 1.11 reads it
INPUT_NAME = "input"


@dataclass(frozen=True)
class ParamInfo:
    """One state-dict entry the model needs: its key, shape, dtype and role (for initialisation)."""

    key: str
    shape: tuple[int, ...]
    role: str  # conv_weight, bias, bn_weight, bn_bias, bn_mean, bn_var, bn_count, linear_weight
    fan_in: int = 0


class WeightSource(Protocol):
    def __call__(self, info: ParamInfo) -> np.ndarray: ...


class _GraphBuilder:
    """Accumulates nodes and initializers; each helper returns the name of its output tensor."""

    def __init__(self, weights: WeightSource):
        self.weights = weights
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def param(self, key: str, shape: tuple[int, ...], role: str, fan_in: int = 0) -> str:
        array = self.weights(ParamInfo(key, tuple(shape), role, fan_in))
        if role != "bn_count":
            self.initializers.append(numpy_helper.from_array(np.asarray(array, np.float32), key))
        return key

    def node(self, op: str, name: str, inputs: list[str], **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def shared_const(self, name: str, array: np.ndarray) -> str:
        """A constant made once and used by every node that asks for ``name``."""
        if not any(init.name == name for init in self.initializers):
            self.const(name, array)
        return name

    def conv(self, path: str, x: str, cin: int, cout: int, kernel: int = 1, stride: int = 1,
             groups: int = 1, dilation: int = 1, bias: bool = False) -> str:
        fan_in = cin // groups * kernel * kernel
        inputs = [x, self.param(f"{path}.weight", (cout, cin // groups, kernel, kernel), "conv_weight", fan_in)]
        if bias:
            inputs.append(self.param(f"{path}.bias", (cout,), "bias", fan_in))
        pad = (kernel - 1) // 2 * dilation
        return self.node("Conv", path, inputs, kernel_shape=[kernel, kernel], strides=[stride, stride],
                         pads=[pad] * 4, dilations=[dilation, dilation], group=groups)

    def batchnorm(self, path: str, x: str, channels: int) -> str:
        names = [self.param(f"{path}.{field}", (channels,), f"bn_{role}")
                 for field, role in (("weight", "weight"), ("bias", "bias"),
                                     ("running_mean", "mean"), ("running_var", "var"))]
        self.param(f"{path}.num_batches_tracked", (), "bn_count")
        return self.node("BatchNormalization", path, [x, *names], epsilon=BN_EPS, momentum=0.9)

    def activation(self, path: str, x: str, kind: str | None) -> str:
        if kind is None:
            return x
        if kind == "relu":
            return self.node("Relu", path, [x])
        if kind == "hswish":
            return self.node("HardSwish", path, [x])
        if kind == "relu6":  # SSDLite's layers (torch.onnx spells ReLU6 as this Clip)
            bounds = [self.shared_const("relu6.min", np.float32(0.0)), self.shared_const("relu6.max", np.float32(6.0))]
            return self.node("Clip", path, [x, *bounds])
        raise ValueError(f"unknown activation {kind}")

    def conv_bn_act(self, path: str, x: str, cin: int, cout: int, act: str | None, kernel: int = 1,
                    stride: int = 1, groups: int = 1, dilation: int = 1) -> str:
        """torchvision's Conv2dNormActivation: children .0 conv, .1 BN, .2 activation."""
        x = self.conv(f"{path}.0", x, cin, cout, kernel, stride, groups, dilation)
        x = self.batchnorm(f"{path}.1", x, cout)
        return self.activation(f"{path}.2", x, act)


def _squeeze_excite(g: _GraphBuilder, path: str, x: str, channels: int, squeeze: int) -> str:
    s = g.node("GlobalAveragePool", f"{path}.avgpool", [x])
    s = g.conv(f"{path}.fc1", s, channels, squeeze, bias=True)
    s = g.node("Relu", f"{path}.activation", [s])
    s = g.conv(f"{path}.fc2", s, squeeze, channels, bias=True)
    s = g.node("HardSigmoid", f"{path}.scale_activation", [s], alpha=1.0 / 6.0, beta=0.5)
    return g.node("Mul", f"{path}.mul", [s, x])


def _inverted_residual(g: _GraphBuilder, prefix: str, x: str, b: Block) -> tuple[str, str]:
    """The block's output and its expansion layer's (SSDLite's C4 is one)."""
    path = f"{prefix}.{b.index}.block"
    identity, part = x, 0
    if b.has_expand:
        x = g.conv_bn_act(f"{path}.{part}", x, b.in_ch, b.expand_ch, b.act)
        part += 1
    expanded = x
    x = g.conv_bn_act(f"{path}.{part}", x, b.expand_ch, b.expand_ch, b.act, kernel=b.kernel,
                      stride=b.stride, groups=b.expand_ch, dilation=b.dilation)
    part += 1
    if b.se_ch:
        x = _squeeze_excite(g, f"{path}.{part}", x, b.expand_ch, b.se_ch)
        part += 1
    x = g.conv_bn_act(f"{path}.{part}", x, b.expand_ch, b.out_ch, None)
    if b.has_residual:
        x = g.node("Add", f"{prefix}.{b.index}.add", [x, identity])
    return x, expanded


def _features(g: _GraphBuilder, spec: ModelSpec, prefix: str, x: str) -> tuple[str, str | None]:
    """The backbone; returns its output and the tap the head takes: the low-level skip
    (segmentation) or C4 (detection), else None."""
    x = g.conv_bn_act(f"{prefix}.0", x, 3, spec.stem_ch, spec.head_act, kernel=3, stride=2)
    low = None
    for block in spec.blocks:
        x, expanded = _inverted_residual(g, prefix, x, block)
        if block.index == spec.low_level_index:
            low = x
        if block.index == spec.c4_index:
            low = expanded
    x = g.conv_bn_act(f"{prefix}.{spec.last_conv_index}", x, spec.blocks[-1].out_ch,
                      spec.last_conv_ch, spec.head_act)
    return x, low


def _classifier(g: _GraphBuilder, spec: ModelSpec, x: str) -> str:
    x = g.node("GlobalAveragePool", "avgpool", [x])
    x = g.node("Flatten", "flatten", [x], axis=1)
    x = _linear(g, "classifier.0", x, spec.last_conv_ch, spec.last_ch)
    x = g.activation("classifier.1", x, spec.head_act)
    return _linear(g, "classifier.3", x, spec.last_ch, spec.num_classes)


def _linear(g: _GraphBuilder, path: str, x: str, cin: int, cout: int) -> str:
    w = g.param(f"{path}.weight", (cout, cin), "linear_weight", cin)
    b = g.param(f"{path}.bias", (cout,), "bias", cin)
    return g.node("Gemm", path, [x, w, b], transB=1)


def _lraspp_head(g: _GraphBuilder, spec: ModelSpec, high: str, low: str, low_ch: int) -> str:
    """torchvision's LRASPPHead, then the final upsampling to the input size."""
    height, width = spec.resolution
    x = g.conv_bn_act("classifier.cbr", high, spec.last_conv_ch, spec.inter_ch, "relu")
    s = g.node("GlobalAveragePool", "classifier.scale.0", [high])
    s = g.conv("classifier.scale.1", s, spec.last_conv_ch, spec.inter_ch)
    s = g.node("Sigmoid", "classifier.scale.2", [s])
    x = g.node("Mul", "classifier.mul", [x, s])
    x = _resize(g, "classifier.upsample", x, (1, spec.inter_ch, height // 8, width // 8))
    low = g.conv("classifier.low_classifier", low, low_ch, spec.num_classes, bias=True)
    x = g.conv("classifier.high_classifier", x, spec.inter_ch, spec.num_classes, bias=True)
    x = g.node("Add", "classifier.add", [low, x])
    return _resize(g, "upsample", x, spec.output_shape)


def _resize(g: _GraphBuilder, path: str, x: str, size: tuple[int, ...]) -> str:
    sizes = g.const(f"{path}.sizes", np.array(size, np.int64))
    # bilinear, align_corners=False, as torch.nn.functional.interpolate exports it
    return g.node("Resize", path, [x, "", "", sizes], mode="linear",
                  coordinate_transformation_mode="half_pixel")


def _classification_or_segmentation(g: _GraphBuilder, spec: ModelSpec) -> str:
    """The backbone and the classifier or LR-ASPP head; returns the output's name."""
    if spec.segmentation:
        high, low = _features(g, spec, "backbone", INPUT_NAME)
        _lraspp_head(g, spec, high, low, spec.blocks[spec.low_level_index - 1].out_ch)
        return "out"
    features, _ = _features(g, spec, "features", INPUT_NAME)
    _classifier(g, spec, features)
    return "logits"


def emit(spec: ModelSpec, weights: WeightSource) -> onnx.ModelProto:
    """Build the ONNX model for ``spec`` with parameters from ``weights``."""
    g = _GraphBuilder(weights)
    if spec.detection:
        c5, c4 = _features(g, spec, "backbone.features", INPUT_NAME)
        c4_ch = spec.blocks[spec.c4_index - 1].expand_ch
        ssdlite.emit_head(g, spec, c4, c4_ch, c5, spec.last_conv_ch)
        outputs = [("boxes", (1, spec.output_shape[1], 4)), ("scores", spec.output_shape)]
    else:
        out_name = _classification_or_segmentation(g, spec)
        # Name the graph output after its role rather than after the module that produced it.
        g.nodes[-1].output[0] = out_name
        outputs = [(out_name, spec.output_shape)]
    graph = helper.make_graph(
        g.nodes,
        f"mobilenetv3_{spec.name.replace('-', '_')}",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, spec.input_shape)],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in outputs],
        g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="mnv3compile")
    model.ir_version = IR_VERSION
    model.doc_string = (f"MobileNetV3 {spec.name} width={spec.width} "
                        f"resolution={format_resolution(spec.resolution)} "
                        f"classes={spec.num_classes}")
    return model


def parameter_list(spec: ModelSpec) -> list[ParamInfo]:
    """The state-dict keys, shapes and roles ``spec`` needs, in torchvision's order."""
    recorded: list[ParamInfo] = []

    def record(info: ParamInfo) -> np.ndarray:
        recorded.append(info)
        return np.zeros(info.shape, np.float32)

    emit(spec, record)
    return recorded
