"""How an image becomes a model input: resizing and normalisation as data, with named presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mnv3compile.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass(frozen=True)
class Preprocess:
    """pixel (0..255) -> (pixel * scale - mean) / std, per channel, in ``channel_order``.

    ``resize``: ``center-crop`` (shorter side to the input size / 0.875, then a central crop, as
    torchvision evaluates) or ``pad-right`` (height to the input height keeping the aspect ratio,
    width capped, zero padding on the right: PaddleOCR's text-line classifier).
    """

    name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    scale: float = 1.0
    channel_order: str = "RGB"
    resize: str = "center-crop"

    def to_json(self) -> dict:
        return asdict(self)

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """HWC uint8 in RGB -> CHW float32."""
        if self.channel_order == "BGR":
            pixels = pixels[..., ::-1]
        x = pixels.astype(np.float32) * np.float32(self.scale)
        x = (x - np.array(self.mean, np.float32)) / np.array(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1))


# In the order 'quantize --help' and 'build --help' list them (their --preprocess choices).
PRESETS = {
    "torchvision": Preprocess("torchvision", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), scale=1 / 255),
    "tf": Preprocess("tf", (127.5, 127.5, 127.5), (127.5, 127.5, 127.5)),
    # PaddleOCR's ClsResizeImg: (x / 255 - 0.5) / 0.5 on OpenCV's BGR image, right-padded.
    "paddle": Preprocess("paddle", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), scale=1 / 255, channel_order="BGR",
                         resize="pad-right"),
    "efficientnet-lite": Preprocess("efficientnet-lite", (127.0, 127.0, 127.0), (128.0, 128.0, 128.0)),
}


def preset(name: str) -> Preprocess:
    if name not in PRESETS:
        raise UserError(f"unknown preprocessing {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]


def load_image(path: Path, spec: Preprocess, height: int, width: int) -> np.ndarray:
    """Read one image file and turn it into a CHW float32 input of the given size."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            bands = image.getbands()
            if image.mode not in ("RGB", "L", "P", "RGBA", "LA") or len(bands) not in (1, 3, 4):
                raise UserError(f"{path}: unsupported image mode {image.mode} ({len(bands)} channels)")
            if "A" in bands and len(bands) in (2, 4):
                # Flatten transparency onto white, as a viewer shows it.
                background = Image.new("RGBA", image.size, (255, 255, 255, 255))
                image = Image.alpha_composite(background, image.convert("RGBA"))
            rgb = image.convert("RGB")
            resized = _resize(rgb, spec.resize, height, width)
    except UserError:
        raise
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read image ({exc})") from exc
    pixels = np.asarray(resized, dtype=np.uint8)
    x = spec.normalize(pixels)
    if spec.resize == "pad-right" and resized.width < width:
        padded = np.zeros((3, height, width), np.float32)
        padded[:, :, : resized.width] = x
        return padded
    return x


def _resize(image, mode: str, height: int, width: int):
    from PIL import Image

    if mode == "pad-right":
        new_width = min(width, max(1, int(np.ceil(height * image.width / image.height))))
        return image.resize((new_width, height), Image.BILINEAR)
    short = min(height, width) / 0.875
    ratio = short / min(image.width, image.height)
    resized = image.resize((max(width, round(image.width * ratio)), max(height, round(image.height * ratio))),
                           Image.BILINEAR)
    left, top = (resized.width - width) // 2, (resized.height - height) // 2
    return resized.crop((left, top, left + width, top + height))
