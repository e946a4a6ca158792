"""SSDLite on MobileNetV3 (the paper's section 6.3, Table 6): anchors as data, and the head's ONNX.

As the paper (and MobileNetV2's SSDLite in TensorFlow's object detection API, whose configuration
the paper's counts match): predictors on C4 (the expansion layer of the last stride-2 bottleneck:
Large's 13th, Small's 9th, at stride 16) and C5 (the layer before pooling, stride 32), then four
extra layers (1x1 to half the channels, depthwise 3x3 stride 2, 1x1; ReLU6) to 512, 256, 256 and
128 channels. Each of the six feature maps gets a depthwise-separable box predictor and class
predictor (depthwise 3x3 + BN + ReLU6, then a 1x1 conv with bias). Anchors: scales from 0.2 to
0.95 over the six maps, aspect ratios 1, 2, 1/2, 3, 1/3 and one more square at the geometric mean
of this scale and the next (6 anchors per cell); the lowest map has 3 (a 0.1 square, and 2 and 1/2
at 0.2), as TF's ``reduce_boxes_in_lowest_layer``.

The graph decodes boxes itself (``boxes``: (1, anchors, 4) as x1, y1, x2, y2 in [0, 1] of the
input) and turns the class logits into probabilities (``scores``: (1, anchors, classes), class 0
the background). Non-maximum suppression is not in the graph: it runs after it, in the Python
``run`` (mnv3compile/detection.py) and the C runtime (runtime/src/detect.cc, ``mnv3_detect``),
the same on every target.
"""

from __future__ import annotations

import math

import numpy as np

MIN_SCALE, MAX_SCALE = 0.2, 0.95
ASPECT_RATIOS = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)
LOWEST_LAYER_BOXES = ((0.1, 1.0), (MIN_SCALE, 2.0), (MIN_SCALE, 0.5))  # (scale, aspect ratio)
# Box coder (Faster R-CNN's, TF's and torchvision's SSD): offsets divided by these before decoding.
BOX_CODER_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # x, y, w, h
MAX_LOG_SIZE = math.log(1000.0 / 16)  # torchvision's clamp of the decoded log-size ratio
# The paper's Table 6 (COCO, 320x320): (model, reduced tail) -> (parameters in M, MAdds in B).
PAPER_TABLE6 = {("ssdlite-large", False): (4.97, 0.62), ("ssdlite-large", True): (3.22, 0.51),
                ("ssdlite-small", False): (2.49, 0.21), ("ssdlite-small", True): (1.77, 0.16)}


def feature_map_sizes(spec) -> list[tuple[int, int]]:
    """(height, width) of the six maps the predictors see: C4 (stride 16), C5 (32), then halved
    four times (a 3x3 stride-2 conv with padding 1: ceil(n / 2))."""
    height, width = spec.resolution
    sizes = [(height // 16, width // 16), (height // 32, width // 32)]
    for _ in spec.extra_ch:
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


def boxes_per_cell(spec) -> list[list[tuple[float, float]]]:
    """Per feature map, the (scale, aspect ratio) of each anchor of a cell."""
    levels = len(spec.extra_ch) + 2
    scales = [MIN_SCALE + (MAX_SCALE - MIN_SCALE) * k / (levels - 1) for k in range(levels)] + [1.0]
    shapes = [list(LOWEST_LAYER_BOXES)]
    for k in range(1, levels):
        shapes.append([(scales[k], ratio) for ratio in ASPECT_RATIOS] + [(math.sqrt(scales[k] * scales[k + 1]), 1.0)])
    return shapes


def anchor_count(spec) -> int:
    return sum(h * w * len(cell) for (h, w), cell in zip(feature_map_sizes(spec), boxes_per_cell(spec)))


def anchors(spec) -> np.ndarray:
    """(anchors, 4) as (center x, center y, width, height) in [0, 1] of the input, in the order the
    head's outputs are flattened: map, row, column, anchor of the cell."""
    rows = []
    for (height, width), cell in zip(feature_map_sizes(spec), boxes_per_cell(spec)):
        ys, xs = np.meshgrid((np.arange(height) + 0.5) / height, (np.arange(width) + 0.5) / width, indexing="ij")
        sizes = np.array([(scale * math.sqrt(ratio), scale / math.sqrt(ratio)) for scale, ratio in cell])
        centers = np.stack([xs, ys], axis=-1).reshape(-1, 1, 2)
        level = np.concatenate(np.broadcast_arrays(centers, sizes[None]), axis=-1)
        rows.append(level.reshape(-1, 4))
    return np.concatenate(rows).astype(np.float32)


def _extra_block(g, path: str, x: str, cin: int, cout: int) -> str:
    middle = cout // 2
    x = g.conv_bn_act(f"{path}.0", x, cin, middle, "relu6")
    x = g.conv_bn_act(f"{path}.1", x, middle, middle, "relu6", kernel=3, stride=2, groups=middle)
    return g.conv_bn_act(f"{path}.2", x, middle, cout, "relu6")


def _predictor(g, path: str, x: str, channels: int, outputs: int) -> str:
    x = g.conv_bn_act(f"{path}.0", x, channels, channels, "relu6", kernel=3, groups=channels)
    return g.conv(f"{path}.1", x, channels, outputs, bias=True)


def _flatten(g, path: str, x: str, width: int) -> str:
    """(N, A * width, H, W) -> (N, H * W * A, width): the anchors' order of ``anchors``."""
    x = g.node("Transpose", f"{path}.transpose", [x], perm=[0, 2, 3, 1])
    shape = g.const(f"{path}.shape", np.array([0, -1, width], np.int64))
    return g.node("Reshape", f"{path}.reshape", [x, shape])


def emit_head(g, spec, c4: str, c4_ch: int, c5: str, c5_ch: int) -> tuple[str, str]:
    """The extra layers, the predictors and the decoding; returns (boxes, scores) tensor names."""
    maps, channels = [c4, c5], [c4_ch, c5_ch]
    for index, cout in enumerate(spec.extra_ch):
        maps.append(_extra_block(g, f"extra.{index}", maps[-1], channels[-1], cout))
        channels.append(cout)
    logits, center_offsets, size_offsets = [], [], []
    for level, (x, cin, cell) in enumerate(zip(maps, channels, boxes_per_cell(spec))):
        path = f"head.classification_head.module_list.{level}"
        cls = _predictor(g, path, x, cin, len(cell) * spec.num_classes)
        logits.append(_flatten(g, path, cls, spec.num_classes))
        # The box predictor's 1x1 conv as two (dx, dy and dw, dh: the same weights, split), so
        # the decoding needs no Split of the offsets.
        path = f"head.regression_head.module_list.{level}"
        x = g.conv_bn_act(f"{path}.0", x, cin, cin, "relu6", kernel=3, groups=cin)
        center_offsets.append(_flatten(g, f"{path}.1", g.conv(f"{path}.1", x, cin, len(cell) * 2, bias=True), 2))
        size_offsets.append(_flatten(g, f"{path}.2", g.conv(f"{path}.2", x, cin, len(cell) * 2, bias=True), 2))
    logits = g.node("Concat", "head.classification_head.concat", logits, axis=1)
    center_offsets = g.node("Concat", "head.regression_head.center_concat", center_offsets, axis=1)
    size_offsets = g.node("Concat", "head.regression_head.size_concat", size_offsets, axis=1)
    scores = g.node("Softmax", "scores", [logits], axis=-1)
    return _decode(g, center_offsets, size_offsets, anchors(spec)), scores


ANCHOR_PREFIX = "anchors."  # the decoding's per-anchor tables: data, not learned (analysis.py skips them)


def _decode(g, center_offsets: str, size_offsets: str, anchor_boxes: np.ndarray) -> str:
    """x1, y1, x2, y2 in [0, 1] from the regression offsets (dx, dy and dw, dh) and the anchors:
    center = anchor center + d / 10 * anchor size, size = exp(min(d / 5, log(1000 / 16))) * anchor
    size."""
    anchor_centers = g.const(f"{ANCHOR_PREFIX}centers", anchor_boxes[None, :, :2].copy())
    scale = g.const(f"{ANCHOR_PREFIX}center_scale", (anchor_boxes[None, :, 2:] / BOX_CODER_WEIGHTS[0]).astype(np.float32))
    centers = g.node("Add", "decode.center", [g.node("Mul", "decode.center_shift", [center_offsets, scale]),
                                              anchor_centers])
    log_size = g.node("Mul", "decode.log_size", [size_offsets,
                                                 g.const("decode.size_scale", np.float32(1.0 / BOX_CODER_WEIGHTS[2]))])
    log_size = g.node("Min", "decode.log_size_clamp", [log_size, g.const("decode.max_log_size",
                                                                         np.float32(MAX_LOG_SIZE))])
    half_sizes = g.const(f"{ANCHOR_PREFIX}half_sizes", (anchor_boxes[None, :, 2:] / 2).astype(np.float32))
    half = g.node("Mul", "decode.half_size", [g.node("Exp", "decode.exp", [log_size]), half_sizes])
    corners = g.node("Concat", "decode.corners", [g.node("Sub", "decode.top_left", [centers, half]),
                                                  g.node("Add", "decode.bottom_right", [centers, half])], axis=-1)
    return g.node("Clip", "boxes", [corners, g.const("decode.zero", np.float32(0.0)),
                                    g.const("decode.one", np.float32(1.0))])
