"""Loop helpers the kernel templates share: reading a block's loops, choosing tile sizes that divide
them, and vectorizing and unrolling a tile's loops."""

from __future__ import annotations


def reduce_iters(sch, block) -> list:
    from tvm import tirx

    return [iv for iv in sch.get(block).iter_vars if iv.iter_type == tirx.IterVar.CommReduce]


def extents(sch, loops) -> list[int]:
    return [int(sch.get(loop).extent) for loop in loops]


L1_WEIGHT_BYTES = 16 * 1024  # half the smallest L1 data cache of the CPUs we target (32 KiB)


def bytes_of(buffer) -> int:
    count = buffer.dtype.bits // 8
    for extent in buffer.shape:
        count *= int(extent)
    return count


def largest_divisor(n: int, limit: int) -> int:
    return max(d for d in range(1, max(1, min(n, limit)) + 1) if n % d == 0)


def fitting_lanes(extent: int, lanes: int) -> int:
    """The widest vector of at most ``lanes`` (a power of two) whose lanes divide ``extent``: with
    AVX-512's 16 fp32 lanes, MobileNetV3's 24/40/72/88/120 channels run in 8-lane vectors."""
    while lanes > 1 and extent % lanes:
        lanes //= 2
    return lanes


def tile_shape(width: int, registers: int, pixels_want: int, vectors_want: int, wide_rows: bool) -> tuple[int, int]:
    """(pixels, vectors) of an output tile: pixels divides the row's ``width``, vectors divides the
    ``registers`` of channels, each at most what is wanted. With ``wide_rows``, when the width has
    no divisor near the wanted pixels (7 or 14 against 4), the tile's accumulators go to more
    pixels rather than idling: 7x1 instead of 1x3. Not on NEON's sdot kernels, where it cost
    instructions (7 broadcasts per weight load)."""
    pixels = largest_divisor(width, pixels_want)
    vectors = largest_divisor(registers, vectors_want)
    if wide_rows and pixels < pixels_want:
        accumulators = pixels_want * vectors
        wider = largest_divisor(width, accumulators)
        if wider > pixels:
            pixels, vectors = wider, largest_divisor(registers, max(1, accumulators // wider))
    if wide_rows and pixels * vectors == 1 < pixels_want * vectors_want:
        # A 1x1 tile shares nothing (a broadcast per weight vector): a channel count with no
        # divisor near the wanted vectors (184 = 23 x 8) gives its accumulators to pixels instead.
        pixels = largest_divisor(width, pixels_want * vectors_want)
    return pixels, vectors


def vectorize_innermost(sch, block, lanes: int) -> None:
    """Unroll-free vectorization of a spatial block's innermost loop (in chunks of ``lanes``)."""
    loops = sch.get_loops(block)
    if not loops:
        return
    inner = loops[-1]
    extent = int(sch.get(inner).extent)
    lanes = fitting_lanes(extent, lanes) if extent > lanes else lanes
    if extent % lanes == 0 and extent > lanes:
        _, inner = sch.split(inner, [None, lanes])
    if extent % lanes == 0 or extent < lanes:
        sch.vectorize(inner)


def vector_tile(sch, channel_loop, lanes: int, pixel_loop=None) -> None:
    """A tile's loops: whole vectors of channels innermost, every register of the tile unrolled."""
    extent = int(sch.get(channel_loop).extent)
    if extent % lanes == 0:
        outer, inner = sch.split(channel_loop, [None, lanes])
        if pixel_loop is not None:
            sch.reorder(outer, pixel_loop)  # one vector per (register column, pixel)
        sch.vectorize(inner)
        sch.unroll(outer)
    if pixel_loop is not None:
        sch.unroll(pixel_loop)


def split_vectorize(sch, loop, lanes: int) -> None:
    extent = int(sch.get(loop).extent)
    if extent % lanes:
        return
    outer, inner = sch.split(loop, [None, lanes])
    sch.unroll(outer)
    sch.vectorize(inner)


def all_blocks(sch) -> list:
    """Every block of the kernel, outermost first."""
    found, pending = [], list(sch.get_child_blocks(sch.get_sblock("root")))
    while pending:
        block = pending.pop(0)
        found.append(block)
        pending[:0] = sch.get_child_blocks(block)
    return found
