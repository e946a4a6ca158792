"""Our rewrite rules on onnxscript's rewriter (``onnxscript.rewriter``).

The library does the matching: patterns written as op calls, commuted operands, the check that
returns a reason (``MatchResult.fail``), the refusal of a match whose interior is read from
outside, the replacement and the tracer ``optimize --explain`` prints. This module adds only what
our passes need and the library does not do:

- ``Rule.refusal`` returns a reason (or ``SKIP``: the match is not a case of the rule, e.g. already
  in its target form);
  the reasons are counted per pass for the optimize report (the library keeps them only in its
  tracer, which does not rewrite);
- ``apply_rules`` runs each rule as its own sweep, in the order listed: the library tries every
  rule of a set at each node in turn, so e.g. a one-sided ``Max -> Clip`` would fire on the Max of
  ``Min(Max(x, 0), 6)`` before the two-sided rule saw the pair;
- a replacement keeps the name of the node of its own op it replaces (the library's have none),
  and what our rules create is named after the node it replaces (fused units and the quantizer's
  report are read by those names); new initializers under names no initializer has yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import (RULE_NAME_TAG, MatchingTracer, MatchResult, RewriteRule, RewriteRuleClassBase,
                                 RewriteRuleSet)

SKIP = "not a case of this rule"  # already in its target form, or an operand it needs constant is not: not counted


@dataclass
class PassStats:
    matched: int = 0
    rewritten: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # reason -> count

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1


_current_stats: ContextVar[PassStats | None] = ContextVar("mnv3compile_pass_stats", default=None)


class Rule(RewriteRuleClassBase):
    """A rewrite rule: ``pattern`` (the library's), ``refusal`` (why not, or None) and ``rewrite``.

    ``self.root`` is the node the current match is rooted at (the last node of the pattern),
    set before ``refusal`` and ``rewrite`` run.
    """

    def __init__(self, name: str, spelling: str = ""):
        super().__init__(name)
        self.spelling = spelling  # which of its class's spellings this rule matches, where there are several
        self.root: ir.Node | None = None

    @classmethod
    def sweep(cls, *args, **kwargs) -> RewriteRuleSet:
        """The rule with its Add/Mul/Min/Max operands in either order, as one sweep."""
        return RewriteRuleSet([cls.rule(*args, **kwargs)], commute=True)

    def refusal(self, **values) -> str | None:
        return None

    def check(self, context, **values) -> MatchResult:
        self.root = context.root
        reason = self.refusal(**values)
        result = MatchResult()
        if reason is SKIP:
            return result.fail(SKIP)
        stats = _current_stats.get()
        if stats is not None:
            stats.matched += 1
            if reason is not None:
                stats.refuse(f"{self.name}: {reason}")
        return result if reason is None else result.fail(reason)

    def node_name(self, suffix: str) -> str:
        """A name for what a rewrite creates: the root's, then ``/suffix``."""
        return f"{self.root.name or self.root.op_type}/{suffix}"

    def initializer(self, op, array: np.ndarray, name: str) -> ir.Value:
        """A new initializer holding ``array`` under ``name`` (or ``name_2``... when taken)."""
        taken = set(self.root.graph.initializers) | {v.name for v in op.initializers}
        unique, counter = name, 1
        while unique in taken:
            counter += 1
            unique = f"{name}_{counter}"
        return op.initializer(ir.tensor(np.asarray(array), name=unique), name=unique)


Sweep = RewriteRule | RewriteRuleSet  # one pass over the graph: a rule, or a rule's commuted variants


def sweep_rules(sweep: Sweep) -> list[RewriteRule]:
    return list(sweep) if isinstance(sweep, RewriteRuleSet) else [sweep]


# The library gives its replacement nodes no name. Each node is stamped with its name under its
# op type before a sweep; the library merges the stamps of the nodes a match removes into the
# replacement, which then takes the name of the node of its own op it replaces (a BatchNorm
# folded into a Conv keeps the Conv's name: fused units and reports are named after the Convs).
_NAME_OF = "mnv3compile.name_of."


def _stamp_names(graph: ir.Graph) -> None:
    for node in graph:
        node.metadata_props[_NAME_OF + node.op_type] = node.name or ""


def _inherit_names(graph: ir.Graph) -> None:
    """Names from the stamps, then the stamps and the library's provenance (which rule made a
    node, ``RULE_NAME_TAG``) dropped: our models carry none of it."""
    used = {node.name for node in graph}
    for node in graph:
        inherited = node.metadata_props.get(_NAME_OF + node.op_type)
        if inherited and inherited != node.name and inherited not in used:
            used.discard(node.name)
            node.name = inherited
            used.add(inherited)
        for key in [k for k in node.metadata_props if k.startswith(_NAME_OF) or k == RULE_NAME_TAG]:
            del node.metadata_props[key]


def apply_rules(model: ir.Model, sweeps: Sequence[Sweep]) -> PassStats:
    """Each sweep over the main graph, in order."""
    stats = PassStats()
    token = _current_stats.set(stats)
    try:
        for sweep in sweeps:
            _stamp_names(model.graph)
            stats.rewritten += RewriteRuleSet(sweep_rules(sweep)).apply_to_model(model)
            _inherit_names(model.graph)
    finally:
        _current_stats.reset(token)
    # The library's rules have their own checks, which count no matches: a rewrite was one.
    stats.matched = max(stats.matched, stats.rewritten)
    return stats


def explain(model: ir.Model, sweeps: Sequence[Sweep], shown: int = 5) -> list[str]:
    """Per rule, how its best attempts ended (onnxscript's tracer, which changes nothing): the
    matches it would rewrite, the ones its check refuses and why, or the nearest misses. A rule's
    commuted variants are one rule here: the best status any of them reached, each node once."""
    lines = []
    for sweep in sweeps:
        rules = sweep_rules(sweep)
        tracer = MatchingTracer()
        RewriteRuleSet(rules).apply_to_model(model, tracer=tracer)
        attempts: dict[str, list] = {rule.name: [] for rule in rules}
        for rule, infos in tracer.best_matches_map.items():
            attempts[rule.name] += infos
        for name, infos in attempts.items():
            if not infos:
                lines.append(f"{name}: no node starts a match")
                continue
            best = max(info.status for info in infos)
            by_root = {id(info.root_node): info for info in infos if info.status == best}
            status = best.name.lower().replace("_", " ")
            lines.append(f"{name}: {len(by_root)} x {status}" + ("" if status == "success" else " (the nearest attempts)"))
            for info in list(by_root.values())[:shown]:
                nodes = ", ".join(f"{n.op_type} {n.name!r}" for n in info.match_result.nodes)
                reason = "" if status == "success" else f": {info.match_result.reason}"
                lines.append(f"  at {info.root_node.op_type} {info.root_node.name!r}{reason} [{nodes}]")
            if len(by_root) > shown:
                lines.append(f"  ... and {len(by_root) - shown} more")
    return lines
