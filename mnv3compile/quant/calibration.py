"""Calibration (and evaluation) data: a folder of images, a .npy/.npz of tensors, or synthetic.

Every source becomes a list of ``Sample`` (one input tensor, batch 1, plus its label when the
folder has one sub-folder per class) checked against the model's input shape, so a mistake is one
clear error before any work starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnv3compile.errors import UserError
from mnv3compile.quant.preprocess import IMAGE_SUFFIXES, Preprocess, load_image


@dataclass(frozen=True)
class Sample:
    tensor: np.ndarray  # (1, C, H, W) float32
    label: int | None = None
    source: str = ""


def _check_shape(array: np.ndarray, shape: tuple[int, ...], where: str) -> np.ndarray:
    if array.ndim == len(shape) - 1:
        array = array[None]
    if tuple(array.shape[1:]) != tuple(shape[1:]):
        raise UserError(f"{where}: tensor of shape {tuple(array.shape)} does not fit the model input "
                        f"{tuple(shape)}")
    return array.astype(np.float32)


def image_files(folder: Path) -> list[tuple[Path, int | None]]:
    """Image files under ``folder``; with one sub-folder per class, labelled by the sub-folder's
    position in sorted order (or its name when that is an integer)."""
    if not folder.is_dir():
        raise UserError(f"calibration data {folder}: no such folder")
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir())
    files: list[tuple[Path, int | None]] = []
    if subdirs:
        for index, sub in enumerate(subdirs):
            label = int(sub.name) if sub.name.isdigit() else index
            files += [(p, label) for p in sorted(sub.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
    files += [(p, None) for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise UserError(f"calibration data {folder}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    return files


SYNTHETIC_DEFAULT = 16


def synthetic_count(source: str | Path) -> int | None:
    """N of ``synthetic[:N]`` (16 when omitted); None for any other source."""
    text = str(source)
    if text != "synthetic" and not text.startswith("synthetic:"):
        return None
    count = text.partition(":")[2] or str(SYNTHETIC_DEFAULT)
    if not count.isdigit() or int(count) < 1:
        raise UserError(f"calibration data {text}: N of synthetic:N must be a positive whole number (e.g. synthetic:16)")
    return int(count)


def check_source(source: str | Path) -> None:
    """Refuse a source that cannot be read, before any work starts (the same errors load_samples
    would give later)."""
    if synthetic_count(source) is not None:
        return
    path = Path(source)
    if path.suffix.lower() in (".npy", ".npz"):
        if not path.is_file():
            raise UserError(f"calibration data {path}: no such file")
    else:
        image_files(path)


def tensor_file_shape(source: str | Path | None) -> tuple[int, ...] | None:
    """One sample's shape (batch 1) in a .npy/.npz calibration file, read from the headers only;
    None for other sources. Arrays of different shapes in one file are one clear error."""
    if source is None or synthetic_count(source) is not None or Path(source).suffix.lower() not in (".npy", ".npz"):
        return None
    path = Path(source)
    if not path.is_file():
        raise UserError(f"calibration data {path}: no such file")
    try:
        if path.suffix.lower() == ".npy":
            shapes = {"": np.load(path, mmap_mode="r", allow_pickle=False).shape}
        else:
            with np.load(path, allow_pickle=False) as archive:
                shapes = {key: archive[key].shape for key in archive.files}
    except Exception as exc:
        raise UserError(f"calibration data {path}: cannot read ({exc})") from exc
    samples = {key: (1, *shape[1:]) if len(shape) == 4 else (1, *shape) for key, shape in shapes.items()}
    distinct = sorted(set(samples.values()))
    if len(distinct) > 1:
        first, other = (next(k for k, v in samples.items() if v == shape) for shape in distinct[:2])
        raise UserError(f"calibration data {path}: arrays of different sample shapes, {first!r} {distinct[0]} and "
                        f"{other!r} {distinct[1]}")
    return distinct[0] if distinct else None


def load_samples(source: str | Path, input_shape: tuple[int, ...], preprocess: Preprocess | None,
                 limit: int | None = None) -> list[Sample]:
    """Samples from a folder of images, a .npy/.npz file, or ``synthetic[:N]``."""
    count = synthetic_count(source)
    if count is not None:
        rng = np.random.default_rng(0)
        return [Sample(rng.standard_normal(input_shape).astype(np.float32), None, f"synthetic[{i}]")
                for i in range(count)]
    path = Path(source)
    if path.suffix.lower() in (".npy", ".npz"):
        return _tensor_samples(path, input_shape, limit)
    files = image_files(path)[:limit]
    if preprocess is None:
        raise UserError("calibrating on images needs --preprocess (torchvision, tf, paddle, efficientnet-lite)")
    _, _, height, width = input_shape
    return [Sample(load_image(p, preprocess, height, width)[None], label, str(p)) for p, label in files]


# What the Python API takes as calibration or evaluation data: a source as the CLI names it
# (folder of images, .npy/.npz, "synthetic[:N]"), or tensors already in memory.
CalibrationData = str | Path | np.ndarray | Sequence[np.ndarray]


def describe_source(data: CalibrationData) -> str:
    """How the sidecar and notes name ``data``."""
    if isinstance(data, (str, Path)):
        return str(data)
    count = data.shape[0] if isinstance(data, np.ndarray) and data.ndim == 4 else len(data)
    return f"{count} tensors given in memory"


def as_samples(data: CalibrationData, input_shape: tuple[int, ...], preprocess: Preprocess | None,
               limit: int | None = None) -> list[Sample]:
    """``load_samples`` for a source, or the samples of in-memory tensors: one (N, C, H, W) array,
    or a sequence of (1, C, H, W) or (C, H, W) ones, checked against the model's input shape."""
    if isinstance(data, (str, Path)):
        return load_samples(data, input_shape, preprocess, limit)
    arrays = [data] if isinstance(data, np.ndarray) else list(data)
    samples = []
    for index, array in enumerate(arrays):
        batch = _check_shape(np.asarray(array), input_shape, f"calibration tensor {index}")
        samples += [Sample(batch[i: i + 1], None, f"tensor[{len(samples) + i}]") for i in range(batch.shape[0])]
    if not samples:
        raise UserError("calibration data: no tensors given")
    return samples[:limit]


def _tensor_samples(path: Path, input_shape: tuple[int, ...], limit: int | None) -> list[Sample]:
    if not path.is_file():
        raise UserError(f"calibration data {path}: no such file")
    try:
        if path.suffix.lower() == ".npy":
            arrays = [np.load(path, allow_pickle=False)]
        else:
            with np.load(path, allow_pickle=False) as archive:
                arrays = [archive[k] for k in archive.files]
    except Exception as exc:
        raise UserError(f"calibration data {path}: cannot read ({exc})") from exc
    samples = []
    for array in arrays:
        batch = _check_shape(np.asarray(array), input_shape, str(path))
        samples += [Sample(batch[i: i + 1], None, f"{path}[{i}]") for i in range(batch.shape[0])]
    if not samples:
        raise UserError(f"calibration data {path}: holds no tensors")
    return samples[:limit]
