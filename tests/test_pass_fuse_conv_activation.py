import onnx
import pytest

from mnv3compile.passes import canonical
from mnv3compile.passes import fuse_conv_activation as fuse
from pass_helpers import apply, assert_same_outputs, graph_model, node, scalar, weights

SHAPE = {"x": [1, 4, 6, 6]}
W = {"w": weights(4, 4, 3, 3), "b": weights(4)}
CONV = node("Conv", ["x", "w", "b"], "c", pads=[1, 1, 1, 1])
K = {"three": scalar(3), "zero": scalar(0), "six": scalar(6), "sixth": scalar(1 / 6)}


@pytest.mark.parametrize("kind, tail, size", [
    ("relu", [node("Relu", ["c"], "y")], 2),
    ("relu6", [node("Clip", ["c", "zero", "six"], "y")], 2),
    ("hswish", [node("HardSwish", ["c"], "y")], 2),
    ("hsigmoid", [node("Add", ["c", "three"], "a"), node("Clip", ["a", "zero", "six"], "r"),
                  node("Mul", ["r", "sixth"], "y")], 4),
    ("sigmoid", [node("Sigmoid", ["c"], "y")], 2),
    ("none", [node("Add", ["c", "x"], "y")], 1),  # a residual add is not an activation
])
def test_conv_and_activation_form_one_unit(kind, tail, size):
    model = graph_model([CONV, *tail], SHAPE, ["y"], {**W, **K})
    after, stats = apply(fuse.PASS, model)
    units = canonical.read_units(after)
    assert [(u.conv, u.activation, len(u.nodes)) for u in units] == [("c", kind, size)]
    assert units[0].output == ("y" if size > 1 else "c")
    assert canonical.check_units(after) == []
    assert after.ir_version >= 10
    assert_same_outputs(model, after)  # still runs in onnxruntime, unchanged


def test_conv_read_twice_keeps_its_activation_outside():
    model = graph_model([CONV, node("Relu", ["c"], "y"), node("Add", ["c", "y"], "z")], SHAPE, ["z"], W)
    after, _ = apply(fuse.PASS, model)
    assert [(u.activation, u.nodes) for u in canonical.read_units(after)] == [("none", ("c",))]


def test_annotation_survives_save_and_load(tmp_path):
    model = graph_model([CONV, node("HardSwish", ["c"], "y")], SHAPE, ["y"], W)
    after, _ = apply(fuse.PASS, model)
    onnx.save(after, tmp_path / "m.onnx")
    assert canonical.read_units(onnx.load(tmp_path / "m.onnx"))[0].activation == "hswish"


def test_check_units_reports_a_broken_annotation():
    model = graph_model([CONV, node("Relu", ["c"], "y"), node("Conv", ["y", "w", "b"], "d", pads=[1, 1, 1, 1])],
                        SHAPE, ["d"], W)
    after, _ = apply(fuse.PASS, model)
    del after.graph.node[2].metadata_props[:]
    assert canonical.check_units(after) == ["Conv 'd' is in no fused unit"]
