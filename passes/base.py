"""What a pass is: a named, documented function from an ONNX model (onnx_ir) to a changed one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import onnx_ir as ir
from onnx_ir.passes import common as ir_passes

from mnv3compile.passes.rules import PassStats, Sweep, apply_rules


@dataclass(frozen=True)
class GraphPass:
    """One rewrite step. ``run`` may change the model in place or return a new one; ``rules`` are
    its rewrite rules when it is made of them (``optimize --explain`` traces them)."""

    name: str
    summary: str
    run: Callable[[ir.Model], tuple[ir.Model, PassStats]]
    rules: tuple[Sweep, ...] = ()


def rule_pass(name: str, summary: str, rules: Sequence[Sweep]) -> GraphPass:
    """A pass that applies ``rules`` (in order, one sweep each) over the main graph."""

    def run(model: ir.Model) -> tuple[ir.Model, PassStats]:
        stats = apply_rules(model, rules)
        # A rewrite may leave a producer unread (e.g. a Conv whose scaled copy replaced it).
        ir_passes.RemoveUnusedNodesPass()(model)
        return model, stats

    return GraphPass(name, summary, run, tuple(rules))
