"""Real trained models the tests use, fetched from the package registry (PyPI) once and cached."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

PADDLE_WHEEL = "rapidocr_onnxruntime==1.4.4"
PADDLE_CLS_MEMBER = "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"
PADDLE_CLS_SHAPE = [1, 3, 48, 192]
PADDLE_DET_MEMBER = "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
PADDLE_REC_MEMBER = "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"


def cache_dir() -> Path:
    root = os.environ.get("MNV3COMPILE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "mnv3compile")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _from_paddle_wheel(member: str) -> Path:
    """A model file of the rapidocr wheel (PaddleOCR's models as ONNX, Apache-2.0), cached."""
    target = cache_dir() / Path(member).name
    if target.exists():
        return target
    wheels = cache_dir() / "wheels"
    if not list(wheels.glob("rapidocr_onnxruntime-1.4.4-*.whl")):
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", PADDLE_WHEEL, "-d", str(wheels)],
                       check=True, capture_output=True)
    wheel = next(wheels.glob("rapidocr_onnxruntime-1.4.4-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(archive.read(member))
        tmp.replace(target)
    return target


def paddle_cls_model() -> Path:
    """PaddleOCR's trained MobileNetV3-Small (x0.35) text-orientation classifier."""
    return _from_paddle_wheel(PADDLE_CLS_MEMBER)


def paddle_det_model() -> Path:
    """PaddleOCR's PP-OCRv4 text detector: MobileNetV3 backbone, DB head (ConvTranspose, Resize,
    Concat, Sigmoid); input N x 3 x H x W, H and W multiples of 32."""
    return _from_paddle_wheel(PADDLE_DET_MEMBER)


def paddle_rec_model() -> Path:
    """PaddleOCR's PP-OCRv4 text recognizer: a PP-LCNetV3 backbone (MobileNetV3-style blocks),
    an SVTR neck (LayerNorm, attention) and a CTC head; input N x 3 x 48 x W. Its character
    list is the model's ``character`` metadata (CTC index 0 is the blank, the last a space)."""
    return _from_paddle_wheel(PADDLE_REC_MEMBER)
