"""The pipeline from onnxscript's side: our rules as one ``RewriteRuleSet``, the other passes as
onnx_ir passes, and the canonical-form check as a function.

``rewrite(model, pattern_rewrite_rules=rule_set())`` (``onnxscript.rewriter``) applies the rules of
the pipeline's rule passes exactly as ``optimize`` does: same nodes, names, initializers. The set
cannot be a plain ``RewriteRuleSet`` of the same rules. That walks the graph once and tries every
rule at each node in turn, the first that matches wins, so the ordering ``optimize`` relies on
(``rules.apply_rules``: each rule its own sweep) is lost: in ``Min(Max(x, 0), 6)`` the one-sided
``Max -> Clip`` rule fires at the Max before the pair rule, rooted at the Min, is tried, and a
ReLU6 becomes two Clips. Node names are lost too: the library names no replacement node, and the
hooks it offers rules (``RewriteRuleClassBase.setup``/``cleanup``, its graph pre/post visitors)
are called without the graph, so they cannot stamp and inherit names. ``rule_set`` therefore
returns a ``RewriteRuleSet`` whose ``apply_to_model`` (what ``rewrite`` and ``RewritePass`` call)
runs each rule pass as ``optimize`` runs it. Iterating the set gives the rules, commuted variants
included; copied into a new ``RewriteRuleSet`` (``[*rule_set(), *others]``) they are walked once,
as above.

What ``rewrite`` with these rules does not do, and ``optimize`` does: the passes that are not rules.
Without them, rules that need a constant miss the ones an exporter keeps in ``Constant`` or
``Cast(Constant)`` nodes, and the result has no fused-unit annotation, so it is not canonical.
``ir_passes(names)`` gives them as onnx_ir passes: ``BEFORE_RULES`` (upgrade_opset to opset 17;
cleanup: constants to initializers, folding, dead nodes, topological order, unique names, shape
inference; sink_transposes; cleanup) before ``rewrite`` and ``AFTER_RULES`` (fuse_conv_activation,
which annotates the units; cleanup) after it give what ``optimize`` gives, except that the
pipeline's first two rule passes (fuse_layer_norm, unwrap_softmax) run before sink_transposes, here
after it; a MobileNetV3 has neither a LayerNorm nor a Softmax. ``ir_passes()`` is the whole
pipeline, in order. ``rewrite`` also drops unused functions and opset imports; ``optimize`` keeps
them.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx
import onnx_ir as ir
from onnxscript.rewriter import MatchingTracer, RewritePass, RewriteRuleSet

from mnv3compile.errors import NotCanonicalError, UserError
from mnv3compile.passes.base import GraphPass
from mnv3compile.passes.canonical import check_units
from mnv3compile.passes.census import non_canonical
from mnv3compile.passes.registry import PIPELINE, select
from mnv3compile.passes.rules import sweep_rules

_LAST_RULE_PASS = max(i for i, p in enumerate(PIPELINE) if p.rules)
# The passes that are not rules, before and after one rewrite with rule_set() (see the docstring).
BEFORE_RULES: tuple[str, ...] = tuple(p.name for p in PIPELINE[:_LAST_RULE_PASS] if not p.rules)
AFTER_RULES: tuple[str, ...] = tuple(p.name for p in PIPELINE[_LAST_RULE_PASS + 1:])


class PipelineRuleSet(RewriteRuleSet):
    """The rules of rule passes, applied as ``optimize`` applies them: pass by pass, each rule (with
    its commuted variants) its own walk over the main graph, names inherited, dead nodes dropped."""

    def __init__(self, passes: Sequence[GraphPass]):
        self.passes = tuple(passes)
        super().__init__([rule for p in self.passes for sweep in p.rules for rule in sweep_rules(sweep)])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({[p.name for p in self.passes]})"

    def apply_to_model(self, model: ir.Model, *, verbose: int | None = None,
                       tracer: MatchingTracer | None = None) -> int:
        """Rewrite ``model`` in place; returns the number of rewrites. With a ``tracer`` nothing is
        rewritten: the library's one walk of every rule records the attempts. ``verbose`` is not
        passed on."""
        if tracer is not None:
            return super().apply_to_model(model, verbose=verbose, tracer=tracer)
        count = 0
        for graph_pass in self.passes:
            # A fresh graph, as optimize gives each pass: onnx_ir names a node the library's rules
            # create (and none of ours inherits a name for) node_<op>_<n>, n counted per graph.
            model.graph = model.graph.clone()
            count += graph_pass.run(model)[1].rewritten
        return count


def _select(passes: Sequence[str] | None) -> tuple[GraphPass, ...]:
    return PIPELINE if passes is None else select(list(passes)) if passes else ()


def rule_set(passes: Sequence[str] | None = None) -> PipelineRuleSet:
    """The rules of the pipeline's rule passes in pipeline order, or of the named passes in the
    order given, as one set for ``onnxscript.rewriter.rewrite(model, pattern_rewrite_rules=...)``."""
    selected = _select(passes)
    ruleless = [p.name for p in selected if not p.rules]
    if passes is not None and ruleless:
        raise UserError(f"{ruleless[0]!r} has no rewrite rules (its onnx_ir pass is ir_passes([{ruleless[0]!r}])); "
                        f"passes with rules: {', '.join(p.name for p in PIPELINE if p.rules)}")
    return PipelineRuleSet([p for p in selected if p.rules])


class PipelinePass(ir.passes.FunctionalPass):
    """A pass of the pipeline that is not made of rules, as an onnx_ir pass. It runs on a copy
    (upgrade_opset returns a new model in any case); ``modified`` is whether it rewrote anything."""

    def __init__(self, graph_pass: GraphPass):
        super().__init__()
        self.graph_pass = graph_pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.graph_pass.name!r})"

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        result, stats = self.graph_pass.run(model.clone())
        return ir.passes.PassResult(result, stats.rewritten > 0)


def ir_passes(passes: Sequence[str] | None = None) -> list[ir.passes.PassBase]:
    """The pipeline (or the named passes, in the order given) as onnx_ir passes for
    ``ir.passes.PassManager``: a rule pass is onnxscript's ``RewritePass(rule_set([name]))``, the
    others are ``PipelinePass``. ``PassManager(ir_passes())`` does what ``optimize`` does."""
    return [RewritePass(rule_set([p.name])) if p.rules else PipelinePass(p)
            for p in _select(passes)]


def canonical_problems(model: onnx.ModelProto | ir.Model) -> list[str]:
    """Why ``model`` is not in the canonical form (``passes/canonical.py``), empty when it is: the
    non-canonical spellings left (``census.non_canonical``), then the fused-unit problems
    (``canonical.check_units``)."""
    proto = ir.to_proto(model) if isinstance(model, ir.Model) else model
    left = ", ".join(f"{spelling} x{count}" for spelling, count in non_canonical(proto).items())
    return ([f"non-canonical spellings left: {left}"] if left else []) + check_units(proto)


def is_canonical(model: onnx.ModelProto | ir.Model) -> bool:
    return not canonical_problems(model)


def check_canonical(model: onnx.ModelProto | ir.Model) -> None:
    """Raise NotCanonicalError saying what is not canonical: the first problem, and how many more."""
    problems = canonical_problems(model)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise NotCanonicalError(f"the model is not in the canonical form: {problems[0]}{more}")
