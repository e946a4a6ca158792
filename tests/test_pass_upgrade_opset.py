from mnv3compile.passes import upgrade_opset
from pass_helpers import apply, assert_same_outputs, graph_model, node, ops, scalar


def test_opset_11_model_is_upgraded_to_17():
    model = graph_model([node("Add", ["x", "three"], "a"), node("Clip", ["a", "zero", "six"], "c"),
                         node("HardSigmoid", ["c"], "y", alpha=0.2, beta=0.5)],
                        {"x": [1, 4, 3, 3]}, ["y"], {"three": scalar(3), "zero": scalar(0), "six": scalar(6)}, opset=11)
    after, stats = apply(upgrade_opset.PASS, model)
    assert after.opset_import[0].version == 17 and stats.rewritten == 1
    assert ops(after) == ["Add", "Clip", "HardSigmoid"]
    assert_same_outputs(model, after)


def test_opset_17_is_left_alone():
    model = graph_model([node("Relu", ["x"], "y")], {"x": [1, 2]}, ["y"], {})
    after, stats = apply(upgrade_opset.PASS, model)
    assert stats.rewritten == 0 and after.opset_import[0].version == 17
