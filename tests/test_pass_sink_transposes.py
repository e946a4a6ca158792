import numpy as np
import pytest

from mnv3compile.passes import cleanup, sink_transposes
from mnv3compile.passes.optimize import optimize
from mnv3compile.passes.registry import PIPELINE
from pass_helpers import apply, assert_same_outputs, graph_model, node, ops, scalar, weights

TO_NCHW, TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]


def _nhwc_conv(name: str, x: str, cin: int, cout: int, inits: dict, group: int = 1, **attrs) -> list:
    """tf2onnx's spelling of a Keras conv on an NHWC tensor: NCHW conv between two Transposes."""
    inits[f"{name}.w"] = weights(cout, cin // group, *attrs.pop("kernel", (1, 1)))
    inits[f"{name}.b"] = weights(cout)
    return [node("Transpose", [x], f"{name}.nchw", perm=TO_NCHW),
            node("Conv", [f"{name}.nchw", f"{name}.w", f"{name}.b"], f"{name}.conv", group=group, **attrs),
            node("Transpose", [f"{name}.conv"], name, perm=TO_NHWC)]


def _keras_like_block() -> tuple:
    """A MobileNetV3 block as tf2onnx writes a Keras one, NHWC between convs: expand conv, h-swish,
    uneven zero Pad, stride-2 depthwise conv, ReLU, squeeze-excite (spatial ReduceMean, two convs,
    hard-sigmoid spelled Add/Clip/Mul, Mul), project conv, a (1, 1, 1, C) constant Add, pooled
    classifier conv and Reshape."""
    inits = {"pads": np.array([0, 0, 0, 0, 0, 1, 1, 0], np.int64), "three": scalar(3.0), "zero": scalar(0.0),
             "six": scalar(6.0), "sixth": scalar(1 / 6), "shift": weights(1, 1, 1, 8), "shape": np.array([1, 10])}
    nodes = [*_nhwc_conv("expand", "x", 4, 16, inits),
             node("HardSwish", ["expand"], "hswish"),
             node("Pad", ["hswish", "pads"], "padded"),
             *_nhwc_conv("dw", "padded", 16, 16, inits, group=16, kernel=(3, 3), strides=[2, 2]),
             node("Relu", ["dw"], "relu"),
             node("ReduceMean", ["relu"], "pool", axes=[1, 2], keepdims=1),
             *_nhwc_conv("fc1", "pool", 16, 8, inits),
             node("Relu", ["fc1"], "fc1.relu"),
             *_nhwc_conv("fc2", "fc1.relu", 8, 16, inits),
             node("Add", ["fc2", "three"], "hs.add"), node("Clip", ["hs.add", "zero", "six"], "hs.clip"),
             node("Mul", ["hs.clip", "sixth"], "hs.scale"),
             node("Mul", ["relu", "hs.scale"], "excited"),
             *_nhwc_conv("project", "excited", 16, 8, inits),
             node("Add", ["project", "shift"], "shifted"),
             node("ReduceMean", ["shifted"], "gap", axes=[1, 2], keepdims=1),
             *_nhwc_conv("logits", "gap", 8, 10, inits),
             node("Reshape", ["logits", "shape"], "y")]
    return graph_model(nodes, {"x": [1, 12, 12, 4]}, ["y"], inits)


def test_a_keras_block_keeps_only_the_input_transpose():
    model = _keras_like_block()
    assert ops(model).count("Transpose") == 12
    shaped, _ = apply(cleanup.PASS, model)  # shapes known: the classifier's last Transpose only relabels them
    after, stats = apply(sink_transposes.PASS, shaped)
    assert stats.rewritten > 0
    transposes = [n for n in after.graph.node if n.op_type == "Transpose"]
    assert [(t.input[0], list(t.attribute[0].ints)) for t in transposes] == [("x", TO_NCHW)]
    assert_same_outputs(model, after)


def test_in_the_pipeline_the_block_becomes_what_the_quantizer_knows():
    """After sinking, the pipeline's later passes see NCHW: the Pad folds into the depthwise conv,
    the means become GlobalAveragePool, the hard-sigmoid a HardSigmoid-free canonical form."""
    model = _keras_like_block()
    optimized, _ = optimize(model, PIPELINE)
    kinds = ops(optimized)
    assert kinds.count("Transpose") == 1 and "Pad" not in kinds and "ReduceMean" not in kinds
    assert kinds.count("GlobalAveragePool") == 2
    assert_same_outputs(model, optimized, rtol=1e-4)


@pytest.mark.parametrize("shape", [(8,), (1, 1, 1, 8), (1, 5, 1, 8)], ids=["channels", "nhwc-channels", "rows"])
def test_a_constant_operand_is_transposed_once(shape):
    inits = {"c": weights(*shape), "w": weights(4, 8, 1, 1)}
    model = graph_model([node("Transpose", ["x"], "t", perm=TO_NHWC), node("Mul", ["t", "c"], "m"),
                         node("Transpose", ["m"], "nchw", perm=TO_NCHW), node("Conv", ["nchw", "w"], "y")],
                        {"x": [1, 8, 5, 6]}, ["y"], inits)
    after, _ = apply(sink_transposes.PASS, model)
    assert ops(after) == ["Mul", "Conv"]
    assert_same_outputs(model, after)


def test_transposes_of_different_permutations_meet_and_stay():
    model = graph_model([node("Transpose", ["a"], "ta", perm=TO_NHWC), node("Transpose", ["b"], "tb", perm=[0, 1, 3, 2]),
                         node("Add", ["ta", "tb"], "y")], {"a": [1, 4, 4, 4], "b": [1, 4, 4, 4]}, ["y"], {})
    after, stats = apply(sink_transposes.PASS, model)
    assert ops(after) == ops(model) and stats.rewritten == 0


def test_a_transpose_that_is_a_graph_output_stays_and_the_output_keeps_its_name():
    model = graph_model([node("Transpose", ["x"], "t", perm=TO_NHWC), node("Relu", ["t"], "y")],
                        {"x": [1, 3, 4, 5]}, ["y"], {})
    after, _ = apply(sink_transposes.PASS, model)
    assert ops(after) == ["Relu", "Transpose"] and [o.name for o in after.graph.output] == ["y"]
    assert_same_outputs(model, after)


def test_a_mean_without_keepdims_is_left_alone():
    model = graph_model([node("Transpose", ["x"], "t", perm=TO_NHWC),
                         node("ReduceMean", ["t"], "y", axes=[1, 2], keepdims=0)], {"x": [1, 3, 4, 5]}, ["y"], {})
    after, stats = apply(sink_transposes.PASS, model)
    assert ops(after) == ["Transpose", "ReduceMean"] and stats.rewritten == 0


def test_a_graph_where_sinking_would_add_transposes_is_left_unchanged():
    """The Transpose also feeds a Conv (not layout-free): moving it below the Relu would keep it
    and add a second one after the Relu."""
    model = graph_model([node("Transpose", ["x"], "t", perm=[0, 3, 1, 2]), node("Relu", ["t"], "r"),
                         node("Conv", ["t", "w"], "c")], {"x": [1, 5, 5, 4]}, ["r", "c"], {"w": weights(3, 4, 1, 1)})
    after, stats = apply(sink_transposes.PASS, model)
    assert ops(after) == ops(model) and stats.rewritten == 0
    assert stats.refused == {"moving them would add Transposes": 1}
    assert_same_outputs(model, after)
