import pytest

from mnv3compile.passes import canonicalize_hswish, hardsigmoid_to_relu6
from pass_helpers import apply, assert_same_outputs, graph_model, node, ops, scalar

SHAPE = {"x": [1, 4, 5, 5]}
K = {"three": scalar(3), "zero": scalar(0), "six": scalar(6), "sixth": scalar(1 / 6)}
RELU6 = [node("Add", ["x", "three"], "a"), node("Clip", ["a", "zero", "six"], "r")]

SPELLINGS = {
    "x*(relu6(x+3)*1/6)": RELU6 + [node("Mul", ["r", "sixth"], "h"), node("Mul", ["x", "h"], "y")],
    "(relu6(x+3)*1/6)*x": RELU6 + [node("Mul", ["sixth", "r"], "h"), node("Mul", ["h", "x"], "y")],
    "(x*relu6(x+3))*1/6": RELU6 + [node("Mul", ["x", "r"], "m"), node("Mul", ["m", "sixth"], "y")],
    "(relu6(x+3)*x)/6": RELU6 + [node("Mul", ["r", "x"], "m"), node("Div", ["m", "six"], "y")],
    "x*(relu6(x+3)/6)": RELU6 + [node("Div", ["r", "six"], "h"), node("Mul", ["x", "h"], "y")],
    "x*HardSigmoid(x)": [node("HardSigmoid", ["x"], "h", alpha=1 / 6, beta=0.5), node("Mul", ["x", "h"], "y")],
}


@pytest.mark.parametrize("name", SPELLINGS)
def test_every_spelling_becomes_one_hardswish(name):
    model = graph_model(SPELLINGS[name], SHAPE, ["y"], K)
    after, stats = apply(canonicalize_hswish.PASS, model)
    assert ops(after) == ["HardSwish"] and stats.rewritten == 1
    assert after.graph.output[0].name == "y"
    assert_same_outputs(model, after)


def test_after_hardsigmoid_pass_too():
    """HardSigmoid(x) * x through the pipeline order: first h-sigmoid, then h-swish."""
    model = graph_model(SPELLINGS["x*HardSigmoid(x)"], SHAPE, ["y"], {})
    mid, _ = apply(hardsigmoid_to_relu6.PASS, model)
    after, _ = apply(canonicalize_hswish.PASS, mid)
    assert ops(after) == ["HardSwish"]
    assert_same_outputs(model, after)


@pytest.mark.parametrize("nodes, outputs", [
    # x * hsigmoid(z): a squeeze-excite gate, not an h-swish
    ([node("Add", ["z", "three"], "a"), node("Clip", ["a", "zero", "six"], "r"), node("Mul", ["r", "sixth"], "h"),
      node("Mul", ["x", "h"], "y")], ["y"]),
    # HardSigmoid with Paddle's slope is not h-swish's
    ([node("HardSigmoid", ["x"], "h", alpha=0.2, beta=0.5), node("Mul", ["x", "h"], "y")], ["y"]),
    # divided by 5
    (RELU6 + [node("Mul", ["x", "r"], "m"), node("Div", ["m", "five"], "y")], ["y"]),
    # the inner relu6 is read by someone else too
    (RELU6 + [node("Mul", ["x", "r"], "m"), node("Div", ["m", "six"], "y")], ["y", "r"]),
])
def test_look_alikes_are_not_rewritten(nodes, outputs):
    model = graph_model(nodes, {**SHAPE, "z": [1, 4, 5, 5]}, outputs, {**K, "five": scalar(5)})
    after, stats = apply(canonicalize_hswish.PASS, model)
    assert ops(after) == ops(model) and stats.rewritten == 0
