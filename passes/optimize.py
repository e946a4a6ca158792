"""Run a list of passes over a model, checking each one: ONNX validity always, numbers on request."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import onnx
import onnx_ir as ir

from mnv3compile.passes import verify
from mnv3compile.passes.base import GraphPass


class PassVerificationError(Exception):
    """A pass changed the model's outputs by more than the tolerance: the pipeline refuses it."""

    def __init__(self, pass_name: str, errors: list[verify.OutputError], tolerance: float):
        worst = max(errors, key=lambda e: e.max_rel)
        super().__init__(f"pass {pass_name!r} changed output {worst.name!r} by {worst.max_rel:.3g} relative "
                         f"(max abs {worst.max_abs:.3g}), over the tolerance {tolerance:g}; refused")
        self.pass_name, self.errors = pass_name, errors


@dataclass
class PassReport:
    name: str
    matched: int
    rewritten: int
    refused: dict[str, int]
    ops_before: dict[str, int]
    ops_after: dict[str, int]
    seconds: float
    errors: list[verify.OutputError] | None = None  # against the model before this pass


@dataclass
class OptimizeReport:
    passes: list[PassReport] = field(default_factory=list)
    errors: list[verify.OutputError] | None = None  # final model against the input model

    @property
    def ops_before(self) -> dict[str, int]:
        return self.passes[0].ops_before if self.passes else {}

    @property
    def ops_after(self) -> dict[str, int]:
        return self.passes[-1].ops_after if self.passes else {}

    def to_json(self) -> dict:
        def errs(errors):
            return None if errors is None else [e.__dict__ for e in errors]

        return {"passes": [{**p.__dict__, "errors": errs(p.errors)} for p in self.passes],
                "ops_before": self.ops_before, "ops_after": self.ops_after, "errors": errs(self.errors)}


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    return dict(sorted(Counter(n.op_type for n in model.graph.node).items()))


def optimize(model: onnx.ModelProto, passes: Sequence[GraphPass], check_numerics: bool = False,
             tolerance: float = verify.DEFAULT_TOLERANCE, seed: int = 0,
             on_pass: Callable[[GraphPass], None] | None = None) -> tuple[onnx.ModelProto, OptimizeReport]:
    """Apply ``passes`` in order. With ``check_numerics`` every pass is run against the model before
    it in onnxruntime, and a pass over ``tolerance`` raises PassVerificationError."""
    report = OptimizeReport()
    feeds = verify.random_feeds(model, seed) if check_numerics else None
    original = previous = verify.run(model, feeds) if check_numerics else None
    current = model
    for graph_pass in passes:
        if on_pass is not None:
            on_pass(graph_pass)
        start = time.perf_counter()
        ir_model, stats = graph_pass.run(ir.from_proto(current))
        result = ir.to_proto(ir_model)
        try:
            onnx.checker.check_model(result)
        except onnx.checker.ValidationError as exc:  # a bug in the pass, not in the user's model
            raise RuntimeError(f"pass {graph_pass.name!r} produced an invalid model: {exc}") from exc
        entry = PassReport(graph_pass.name, stats.matched, stats.rewritten, dict(stats.refused),
                           op_counts(current), op_counts(result), time.perf_counter() - start)
        if check_numerics:
            outputs = verify.run(result, feeds)
            entry.errors = verify.compare(previous, outputs)
            if any(e.max_rel > tolerance for e in entry.errors):
                raise PassVerificationError(graph_pass.name, entry.errors, tolerance)
            previous = outputs
        report.passes.append(entry)
        current = result
    if check_numerics:
        report.errors = verify.compare(original, previous)
    return current, report


def explain(model: onnx.ModelProto, passes: Sequence[GraphPass], name: str) -> list[str]:
    """Why the rules of pass ``name`` match or not where it runs in ``passes``: the model is taken
    through the passes before it, then onnxscript's tracer reports each rule's best (near-)matches."""
    from mnv3compile.errors import UserError
    from mnv3compile.passes.rules import explain as trace_rules

    names = [p.name for p in passes]
    if name not in names:
        raise UserError(f"--explain {name}: not a pass of this run; it runs: {', '.join(names)}")
    index = names.index(name)
    target = passes[index]
    if not target.rules:
        ruled = sorted({p.name for p in passes if p.rules})
        raise UserError(f"--explain {name}: that pass walks the graph and has no rewrite rules to trace; "
                        f"passes with rules: {', '.join(ruled)}")
    before, _ = optimize(model, passes[:index])
    return trace_rules(ir.from_proto(before), target.rules)
