"""A PyTorch MobileNetV3 with torchvision's module names, built from our ModelSpec.

Test-only: it proves the zoo's ONNX graphs compute what torchvision's modules compute (same state
dict, strict loading) and gives the passes a real ``torch.onnx.export`` graph to work on.
torchvision itself cannot be installed beside the local torch build (env notes), so the few
modules are restated here.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mnv3compile.zoo.spec import BN_EPS, Block, ModelSpec


class SpelledHardSigmoid(nn.Module):
    """h-sigmoid written with ReLU6, as many hand-written MobileNetV3 definitions do."""

    def forward(self, x):
        return F.relu6(x + 3.0) / 6.0


class SpelledHardSwish(nn.Module):
    def forward(self, x):
        return x * F.relu6(x + 3.0) / 6.0


# Set by reference_model(spelled=True): build activations from ReLU6 arithmetic, not nn.Hardswish.
_SPELLED = False


def _act(kind: str | None) -> nn.Module | None:
    if kind == "hswish":
        return SpelledHardSwish() if _SPELLED else nn.Hardswish()
    return {"relu": nn.ReLU(), None: None}[kind]


class ConvBNAct(nn.Sequential):
    def __init__(self, cin, cout, kernel=1, stride=1, groups=1, dilation=1, act=None):
        pad = (kernel - 1) // 2 * dilation
        layers = [nn.Conv2d(cin, cout, kernel, stride, pad, dilation=dilation, groups=groups, bias=False),
                  nn.BatchNorm2d(cout, eps=BN_EPS, momentum=0.01)]
        if act is not None:
            layers.append(_act(act))
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    def __init__(self, channels, squeeze):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = SpelledHardSigmoid() if _SPELLED else nn.Hardsigmoid()

    def forward(self, x):
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


class InvertedResidual(nn.Module):
    def __init__(self, b: Block):
        super().__init__()
        layers = []
        if b.has_expand:
            layers.append(ConvBNAct(b.in_ch, b.expand_ch, act=b.act))
        layers.append(ConvBNAct(b.expand_ch, b.expand_ch, b.kernel, b.stride, b.expand_ch, b.dilation, b.act))
        if b.se_ch:
            layers.append(SqueezeExcitation(b.expand_ch, b.se_ch))
        layers.append(ConvBNAct(b.expand_ch, b.out_ch))
        self.block = nn.Sequential(*layers)
        self.use_res_connect = b.has_residual

    def forward(self, x):
        result = self.block(x)
        if self.use_res_connect:
            result += x
        return result


def _features(spec: ModelSpec) -> list[nn.Module]:
    layers = [ConvBNAct(3, spec.stem_ch, 3, 2, act=spec.head_act)]
    layers += [InvertedResidual(b) for b in spec.blocks]
    layers.append(ConvBNAct(spec.blocks[-1].out_ch, spec.last_conv_ch, act=spec.head_act))
    return layers


class MobileNetV3(nn.Module):
    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.features = nn.Sequential(*_features(spec))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(spec.last_conv_ch, spec.last_ch), _act(spec.head_act),
                                        nn.Dropout(0.2), nn.Linear(spec.last_ch, spec.num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class LRASPPHead(nn.Module):
    def __init__(self, low_ch, high_ch, num_classes, inter_ch):
        super().__init__()
        self.cbr = nn.Sequential(nn.Conv2d(high_ch, inter_ch, 1, bias=False),
                                 nn.BatchNorm2d(inter_ch, eps=BN_EPS), nn.ReLU())
        self.scale = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(high_ch, inter_ch, 1, bias=False), nn.Sigmoid())
        self.low_classifier = nn.Conv2d(low_ch, num_classes, 1)
        self.high_classifier = nn.Conv2d(inter_ch, num_classes, 1)

    def forward(self, low, high):
        x = self.cbr(high) * self.scale(high)
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.low_classifier(low) + self.high_classifier(x)


class LRASPP(nn.Module):
    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.backbone = nn.ModuleDict({str(i): m for i, m in enumerate(_features(spec))})
        self.low_index = spec.low_level_index
        low_ch = spec.blocks[spec.low_level_index - 1].out_ch
        self.classifier = LRASPPHead(low_ch, spec.last_conv_ch, spec.num_classes, spec.inter_ch)

    def forward(self, x):
        size = x.shape[-2:]
        low = None
        for index, module in self.backbone.items():
            x = module(x)
            if int(index) == self.low_index:
                low = x
        out = self.classifier(low, x)
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)


def reference_model(spec: ModelSpec, spelled: bool = False) -> nn.Module:
    """torchvision's modules for ``spec``; ``spelled`` writes h-swish/h-sigmoid with ReLU6."""
    global _SPELLED
    _SPELLED = spelled
    try:
        return (LRASPP(spec) if spec.segmentation else MobileNetV3(spec)).eval()
    finally:
        _SPELLED = False


def export_with_zoo_parameters(spec: ModelSpec, path, spelled: bool = False, **export_options) -> None:
    """``torch.onnx.export`` (the TorchScript exporter, opset 17) of the reference model holding the
    zoo's random parameters for ``spec``; ``export_options`` go to the exporter."""
    from mnv3compile.zoo import random_state_dict

    net = reference_model(spec, spelled=spelled)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in random_state_dict(spec).items()})
    torch.onnx.export(net, (torch.randn(*spec.input_shape),), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"], **export_options)
