"""MobileNetV3 layer tables (the paper's Tables 1 and 2, torchvision's layout) as data.

A :class:`ModelSpec` is everything the emitter needs: the resolved channel counts after the
width multiplier, strides, dilations and the head. Nothing here touches ONNX.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mnv3compile.errors import UserError

MODEL_NAMES = ("large", "small", "large-minimal", "small-minimal", "lraspp-large", "lraspp-small",
               "ssdlite-large", "ssdlite-small")
# Each side of the input: a multiple of the network's output stride (32; 16 for LR-ASPP, whose
# dilated last stage stops at 16, and its low-level skip at 8 divides that), up to 4096.
MIN_SIDE, MAX_SIDE = 32, 4096
CLASSIFIER_STRIDE, SEGMENTER_STRIDE = 32, 16
BN_EPS = 1e-3


def parse_resolution(value: int | str | tuple[int, int]) -> tuple[int, int]:
    """(height, width) from 224, "224", "512x1024" (height x width) or a pair."""
    if isinstance(value, tuple):
        return value
    if isinstance(value, int):
        return (value, value)
    parts = str(value).lower().split("x")
    if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
        raise UserError(f"resolution takes H or HxW (height x width, e.g. 224 or 512x1024), got {value!r}")
    height, width = (int(p) for p in parts) if len(parts) == 2 else (int(parts[0]),) * 2
    return (height, width)


def format_resolution(resolution: tuple[int, int]) -> str:
    """"224" for a square input (the paper's way), "512x1024" otherwise."""
    height, width = resolution
    return str(height) if height == width else f"{height}x{width}"


@dataclass(frozen=True)
class BneckRow:
    """One row of the paper's table: kernel, expansion, output channels, SE, nonlinearity, stride."""

    kernel: int
    expand: int
    out: int
    se: bool
    act: str  # "RE" (ReLU) or "HS" (h-swish)
    stride: int


def _rows(text: str) -> tuple[BneckRow, ...]:
    rows = []
    for cell in text.split("|"):
        k, e, o, se, act, s = cell.split()
        rows.append(BneckRow(int(k), int(e), int(o), se == "SE", act, int(s)))
    return tuple(rows)


# Written exactly as mission.md / the paper print them: k exp out SE NL s.
LARGE_ROWS = _rows(
    "3 16 16 - RE 1 | 3 64 24 - RE 2 | 3 72 24 - RE 1 | 5 72 40 SE RE 2 | 5 120 40 SE RE 1 |"
    "5 120 40 SE RE 1 | 3 240 80 - HS 2 | 3 200 80 - HS 1 | 3 184 80 - HS 1 | 3 184 80 - HS 1 |"
    "3 480 112 SE HS 1 | 3 672 112 SE HS 1 | 5 672 160 SE HS 2 | 5 960 160 SE HS 1 | 5 960 160 SE HS 1"
)
SMALL_ROWS = _rows(
    "3 16 16 SE RE 2 | 3 72 24 - RE 2 | 3 88 24 - RE 1 | 5 96 40 SE HS 2 | 5 240 40 SE HS 1 |"
    "5 240 40 SE HS 1 | 5 120 48 SE HS 1 | 5 144 48 SE HS 1 | 5 288 96 SE HS 2 | 5 576 96 SE HS 1 |"
    "5 576 96 SE HS 1"
)
# The last stage (C4 -> C5) starts at this row index; dilation and the halved tail apply from here.
TAIL_START = {"large": 12, "small": 8}
STEM_CHANNELS = 16
LAST_CHANNELS = {"large": 1280, "small": 1024}
LRASPP_INTER_CHANNELS = 128
# SSDLite (the paper's section 6.3, MobileNetV2's SSDLite): the extra layers after C5 halve the
# resolution four times, to these output channels (times the width multiplier).
SSDLITE_EXTRA_CHANNELS = (512, 256, 256, 128)
DEFAULT_RESOLUTION, DETECTOR_RESOLUTION = 224, 320
COCO_CLASSES = 91  # 90 COCO categories and background (class 0), as the paper's and TF's SSDLite


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of ``divisor``, never below 90% of ``value`` (torchvision's rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


@dataclass(frozen=True)
class Block:
    """One inverted-residual block with channel counts already scaled by the width multiplier."""

    index: int  # position in ``features`` (the stem is features.0)
    in_ch: int
    expand_ch: int
    out_ch: int
    kernel: int
    stride: int  # effective stride (1 when dilated)
    dilation: int
    se_ch: int  # squeeze channels, 0 when the block has no SE
    act: str  # "relu" or "hswish"
    is_downsample: bool  # the table's stride is 2 (torchvision's ``_is_cn``)

    @property
    def has_expand(self) -> bool:
        return self.expand_ch != self.in_ch

    @property
    def has_residual(self) -> bool:
        return self.stride == 1 and self.in_ch == self.out_ch


@dataclass(frozen=True)
class ModelSpec:
    """A fully resolved MobileNetV3 variant."""

    name: str
    family: str  # "large" or "small"
    width: float
    resolution: tuple[int, int]  # (height, width) of the input image
    num_classes: int
    minimal: bool
    segmentation: bool
    stem_ch: int
    blocks: tuple[Block, ...]
    last_conv_ch: int
    last_ch: int  # classifier hidden width (classification only)
    head_act: str  # activation of stem, last conv and classifier hidden layer
    low_level_index: int = 0  # features index of the stride-8 skip (segmentation only)
    detection: bool = False
    c4_index: int = 0  # features index whose expansion layer feeds SSDLite's first predictor
    extra_ch: tuple[int, ...] = ()  # SSDLite's extra layers' output channels
    inter_ch: int = LRASPP_INTER_CHANNELS
    notes: tuple[str, ...] = field(default=())

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, 3, *self.resolution)

    @property
    def output_shape(self) -> tuple[int, ...]:
        if self.detection:  # the scores; the boxes are (1, anchors, 4)
            from mnv3compile.zoo.ssdlite import anchor_count
            return (1, anchor_count(self), self.num_classes)
        if self.segmentation:
            return (1, self.num_classes, *self.resolution)
        return (1, self.num_classes)

    @property
    def last_conv_index(self) -> int:
        return len(self.blocks) + 1


def build_spec(
    model: str,
    width: float = 1.0,
    resolution: int | str | tuple[int, int] | None = None,
    num_classes: int | None = None,
    reduced_tail: bool | None = None,
) -> ModelSpec:
    """Resolve a variant name and its knobs into a :class:`ModelSpec`; raise UserError on bad input."""
    if model not in MODEL_NAMES:
        raise UserError(f"unknown model {model!r}; choose one of: {', '.join(MODEL_NAMES)}")
    if not width > 0:
        raise UserError(f"width multiplier must be > 0, got {width}")
    segmentation = model.startswith("lraspp-")
    detection = model.startswith("ssdlite-")
    if resolution is None:
        resolution = DETECTOR_RESOLUTION if detection else DEFAULT_RESOLUTION
    resolution = parse_resolution(resolution)
    step = SEGMENTER_STRIDE if segmentation else CLASSIFIER_STRIDE
    if not all(MIN_SIDE <= side <= MAX_SIDE and side % step == 0 for side in resolution):
        raise UserError(f"resolution {format_resolution(resolution)}: each side of {model} must be a multiple of "
                        f"{step} between {MIN_SIDE} and {MAX_SIDE}")
    minimal = model.endswith("-minimal")
    family = "large" if "large" in model else "small"
    if num_classes is None:
        num_classes = 19 if segmentation else COCO_CLASSES if detection else 1000
    least = 2 if detection else 1  # a detector's class 0 is the background
    if num_classes < least:
        raise UserError(f"number of classes of {model} must be >= {least}, got {num_classes}")
    # The paper's LR-ASPP halves the filters of the last stage; torchvision's checkpoint does not.
    if reduced_tail is None:
        reduced_tail = segmentation
    dilated = segmentation

    def scale(channels: int) -> int:
        return make_divisible(channels * width)

    rows = LARGE_ROWS if family == "large" else SMALL_ROWS
    tail = TAIL_START[family]
    blocks = []
    in_ch = scale(STEM_CHANNELS)
    table_in = STEM_CHANNELS
    for i, row in enumerate(rows):
        in_tail = i >= tail
        divider = 2 if (reduced_tail and in_tail) else 1
        # The halved tail halves the C4 block's output, not its expansion (torchvision's
        # reduce_divider; SSDLite's C4 is that expansion).
        expand_divider = 2 if (reduced_tail and i > tail) else 1
        # The paper's (and Keras') expansion is a ratio applied to the actual, rounded input
        # width; at width 1.0 this equals torchvision's make_divisible(exp * width).
        expand = make_divisible(in_ch * (row.expand // expand_divider) / table_in)
        table_in = row.out // divider
        out = scale(row.out // divider)
        dilation = 2 if (dilated and in_tail) else 1
        kernel, act, se = row.kernel, row.act, row.se
        if minimal:
            kernel, act, se = 3, "RE", False
        blocks.append(
            Block(
                index=i + 1,
                in_ch=in_ch,
                expand_ch=expand,
                out_ch=out,
                kernel=kernel,
                stride=1 if dilation > 1 else row.stride,
                dilation=dilation,
                se_ch=make_divisible(expand // 4) if se else 0,
                act="relu" if act == "RE" else "hswish",
                is_downsample=row.stride > 1,
            )
        )
        in_ch = out
    # torchvision's LR-ASPP takes the low-level skip at stage_indices[-4]: the stride-8 output.
    downsample = [0] + [b.index for b in blocks if b.is_downsample] + [len(blocks) + 1]
    divider = 2 if reduced_tail else 1
    return ModelSpec(
        name=model,
        family=family,
        width=width,
        resolution=resolution,
        num_classes=num_classes,
        minimal=minimal,
        segmentation=segmentation,
        stem_ch=scale(STEM_CHANNELS),
        blocks=tuple(blocks),
        last_conv_ch=6 * in_ch,
        # The paper keeps the classifier's hidden layer full width for multipliers below 1
        # (its 0.75 rows: Large 4.0 M, Small 2.4 M parameters); torchvision would scale it.
        last_ch=scale(LAST_CHANNELS[family] // divider) if width > 1 else LAST_CHANNELS[family] // divider,
        head_act="relu" if minimal else "hswish",
        low_level_index=downsample[-4] if segmentation else 0,
        detection=detection,
        # torchvision's and the paper's C4: the expansion layer of the last stride-2 bottleneck
        c4_index=downsample[-2] if detection else 0,
        extra_ch=tuple(make_divisible(c * width) for c in SSDLITE_EXTRA_CHANNELS) if detection else (),
    )
