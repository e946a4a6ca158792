"""Math intrinsics TVM 0.27 forgets to mark vectorizable.

TVM's VectorizeLoop keeps a call vector only if its op has the ``TVectorizable`` attribute;
otherwise it silently turns the whole vectorized loop back into a scalar one. ``tirx.nearbyint``
(round half to even, the rounding of every int8 epilogue) lacks it, though LLVM lowers its vector
form to one instruction (``vroundps``/``vrndscaleps`` on x86, ``frintx`` on arm64). LLVM's SLP
vectorizer re-vectorized most such epilogues, but not all: three of Small's int8 project convs
kept 8-24 scalar roundings per output vector and ran several times slower.
"""

from __future__ import annotations

import tvm

VECTORIZABLE_INTRINSICS = ("tirx.nearbyint",)


def register() -> None:
    """Mark ``VECTORIZABLE_INTRINSICS`` vectorizable (idempotent; process-wide, as TVM's op
    registry is)."""
    for name in VECTORIZABLE_INTRINSICS:
        if not tvm.ir.Op.get(name).get_attr("TVectorizable"):
            tvm.ir.register_op_attr(name, "TVectorizable", True, level=11)


register()
