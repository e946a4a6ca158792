"""The Relax pipeline, as a list: what runs in which order is visible in one place.

TVM's ``relax.build`` alone does no fusion on CPU (181 kernels for Small); this list folds what BN
is left, decomposes inference ops, folds constants, legalizes to TIR and fuses, so each Conv with
its bias and activation becomes one kernel (52 for Small), and inlines each kernel's elementwise
stages so its epilogue is one loop nest.

``mnv3compile.tvm.pipeline`` (mnv3compile/tvm/passes.py) is this list framed as 'build' runs it:
the integer lowering before, the tuning database and the kernel templates after.
"""

from __future__ import annotations

from collections.abc import Callable


def relax_passes(integer_only: bool = False) -> list[tuple[str, Callable]]:
    """The passes in order; ``integer_only`` (the fixed-point int8 lowering) leaves out the one
    that puts integer arithmetic on float32 registers (exactly: FloatAccumulation)."""
    from tvm import relax

    from mnv3compile.relax.float_accumulation import to_float_accumulation
    from mnv3compile.relax.dot_products import to_dot_products
    from mnv3compile.relax.explicit_padding import to_explicit_padding
    from mnv3compile.schedules.kernels.inline import inline_module
    from mnv3compile.relax.int8_round_trips import skip_int8_round_trips
    from mnv3compile.relax.channels_last import to_channels_last
    from mnv3compile.relax.packed_gemv import to_packed_gemv
    from mnv3compile.relax.reciprocal_multiply import to_reciprocal_multiply
    from mnv3compile.relax.separable_resize import to_separable_resize
    from mnv3compile.relax.vector_channels import to_vector_channels
    from mnv3compile.relax.narrow_multipliers import narrow_multipliers

    return [
        ("FoldBatchnormToConv2D", relax.transform.FoldBatchnormToConv2D),  # if any BN survived our passes
        ("DecomposeOpsForInference", relax.transform.DecomposeOpsForInference),
        # Bilinear resizes (LR-ASPP) in two passes, rows then columns (mnv3compile/relax/separable_resize.py),
        # in NCHW: before the layout pass.
        ("SeparableResize", module_pass("SeparableResize", to_separable_resize)),
        # One layout for the whole network (mnv3compile/relax/channels_last.py); weights transposed by FoldConstant.
        ("ChannelsLast", module_pass("ChannelsLast", to_channels_last)),
        ("FoldConstant", relax.transform.FoldConstant),  # dequantized weights become constants here
        # A float32 stem's padding as an op of its own, fused with the input's transpose, not an
        # if_then_else in each of its taps (mnv3compile/relax/explicit_padding.py).
        ("ExplicitPadding", module_pass("ExplicitPadding", to_explicit_padding)),
        # Fixed-point multipliers as int32 constants (32 x 32 -> 64 multiplies); after FoldConstant,
        # which would widen them back.
        ("NarrowMultipliers", module_pass("NarrowMultipliers", narrow_multipliers)),
        # Convs of a channel count no vector divides (a segmenter's 19 classes) on zero-padded output
        # channels, sliced after, so a template (or a dot product) takes them (mnv3compile/relax/vector_channels.py).
        ("VectorChannels", module_pass("VectorChannels", to_vector_channels)),
        # int8 pointwise convs and the classifier on vpdpbusd / sdot, weights packed once
        # (mnv3compile/relax/dot_products.py); a no-op on targets without a 4-deep int8 dot product.
        ("DotProducts", module_pass("DotProducts", to_dot_products)),
        # the other int8 window convs (depthwise, a stem without dot product) on float32 FMAs,
        # exactly (mnv3compile/relax/float_accumulation.py).
        *([] if integer_only else [("FloatAccumulation", module_pass("FloatAccumulation", to_float_accumulation))]),
        # GEMVs (the classifier; int8 ones where no dot product took them) on weights packed per output
        # vector, read as sequential streams (mnv3compile/relax/packed_gemv.py).
        ("PackedGemv", module_pass("PackedGemv", to_packed_gemv)),
        # h-swish's "/ 6" (and any float division by a constant) as a multiply: a vdivps per output
        # vector cost more than the FMAs around it (mnv3compile/relax/reciprocal_multiply.py).
        ("ReciprocalMultiply", module_pass("ReciprocalMultiply", to_reciprocal_multiply)),
        # An int8 rounding read back inside what becomes one kernel (a projection conv and its
        # residual add) taken as the float it came from, exactly (mnv3compile/relax/int8_round_trips.py);
        # the fixed-point lowering has no float values to take.
        *([] if integer_only else [("Int8RoundTrips", module_pass("Int8RoundTrips", skip_int8_round_trips))]),
        ("LegalizeOps", relax.transform.LegalizeOps),
        ("AnnotateTIROpPattern", relax.transform.AnnotateTIROpPattern),
        ("FoldConstant (TIR)", relax.transform.FoldConstant),
        ("FuseOps", relax.transform.FuseOps),
        ("FuseTIR", relax.transform.FuseTIR),
        # The default schedule: each kernel's elementwise stages inlined (schedules/kernels/inline.py).
        ("InlineElementwise", module_pass("InlineElementwise", inline_module)),
    ]


def module_pass(name: str, rewrite: Callable) -> Callable:
    """A pass factory (as ``relax.transform.X`` is one) for our Python rewrite ``module -> module``."""
    import tvm

    return lambda: tvm.transform.module_pass(lambda module, _context: rewrite(module), opt_level=0, name=name)


def run_pipeline(module, target, integer_only: bool = False, instruments: list | None = None):
    """This list's passes on ``module``, as ``run_passes`` runs them."""
    return run_passes(module, [make() for _, make in relax_passes(integer_only)], target, instruments)


def run_passes(module, passes: list, target, instruments: list | None = None):
    """``passes`` on ``module`` as 'build' runs them: one ``tvm.transform.Sequential`` under ``with
    target:`` in a ``PassContext`` of opt level 3 (with TVM's pass instruments, e.g. timing, when
    given)."""
    import tvm

    sequence = tvm.transform.Sequential(passes, name="mnv3compile")
    with target, tvm.transform.PassContext(opt_level=3, instruments=instruments or []):
        return sequence(module)


def kernel_names(module) -> list[str]:
    """The TIR functions the module will run (one per kernel)."""
    from tvm import tirx  # TVM 0.27 renamed tvm.tir to tvm.tirx

    return sorted(gv.name_hint for gv, func in module.functions.items() if isinstance(func, tirx.PrimFunc))
