"""ONNX rewrite passes (imported as ``mnv3compile.passes``).

The pipeline is ``registry.PIPELINE``, run by ``optimize.optimize``. For onnxscript and onnx_ir
users (``onnxscript_rules``): ``rule_set()``, the rules as one ``RewriteRuleSet`` for
``onnxscript.rewriter.rewrite``; ``ir_passes()``, the passes as onnx_ir passes, with
``BEFORE_RULES`` and ``AFTER_RULES`` naming the ones to run around the rewrite; and
``check_canonical``/``is_canonical``. They load on first use, so importing this package stays
cheap (no onnxscript).
"""

__all__ = ["AFTER_RULES", "BEFORE_RULES", "check_canonical", "ir_passes", "is_canonical", "rule_set"]


def __getattr__(name: str):
    if name in __all__:
        from mnv3compile.passes import onnxscript_rules

        return getattr(onnxscript_rules, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
