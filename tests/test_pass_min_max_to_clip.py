import numpy as np
import pytest

from mnv3compile.passes import min_max_to_clip
from mnv3compile.passes.optimize import optimize
from mnv3compile.passes.registry import PIPELINE
from pass_helpers import apply, assert_same_outputs, graph_model, node, ops, scalar


@pytest.mark.parametrize("nodes", [
    [node("Max", ["x", "zero"], "m"), node("Min", ["m", "six"], "y")],
    [node("Min", ["six", "x"], "m"), node("Max", ["m", "zero"], "y")],
], ids=["min(max)", "max(min), operands swapped"])
def test_relu6_spelled_with_min_and_max_is_a_clip(nodes):
    model = graph_model(nodes, {"x": [1, 4, 5, 5]}, ["y"], {"zero": scalar(0.0), "six": scalar(6.0)})
    after, stats = apply(min_max_to_clip.PASS, model)
    assert ops(after) == ["Clip"] and stats.rewritten == 1
    assert_same_outputs(model, after)


@pytest.mark.parametrize("op_type", ["Max", "Min"])
def test_one_sided_bound_is_a_one_sided_clip(op_type):
    model = graph_model([node(op_type, ["x", "b"], "y")], {"x": [1, 4, 5, 5]}, ["y"], {"b": scalar(0.5)})
    after, _ = apply(min_max_to_clip.PASS, model)
    assert ops(after) == ["Clip"]
    assert_same_outputs(model, after)


def test_crossed_bounds_and_tensors_are_left_alone():
    crossed = graph_model([node("Max", ["x", "six"], "m"), node("Min", ["m", "zero"], "y")], {"x": [1, 4, 5, 5]},
                          ["y"], {"zero": scalar(0.0), "six": scalar(6.0)})
    after, stats = apply(min_max_to_clip.PASS, crossed)
    assert "Min(Max(x,lo),hi): the lower bound is above the upper one (not a clip)" in stats.refused
    tensor = graph_model([node("Max", ["x", "t"], "y")], {"x": [1, 4, 5, 5]}, ["y"],
                         {"t": np.ones((1, 4, 1, 1), np.float32)})
    after, stats = apply(min_max_to_clip.PASS, tensor)
    assert ops(after) == ["Max"] and stats.refused == {"Max(x,lo): the bound is not a scalar": 1}


def test_hswish_written_with_min_max_and_div_becomes_hardswish():
    """x * min(max(x + 3, 0), 6) / 6, as TensorFlow exports it: one HardSwish after optimize."""
    model = graph_model([node("Conv", ["x", "w", "b"], "c"), node("Add", ["c", "three"], "a"),
                         node("Max", ["a", "zero"], "m"), node("Min", ["m", "six"], "r"),
                         node("Mul", ["c", "r"], "p"), node("Div", ["p", "six"], "y")],
                        {"x": [1, 3, 6, 6]}, ["y"],
                        {"w": np.ones((4, 3, 1, 1), np.float32) * 0.3, "b": np.zeros(4, np.float32),
                         "three": scalar(3.0), "zero": scalar(0.0), "six": scalar(6.0)})
    after, _ = optimize(model, PIPELINE, check_numerics=True)
    assert sorted(ops(after)) == ["Conv", "HardSwish"]
