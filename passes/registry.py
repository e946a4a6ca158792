"""The pass pipeline, in order. This list is the whole story of what ``optimize`` does."""

from __future__ import annotations

from mnv3compile.errors import UserError
from mnv3compile.passes import (canonicalize_hswish, cleanup, decompose_batchnorm, div_by_constant_to_mul,
                                fold_batchnorm, fold_conv_add, fold_conv_mul, fold_pad_into_conv, fuse_conv_activation,
                                fuse_layer_norm, fuse_matmul_add, hardsigmoid_to_relu6, min_max_to_clip, reduce_mean_to_global_pool,
                                sink_transposes, transposed_conv_to_depth_to_space, unwrap_softmax, upgrade_opset)
from mnv3compile.passes.base import GraphPass

PIPELINE: tuple[GraphPass, ...] = (
    upgrade_opset.PASS,          # opset 17 spellings (Clip bounds as inputs, HardSwish exists)
    cleanup.PASS,                # constants folded, so biases and BN parameters are initializers
    fuse_layer_norm.PASS,        # LayerNorm in elementwise ops -> one op, before a Transpose can split it
    unwrap_softmax.PASS,         # opset<13 softmax's Flatten/Reshape wrapping over the last axis dropped
    sink_transposes.PASS,        # TF/Keras NHWC graphs: Transposes moved down until they cancel
    cleanup.PASS,                # shapes re-inferred for what sinking changed
    fold_pad_into_conv.PASS,     # TF-style explicit zero Pad -> the Conv's own pads
    fold_conv_mul.PASS,          # PP-LCNetV3's Conv * learnable scale -> Conv with scaled weights
    fold_conv_add.PASS,          # Paddle's Conv + Add(bias) -> Conv with bias
    fuse_matmul_add.PASS,        # Paddle's classifier MatMul + Add(bias) -> Gemm
    reduce_mean_to_global_pool.PASS,  # TF's spatial ReduceMean (NCHW or channels-last) -> GlobalAveragePool
    fold_batchnorm.PASS,         # Conv + BN -> Conv
    decompose_batchnorm.PASS,    # any BN left -> Mul + Add
    transposed_conv_to_depth_to_space.PASS,  # ConvTranspose with kernel = stride -> 1x1 Conv + DepthToSpace
    min_max_to_clip.PASS,        # TF's ReLU6 as Min(Max(x,0),6) -> Clip, which the next passes know
    hardsigmoid_to_relu6.PASS,   # every hard-sigmoid -> Mul(Clip(Add(x,3),0,6),1/6)
    canonicalize_hswish.PASS,    # every h-swish (incl. x * the form above) -> HardSwish
    div_by_constant_to_mul.PASS,  # any other Div by a constant -> Mul (the quantizer has no Div)
    fuse_conv_activation.PASS,   # Conv + bias + activation annotated as one unit
    cleanup.PASS,                # drop what the rewrites left dead, re-infer shapes
)
PASSES_BY_NAME = {p.name: p for p in PIPELINE}


def select(names: list[str] | None) -> tuple[GraphPass, ...]:
    """The pipeline, or the named passes in the order given; unknown names are a UserError."""
    if not names:
        return PIPELINE
    unknown = [n for n in names if n not in PASSES_BY_NAME]
    if unknown:
        raise UserError(f"unknown pass {unknown[0]!r}; passes are: {', '.join(PASSES_BY_NAME)}")
    return tuple(PASSES_BY_NAME[n] for n in names)
