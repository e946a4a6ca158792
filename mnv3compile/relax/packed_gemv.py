"""GEMVs (the classifier at batch 1) and GEMMs of a few rows (a transformer's tokens) on weights
packed ``[N/L, K, L]``: float32, and int8 into int32 where no dot product takes them (AVX2, arm64
without dotprod). Columns that fill no whole vector are padded with zero weights and the result
sliced back.

The gemv template (schedules/kernels/gemv.py, with the compute ``packed_matmul``) keeps a tile of
output vectors in registers and walks the reduction: for each input k it reads the tile's weights
``W[k, tile]``. Row-major ``[K, N]`` puts those L x 4 bytes a whole row (N x 4 bytes) apart, so the
classifier's 4 MB (1024 x 1000) is read at a 4000-byte stride, which no hardware prefetcher follows
when the weights are not in cache (every call in a real app, and every call of an interleaved
benchmark). Packed, each vector of L outputs reads its weights as one sequential stream. The packing
is a constant made once at build time, like the int8 dot products'
(mnv3compile/relax/dot_products.py, which takes int8 matmuls before this pass sees them).
"""

from __future__ import annotations

import numpy as np

from mnv3compile.relax.helpers import OPERAND_DTYPE, constant_value, dtype_of, is_nhwc_conv, rewrite_calls
from mnv3compile.schedules.kernels.gemv import pack_columns, packed_matmul
from mnv3compile.schedules.kernels.isa import current_isa
from mnv3compile.schedules.kernels.loops import fitting_lanes

def to_packed_gemv(module):
    """``module`` with every float32 (or int8 -> int32) row-times-constant matmul reading packed
    weights."""
    from tvm import relax

    isa = current_isa()
    if isa is None:
        return module

    def packed_gemv(call, builder):
        result = dtype_of(call)
        if result not in OPERAND_DTYPE:
            return None
        weight = constant_value(call.args[1])
        if call.op.name == "relax.nn.conv2d":
            weight = _one_pixel_conv_weight(call, weight)
        shape = getattr(call.args[0].ty, "shape", None)
        if weight is None or weight.ndim != 2 or weight.dtype != OPERAND_DTYPE[result] or shape is None:
            return None
        if len(shape.values) not in (2, 4) or dtype_of(call.args[0]) != weight.dtype.name:
            return None
        columns = weight.shape[1]
        lanes = fitting_lanes(columns, isa.lanes(result))
        if lanes < 4:  # columns in no whole vectors (PP-OCRv4's CTC head: 6625): padded with zeros
            lanes = isa.lanes(result)
            weight = np.pad(weight, ((0, 0), (0, -columns % lanes)))
        packed = relax.const(pack_columns(weight, lanes), weight.dtype.name)
        product = builder.call_te(packed_matmul, call.args[0], packed, result, primfunc_name_hint="matmul_packed")
        if weight.shape[1] == columns:
            return product
        return builder.emit(relax.op.strided_slice(product, axes=[len(shape.values) - 1], begin=[0], end=[columns]))

    return rewrite_calls(module, ("relax.matmul", "relax.nn.conv2d"), packed_gemv)


def _one_pixel_conv_weight(call, weight):
    """The (C, F) matrix of a pointwise NHWC conv of one pixel (squeeze-excite's FCs), which is a
    GEMV; else None. Its HWIO weight, read a vector of outputs at a time, is as strided as a
    row-major matrix's."""
    attrs = call.attrs
    shape = getattr(call.args[0].ty, "shape", None)
    if weight is None or shape is None or len(shape.values) != 4 or [int(d) for d in shape.values[:3]] != [1, 1, 1]:
        return None
    if not is_nhwc_conv(attrs):
        return None
    if weight.shape[:2] != (1, 1) or int(attrs.groups) != 1 or any(int(p) for p in attrs.padding):
        return None
    return weight.reshape(weight.shape[2:])
