import numpy as np
import onnx
import pytest

from mnv3compile.passes import hardsigmoid_to_relu6
from pass_helpers import apply, assert_same_outputs, graph_model, node, ops, scalar, weights

CANONICAL = ["Add", "Clip", "Mul"]
SHAPE = {"x": [1, 4, 5, 5]}


def _constants(model) -> list[float]:
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    return [float(inits[n.input[1]]) for n in model.graph.node if n.op_type in ("Add", "Mul") and n.input[1] in inits]


@pytest.mark.parametrize("name, nodes, inits", [
    ("HardSigmoid(1/6, 1/2)", [node("HardSigmoid", ["x"], "y", alpha=1 / 6, beta=0.5)], {}),
    ("Clip(x+3,0,6)/6", [node("Add", ["x", "three"], "a"), node("Clip", ["a", "zero", "six"], "c"),
                         node("Div", ["c", "six"], "y")], {"three": scalar(3), "zero": scalar(0), "six": scalar(6)}),
    ("0.1666667*Clip(3+x,0,6)", [node("Add", ["three", "x"], "a"), node("Clip", ["a", "zero", "six"], "c"),
                                 node("Mul", ["k", "c"], "y")],
     {"three": scalar(3), "zero": scalar(0), "six": scalar(6), "k": scalar(0.1666667)}),
])
def test_mobilenet_hard_sigmoids_become_the_canonical_form(name, nodes, inits):
    model = graph_model(nodes, SHAPE, ["y"], inits)
    after, stats = apply(hardsigmoid_to_relu6.PASS, model)
    assert ops(after) == CANONICAL, name
    assert _constants(after) == [3.0, float(np.float32(1 / 6))]
    assert stats.rewritten == 1
    assert_same_outputs(model, after)


def test_paddle_hardsigmoid_folds_slope_into_the_conv():
    model = graph_model([node("Conv", ["x", "w", "b"], "c"), node("HardSigmoid", ["c"], "y", alpha=0.2, beta=0.5)],
                        SHAPE, ["y"], {"w": weights(4, 4, 1, 1), "b": weights(4)})
    after, _ = apply(hardsigmoid_to_relu6.PASS, model)
    assert ops(after) == ["Conv", *CANONICAL]
    assert_same_outputs(model, after)


@pytest.mark.parametrize("nodes, inits", [
    ([node("HardSigmoid", ["x"], "y")], {}),  # defaults alpha 0.2, beta 0.5
    ([node("Mul", ["x", "a"], "m"), node("Add", ["m", "b"], "s"), node("Clip", ["s", "lo", "hi"], "y")],
     {"a": scalar(0.2), "b": scalar(0.5), "lo": scalar(0), "hi": scalar(1)}),
])
def test_general_slope_without_a_conv_becomes_explicit_arithmetic(nodes, inits):
    model = graph_model(nodes, SHAPE, ["y"], inits)
    after, _ = apply(hardsigmoid_to_relu6.PASS, model)
    assert ops(after) == ["Mul", *CANONICAL]  # y = 1.2 x (+ 6*0.5 - 3 = 0), then the canonical form
    assert_same_outputs(model, after)


def test_general_slope_and_offset():
    model = graph_model([node("HardSigmoid", ["x"], "y", alpha=0.25, beta=0.6)], SHAPE, ["y"], {})
    after, _ = apply(hardsigmoid_to_relu6.PASS, model)
    assert ops(after) == ["Mul", "Add", *CANONICAL]  # y = 1.5 x + 0.6
    assert_same_outputs(model, after)


def test_canonical_form_is_not_touched():
    model = graph_model([node("Add", ["x", "three"], "a"), node("Clip", ["a", "zero", "six"], "c"),
                         node("Mul", ["c", "k"], "y")], SHAPE, ["y"],
                        {"three": scalar(3), "zero": scalar(0), "six": scalar(6), "k": scalar(1 / 6)})
    after, stats = apply(hardsigmoid_to_relu6.PASS, model)
    assert stats.matched == 0 and after.graph.node[2].name == "y"


@pytest.mark.parametrize("nodes, inits", [
    ([node("Add", ["x", "three"], "a"), node("Clip", ["a", "zero", "five"], "c"), node("Div", ["c", "six"], "y")],
     {"three": scalar(3), "zero": scalar(0), "five": scalar(5), "six": scalar(6)}),  # other bounds
    ([node("Clip", ["x", "zero", "six"], "c"), node("Div", ["c", "six"], "y")],
     {"zero": scalar(0), "six": scalar(6)}),  # no +3
    ([node("Add", ["x", "three"], "a"), node("Clip", ["a", "zero", "six"], "y"), node("Div", ["y", "six"], "z")],
     {"three": scalar(3), "zero": scalar(0), "six": scalar(6)}),  # the Clip is also a graph output
])
def test_look_alikes_are_not_rewritten(nodes, inits):
    model = graph_model(nodes, SHAPE, [n.output[0] for n in nodes if n.output[0] in ("y", "z")], inits)
    after, stats = apply(hardsigmoid_to_relu6.PASS, model)
    assert ops(after) == ops(model) and stats.rewritten == 0
