"""Detections from an SSDLite bundle's outputs: per-class non-maximum suppression, and drawing.

The compiled graph ends with decoded boxes (x1, y1, x2, y2 in [0, 1] of the input) and class
probabilities per anchor (mnv3compile/zoo/ssdlite.py); suppression runs here, after the graph,
the same for every target (torchvision's SSD post-processing: per class, the anchors above a
score threshold, the best ``candidates_per_class`` of them, greedy suppression at an IoU
threshold, then the best ``max_detections`` over all classes). Class 0 is the background.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCORE_THRESHOLD = 0.3
IOU_THRESHOLD = 0.55  # the paper's and torchvision's SSDLite
CANDIDATES_PER_CLASS = 300
MAX_DETECTIONS = 100


@dataclass(frozen=True)
class Detection:
    class_id: int
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in [0, 1] of the input


def is_detector(output_names: list[str]) -> bool:
    return output_names == ["boxes", "scores"]


def iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Intersection over union of one (4,) box with each of (N, 4) boxes."""
    top_left = np.maximum(box[:2], others[:, :2])
    bottom_right = np.minimum(box[2:], others[:, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(others[:, 2:] - others[:, :2], axis=1)
    return intersection / np.maximum(area + areas - intersection, 1e-12)


def suppress(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy NMS: indices kept, best first (``scores`` already sorted descending)."""
    kept: list[int] = []
    alive = np.ones(len(boxes), bool)
    for index in range(len(boxes)):
        if not alive[index]:
            continue
        kept.append(index)
        alive[index + 1:] &= iou(boxes[index], boxes[index + 1:]) <= iou_threshold
    return kept


def detect(boxes: np.ndarray, scores: np.ndarray, score_threshold: float = SCORE_THRESHOLD,
           iou_threshold: float = IOU_THRESHOLD, candidates_per_class: int = CANDIDATES_PER_CLASS,
           max_detections: int = MAX_DETECTIONS) -> list[Detection]:
    """Detections of one image from ``boxes`` (anchors, 4) and ``scores`` (anchors, classes), a
    leading batch axis of 1 allowed."""
    boxes = boxes.reshape(-1, 4)
    scores = scores.reshape(len(boxes), -1)
    found: list[Detection] = []
    for class_id in range(1, scores.shape[1]):
        candidates = np.flatnonzero(scores[:, class_id] > score_threshold)
        if not len(candidates):
            continue
        order = candidates[np.argsort(-scores[candidates, class_id], kind="stable")][:candidates_per_class]
        for index in suppress(boxes[order], scores[order, class_id], iou_threshold):
            anchor = order[index]
            found.append(Detection(class_id, float(scores[anchor, class_id]),
                                   tuple(float(v) for v in boxes[anchor])))
    found.sort(key=lambda d: -d.score)
    return found[:max_detections]


def draw(image_path: Path, detections: list[Detection], output: Path, labels: list[str] | None = None) -> None:
    """``image_path`` with each detection's box and label drawn on it, written to ``output``."""
    from PIL import Image, ImageDraw

    image = Image.open(image_path).convert("RGB")
    canvas = ImageDraw.Draw(image)
    width, height = image.size
    for detection in detections:
        x1, y1, x2, y2 = detection.box
        corners = (x1 * width, y1 * height, x2 * width, y2 * height)
        canvas.rectangle(corners, outline=(255, 40, 40), width=max(1, min(width, height) // 160))
        name = labels[detection.class_id] if labels and detection.class_id < len(labels) else f"class {detection.class_id}"
        canvas.text((corners[0] + 2, corners[1] + 1), f"{name} {detection.score:.2f}", fill=(255, 40, 40))
    image.save(output)
