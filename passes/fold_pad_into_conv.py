"""fold_pad_into_conv: ``Conv(Pad(x, pads, 0))`` -> ``Conv(x)`` with the pads added to its own.

TF-converted models (EfficientNet-Lite's "same" padding) pad explicitly before the convolution.
This is onnxscript's kept rule (``fuse_pad_into_conv_rule``): exact when the Pad is constant-mode
with value 0, pads only the spatial axes (its ``axes`` input included), by non-negative amounts,
and the Conv has no ``auto_pad``. This file exists to put it in the pipeline as one named pass.
"""

from __future__ import annotations

from onnxscript.rewriter.rules.common import fuse_pad_into_conv_rule

from mnv3compile.passes.base import rule_pass

RULES = [fuse_pad_into_conv_rule]
PASS = rule_pass("fold_pad_into_conv", "fold a zero Pad before a Conv into the Conv's pads", RULES)
