"""Rendered text lines with known orientation: ground truth for PaddleOCR's 0/180 classifier.

Lines of varied words, digits and punctuation in Debian's DejaVu fonts (or Pillow's built-in one),
sizes 18-44 px, dark ink on light paper with a little noise; half are rotated by 180 degrees.
Written as ``DIR/0/*.png`` (upright) and ``DIR/1/*.png`` (rotated): the class index is the folder.
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WORDS = (
    "the of and to in is was for on are with as his they be at one have this from by hot word but what some "
    "we can out other were all there when up use your how said an each she which do their time if will way "
    "about many then them write would like so these her long make thing see him two has look more day could "
    "go come did number sound no most people my over know water than call first who may down side been now "
    "find invoice total amount date receipt station street road price order customer payment account bank "
    "Shanghai Beijing Berlin Paris London Tokyo Delhi Cairo Lima Oslo Mobile Net Vision Kernel Compiler").split()
FONT_GLOBS = ("/usr/share/fonts/truetype/dejavu/*.ttf", "/usr/share/fonts/truetype/*/*.ttf")


def fonts() -> list[str | None]:
    found = sorted({p for pattern in FONT_GLOBS for p in glob.glob(pattern)})
    return found or [None]  # None: Pillow's built-in scalable font


def _text(rng: np.random.Generator) -> str:
    parts = []
    for _ in range(rng.integers(2, 7)):
        kind = rng.random()
        if kind < 0.75:
            word = WORDS[rng.integers(len(WORDS))]
            parts.append(word.capitalize() if rng.random() < 0.2 else word)
        elif kind < 0.9:
            parts.append(str(rng.integers(0, 100000)))
        else:
            parts.append(rng.choice(["-", ":", "/", "&", "(1)", "No.", "$12.50", "#"]))
    return " ".join(parts)


def render_line(rng: np.random.Generator, font_files: list[str | None]) -> Image.Image:
    return render_text_line(rng, font_files)[0]


def render_text_line(rng: np.random.Generator, font_files: list[str | None]) -> tuple[Image.Image, str]:
    """A rendered line and the text it shows (ground truth for a recognizer)."""
    size = int(rng.integers(18, 45))
    font_file = font_files[rng.integers(len(font_files))]
    font = ImageFont.truetype(font_file, size) if font_file else ImageFont.load_default(size=size)
    text = _text(rng)
    left, top, right, bottom = font.getbbox(text)
    pad = int(rng.integers(2, 10))
    paper = tuple(int(v) for v in rng.integers(200, 256, 3))
    ink = tuple(int(v) for v in rng.integers(0, 70, 3))
    image = Image.new("RGB", (right - left + 2 * pad, bottom - top + 2 * pad), paper)
    ImageDraw.Draw(image).text((pad - left, pad - top), text, font=font, fill=ink)
    pixels = np.asarray(image, np.float32) + rng.normal(0, 6, (image.height, image.width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), text


def render_page(rng: np.random.Generator, height: int, width: int, font_files: list[str | None] | None = None,
                lines: int = 6) -> Image.Image:
    """A page of ``lines`` rendered lines pasted at random places on light paper (ground for a text
    detector; lines wider than the page are scaled down to fit)."""
    font_files = font_files or fonts()
    paper = tuple(int(v) for v in rng.integers(200, 256, 3))
    page = Image.new("RGB", (width, height), paper)
    for _ in range(lines):
        line = render_line(rng, font_files)
        if line.width > width * 0.9 or line.height > height * 0.3:
            ratio = min(width * 0.9 / line.width, height * 0.3 / line.height)
            line = line.resize((max(1, int(line.width * ratio)), max(1, int(line.height * ratio))))
        page.paste(line, (int(rng.integers(0, width - line.width + 1)), int(rng.integers(0, height - line.height + 1))))
    return page


def detector_input(page: Image.Image) -> np.ndarray:
    """PaddleOCR's detector preprocessing (rapidocr's config): BGR, (x / 255 - 0.5) / 0.5, NCHW."""
    pixels = np.asarray(page.convert("RGB"), np.float32)[:, :, ::-1]
    return ((pixels / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[None].copy()


def write_dataset(folder: Path, count: int, seed: int) -> Path:
    """``count`` lines, alternating upright (class 0) and rotated 180 degrees (class 1)."""
    rng = np.random.default_rng(seed)
    font_files = fonts()
    for label in ("0", "1"):
        (folder / label).mkdir(parents=True, exist_ok=True)
    for index in range(count):
        image = render_line(rng, font_files)
        label = index % 2
        if label:
            image = image.rotate(180)
        image.save(folder / str(label) / f"line{index:05d}.png")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_dataset(args.folder, args.count, args.seed)
    print(f"wrote {args.count} lines to {args.folder}")


if __name__ == "__main__":
    main()
