"""Bilinear resizes (LR-ASPP's upsampling) as two passes: along rows, then along columns.

TVM's resize2d computes each output from four inputs whose positions it derives per element
(floor, clamp, weights): as one loop nest that is a gather per element, which made LR-ASPP's last
upsampling (x8, 19 classes, NCHW output) a large share of the segmenter's time. Bilinear
interpolation is separable, and the 2-D formula is exactly the row interpolation followed by
the column one: ``((a (1 - wx) + b wx) (1 - wy) + (c (1 - wx) + d wx) wy)``. The row pass
(input rows x output width) still gathers, on 1/8 of the outputs; the column pass reads two
whole rows of it per output row, contiguously, and vectorizes. The row pass's block is annotated
so that the kernel's default schedule (schedules/kernels/inline.py) does not inline it back.

This pass runs on the NCHW Relax module, before the layout pass (mnv3compile/relax/channels_last.py), which then
leaves the resize in NCHW (a transpose of the small input before it; a segmenter's output is NCHW
anyway). It takes only resizes of a channel count no vector divides (``VECTOR``): with 128
channels, as in LR-ASPP's inner upsampling, the layout pass's NHWC resize reads whole channel
vectors per tap and ran faster than two NCHW passes. It takes ``linear`` resizes
with ``half_pixel``, ``pytorch_half_pixel``, ``align_corners`` or ``asymmetric`` coordinates and
static shapes; others keep TVM's resize2d.
"""

from __future__ import annotations

from mnv3compile.relax.helpers import rewrite_calls

VECTOR = 8  # NHWC resizes of a multiple of this many channels vectorize over channels already
KEEP = "mnv3compile.materialize"  # block annotation: inline.py leaves such a stage in memory
MODES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric")


def _source(position, in_size: int, out_size: int, mode: str):
    """Where output ``position`` samples the input, in input coordinates (float32), per ONNX."""
    from tvm import tirx

    o = position.astype("float32")
    if mode == "align_corners":
        return o * tirx.const((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0, "float32")
    scale = tirx.const(in_size / out_size, "float32")
    if mode == "asymmetric":
        return o * scale
    if mode == "pytorch_half_pixel" and out_size == 1:
        return tirx.const(0.0, "float32")
    return (o + tirx.const(0.5, "float32")) * scale - tirx.const(0.5, "float32")


def _taps(position, in_size: int, out_size: int, mode: str):
    """(low index, high index, weight of the high one), indices clamped to the input, as TVM's
    resize2d computes them."""
    from tvm import tirx

    source = _source(position, in_size, out_size, mode)
    floor = tirx.floor(source)
    low = floor.astype("int64")
    last = tirx.const(in_size - 1, "int64")
    zero = tirx.const(0, "int64")
    clamp = lambda i: tirx.max(tirx.min(i, last), zero)  # noqa: E731
    return clamp(low), clamp(low + tirx.const(1, "int64")), source - floor


def separable_bilinear(x, out_height: int, out_width: int, mode: str):
    """TE, NCHW: rows[n, c, h, ow] interpolated along the width, then out along the height."""
    from tvm import te, tirx

    n, channels, height, width = (int(d) for d in x.shape)
    one = tirx.const(1.0, "float32")

    def along_width(b, c, h, ow):
        left, right, w = _taps(ow, width, out_width, mode)
        return x[b, c, h, left] * (one - w) + x[b, c, h, right] * w

    rows = te.compute((n, channels, height, out_width), along_width, name="resize_rows", attrs={KEEP: 1})

    def along_height(b, c, oh, ow):
        top, bottom, w = _taps(oh, height, out_height, mode)
        return rows[b, c, top, ow] * (one - w) + rows[b, c, bottom, ow] * w

    return te.compute((n, channels, out_height, out_width), along_height, name="resize_columns")


def _static_size(call):
    size = call.args[1]
    values = getattr(size, "values", None)
    try:
        return tuple(int(v) for v in values) if values is not None and len(values) == 2 else None
    except TypeError:  # a symbolic size
        return None


def to_separable_resize(module):
    """``module`` with every bilinear NCHW float32 resize2d it supports computed in two passes."""

    def separable_resize(call, builder):
        attrs = call.attrs
        shape = getattr(call.args[0].ty, "shape", None)
        size = _static_size(call)
        if (str(attrs.layout), str(attrs.method)) != ("NCHW", "linear") or size is None or shape is None \
                or str(attrs.coordinate_transformation_mode) not in MODES \
                or str(call.args[0].ty.dtype) != "float32" or str(call.ty.dtype) != "float32":
            return None
        try:
            channels = [int(d) for d in shape.values][1]
        except TypeError:  # a symbolic input shape
            return None
        if channels % VECTOR == 0:
            return None
        mode = str(attrs.coordinate_transformation_mode)
        return builder.call_te(separable_bilinear, call.args[0], size[0], size[1], mode,
                               primfunc_name_hint="resize_bilinear")

    return rewrite_calls(module, ("relax.image.resize2d",), separable_resize)
