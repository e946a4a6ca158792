"""The ``gemv`` family: a matmul of one row (the classifier at batch 1) or a few (a GEMM: a
transformer's tokens), on TVM's legalized ``matmul`` or on weights packed ``[N/L, K, L]``
(``packed_matmul``, the compute mnv3compile/relax/packed_gemv.py chooses). A tile of output vectors
stays in registers over the whole reduction; a GEMM runs GEMM_ROWS rows per tile, each weight
vector read once for all of them. Packed, each vector of L outputs reads its weights as one
sequential stream (row-major, they are a whole row apart: a stride no prefetcher follows).
"""

from __future__ import annotations

import numpy as np

from mnv3compile.schedules.kernels.family import NoTemplate, ReductionFamily, Variant, rule
from mnv3compile.schedules.kernels.isa import Isa
from mnv3compile.schedules.kernels.parallel import run_in_parallel
from mnv3compile.schedules.kernels.loops import extents, fitting_lanes, largest_divisor, split_vectorize

TVM_MATMUL_BLOCK = "matmul"  # what TVM's legalization names a matmul


def pack_columns(weight: np.ndarray, lanes: int) -> np.ndarray:
    """(K, N) -> (N/lanes, K, lanes): each vector of ``lanes`` output columns, contiguous over K."""
    rows, columns = weight.shape
    return np.ascontiguousarray(weight.reshape(rows, columns // lanes, lanes).transpose(1, 0, 2))


def packed_matmul(x, packed, out_dtype: str = "float32"):
    """TE: out[..., f] = sum_k x[..., k] * W[k, f] in ``out_dtype``, with W read from its packed
    form; ``x`` is rows (i, k) or, for a one-pixel conv, NHWC (1, 1, 1, k)."""
    from tvm import te

    vectors, depth, lanes = (int(d) for d in packed.shape)
    k = te.reduce_axis((0, depth), "k")
    return te.compute((*(int(d) for d in x.shape[:-1]), vectors * lanes), lambda *index: te.sum(
        x[(*index[:-1], k)].astype(out_dtype) * packed[index[-1] // lanes, k, index[-1] % lanes].astype(out_dtype),
        axis=k), name="packed_matmul", attrs=rule("gemv"))


GEMM_ROWS = 4  # rows of a GEMM tile: each weight vector loaded feeds this many accumulators


def schedule_gemv(sch, block, isa: Isa, knobs) -> Variant:
    """A GEMV: a tile of output vectors in registers over the whole reduction. A GEMM of M rows
    (tokens) runs GEMM_ROWS rows per tile, each weight vector read once for all of them."""
    dtype = str(sch.get(block).reads[0].source.dtype)
    loops = sch.get_loops(block)
    *spatial, j, k = loops
    rows = [e for e in extents(sch, spatial) if e != 1]
    if len(rows) > 1 or (rows and len(spatial) != 1):
        raise NoTemplate
    (outputs,) = extents(sch, [j])
    lanes = fitting_lanes(outputs, isa.lanes(dtype))
    if lanes < 4:
        raise NoTemplate
    row_tile = largest_divisor(rows[0], GEMM_ROWS) if rows else 1
    vectors = max(1, knobs.gemv // row_tile)
    tile = lanes * largest_divisor(outputs // lanes, vectors)
    jo, ji = sch.split(j, [None, tile])
    if row_tile > 1:
        io, ii = sch.split(spatial[0], [None, row_tile])
        sch.reorder(io, jo, k, ii, ji)
        sch.unroll(ii)
        outer = [io, jo]
    else:
        sch.reorder(jo, k, ji)
        outer = [*spatial, jo]
    epilogue = sch.get_consumers(block)
    if len(epilogue) == 1:
        sch.reverse_compute_at(epilogue[0], jo)
    run_in_parallel(sch, outer, per_step=lanes)
    sch.set_scope(block, 0, "local")
    split_vectorize(sch, sch.get_loops(block)[-1], lanes)
    sch.decompose_reduction(block, k)
    if len(epilogue) == 1:
        split_vectorize(sch, sch.get_loops(epilogue[0])[-1], lanes)
    if row_tile > 1:
        return Variant("gemv", "gemm", dtype, isa.name, tile=f"m{row_tile}n{tile}")
    return Variant("gemv", "gemv", dtype, isa.name, tile=f"n{tile}")


class GemvFamily(ReductionFamily):
    name = "gemv"
    tvm_blocks = (TVM_MATMUL_BLOCK,)

    def knobs(self, isa: Isa):
        return isa.knobs.gemv

    def schedule_block(self, sch, block, isa: Isa, knobs) -> Variant:
        return schedule_gemv(sch, block, isa, knobs)
