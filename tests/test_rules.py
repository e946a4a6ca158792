"""Our layer on onnxscript's rewriter (passes/rules.py): refusals counted by reason, SKIP not
counted, each rule its own sweep in order, names of what a rewrite creates, interiors private,
model outputs keep their names; and the canonical h-sigmoid finder the quantizer uses."""

import numpy as np
import onnx_ir as ir

from mnv3compile.passes import canonical, div_by_constant_to_mul, fold_conv_add, min_max_to_clip
from mnv3compile.passes.base import rule_pass
from mnv3compile.passes.rules import SKIP, Rule, apply_rules
from pass_helpers import apply, assert_same_outputs, graph_model, node, ops, scalar, weights


def test_a_refusal_is_counted_by_its_reason_and_a_skip_is_not():
    model = graph_model([node("Div", ["x", "zero"], "a"), node("Div", ["a", "z"], "y")],
                        {"x": [1, 4], "z": [1, 4]}, ["y"], {"zero": np.zeros(4, np.float32)})
    after, stats = apply(div_by_constant_to_mul.PASS, model)
    assert ops(after) == ["Div", "Div"]
    # Div(x, 0) is refused with its reason; Div(a, z) (no constant) is not this rule's match at all.
    assert (stats.matched, stats.rewritten, stats.refused) == (1, 0, {"Div(x,c): the divisor has a zero": 1})


def test_rules_run_as_sweeps_in_the_order_listed():
    """Pair rule first: Min(Max(x,0),6) is one Clip, not a one-sided Clip of a one-sided Clip."""
    model = graph_model([node("Max", ["x", "zero"], "m"), node("Min", ["m", "six"], "y")], {"x": [1, 4]}, ["y"],
                        {"zero": scalar(0), "six": scalar(6)})
    after, stats = apply(min_max_to_clip.PASS, model)
    assert ops(after) == ["Clip"] and stats.rewritten == 1
    reversed_pass = rule_pass("reversed", "one-sided rules first", list(reversed(min_max_to_clip.RULES)))
    after, _ = apply(reversed_pass, model)
    assert ops(after) == ["Clip", "Clip"]


def test_what_a_rewrite_creates_is_named_after_the_node_it_replaces_under_unused_names():
    model = graph_model([node("Div", ["x", "c"], "y")], {"x": [1, 4]}, ["y"],
                        {"c": scalar(4), "y/reciprocal": scalar(9)})
    after, _ = apply(div_by_constant_to_mul.PASS, model)
    assert [(n.op_type, n.name) for n in after.graph.node] == [("Mul", "y/mul")]
    assert after.graph.node[0].input[1] == "y/reciprocal_2"  # "y/reciprocal" was taken
    assert [o.name for o in after.graph.output] == ["y"]  # a model output keeps its name
    assert_same_outputs(model, after)


def test_a_match_whose_interior_is_read_elsewhere_is_left_alone():
    conv = node("Conv", ["x", "w"], "c")
    model = graph_model([conv, node("Add", ["c", "b"], "y"), node("Relu", ["c"], "r")], {"x": [1, 2, 4, 4]},
                        ["y", "r"], {"w": weights(3, 2, 1, 1), "b": weights(1, 3, 1, 1)})
    after, stats = apply(fold_conv_add.PASS, model)
    assert ops(after) == ["Conv", "Add", "Relu"] and stats.rewritten == 0


class _CountingRule(Rule):
    def pattern(self, op, x):
        return op.Relu(x)

    def refusal(self, x):
        return None if x.name == "x" else SKIP

    def rewrite(self, op, x):
        return op.Clip(x, self.initializer(op, np.array(0, np.float32), self.node_name("zero")),
                       _name=self.node_name("clip"))


def test_a_rule_of_ours_needs_only_pattern_refusal_and_rewrite():
    model = ir.from_proto(graph_model([node("Relu", ["x"], "a"), node("Relu", ["a"], "y")], {"x": [1, 4]}, ["y"], {}))
    stats = apply_rules(model, [_CountingRule.sweep("relu")])
    assert [(n.op_type, n.name) for n in model.graph] == [("Clip", "a/clip"), ("Relu", "y")]
    assert (stats.matched, stats.rewritten) == (1, 1)


def test_the_canonical_hsigmoid_is_found_in_either_operand_order_and_only_with_its_constants():
    inits = {"three": scalar(3), "zero": scalar(0), "six": scalar(6), "sixth": canonical.SIXTH.reshape(())}
    for add_inputs, mul_inputs in ((["x", "three"], ["r", "sixth"]), (["three", "x"], ["sixth", "r"])):
        model = ir.from_proto(graph_model([node("Add", add_inputs, "a"), node("Clip", ["a", "zero", "six"], "r"),
                                           node("Mul", mul_inputs, "y")], {"x": [1, 4]}, ["y"], inits))
        root = next(n for n in model.graph if n.name == "y")
        x, nodes = canonical.hsigmoid_nodes(model, root)
        assert x.name == "x" and [n.name for n in nodes] == ["a", "r", "y"]
    inits["sixth"] = scalar(0.2)
    model = ir.from_proto(graph_model([node("Add", ["x", "three"], "a"), node("Clip", ["a", "zero", "six"], "r"),
                                       node("Mul", ["r", "sixth"], "y")], {"x": [1, 4]}, ["y"], inits))
    assert canonical.hsigmoid_nodes(model, next(n for n in model.graph if n.name == "y")) is None


def test_explain_reports_each_rule_of_a_set_by_its_own_best_attempts():
    """The library's h-swish set holds two rules (with commuted variants): Paddle's spelling is a
    success of HardSwishFusion, and HardSwishFusionFromHardSigmoid's misses are its own line."""
    from mnv3compile.passes import canonicalize_hswish
    from mnv3compile.passes.rules import explain

    inits = {"three": scalar(3), "zero": scalar(0), "six": scalar(6)}
    model = ir.from_proto(graph_model([node("Add", ["x", "three"], "a"), node("Clip", ["a", "zero", "six"], "r"),
                                       node("Mul", ["x", "r"], "m"), node("Div", ["m", "six"], "y")],
                                      {"x": [1, 4]}, ["y"], inits))
    lines = explain(model, canonicalize_hswish.RULES)
    assert lines[:2] == ["HardSwishFusion: 1 x success",
                         "  at Div 'y' [Div 'y', Mul 'm', Clip 'r', Add 'a']"]
    assert lines[2].startswith("HardSwishFusionFromHardSigmoid: ") and "no match" in lines[2]
    assert [n.op_type for n in model.graph] == ["Add", "Clip", "Mul", "Div"]  # explaining changes nothing
