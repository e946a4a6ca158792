"""fold_batchnorm: ``BatchNormalization(Conv(x, W[, b]))`` -> ``Conv(x, W', b')``; the same after a
ConvTranspose (PaddleOCR's DB head, grouped or not) and a Gemm.

These are onnxscript's kept rules (``fuse_batchnorm_into_conv_rule`` and its ConvTranspose and
Gemm counterparts): with k = scale / sqrt(var + eps) per output channel, W' = W * k along the
output channels and b' = (b - mean) * k + shift. Only a Conv whose output nothing else reads and
whose weights no other node shares is folded; any op in between (Relu, Reshape...) makes the fold
inexact and is left alone. This file exists to put them in the pipeline as one named pass.
"""

from __future__ import annotations

from onnxscript.rewriter.rules.common import (fuse_batchnorm_into_conv_rule, fuse_batchnorm_into_conv_transpose_rule,
                                              fuse_batchnorm_into_gemm_rule)

from mnv3compile.passes.base import rule_pass

RULES = [fuse_batchnorm_into_conv_rule, fuse_batchnorm_into_conv_transpose_rule, fuse_batchnorm_into_gemm_rule]
PASS = rule_pass("fold_batchnorm", "fold BatchNormalization into the Conv, ConvTranspose or Gemm before it", RULES)
