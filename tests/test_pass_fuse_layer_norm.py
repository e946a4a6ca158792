import pytest

from mnv3compile.passes import fuse_layer_norm
from pass_helpers import apply, assert_same_outputs, graph_model, node, ops, scalar, weights

SHAPE = [1, 40, 64]  # tokens x channels, as PP-OCRv4's SVTR neck


def _layer_norm_nodes(x: str, square: str, inverse: bool, affine: bool, axes=(-1,), keepdims=1) -> list:
    nodes = [node("ReduceMean", [x], "mean", axes=list(axes), keepdims=keepdims),
             node("Sub", [x, "mean"], "d")]
    nodes.append(node("Pow", ["d", "two"], "sq") if square == "pow" else node("Mul", ["d", "d"], "sq"))
    nodes += [node("ReduceMean", ["sq"], "var", axes=list(axes), keepdims=keepdims),
              node("Add", ["var", "eps"], "var_eps"), node("Sqrt", ["var_eps"], "std")]
    if inverse:
        nodes += [node("Reciprocal", ["std"], "inv"), node("Mul", ["inv", "d"], "normalized")]
    else:
        nodes.append(node("Div", ["d", "std"], "normalized"))
    if affine:
        nodes += [node("Mul", ["gamma", "normalized"], "scaled"), node("Add", ["scaled", "beta"], "y")]
    return nodes


def _model(square="pow", inverse=False, affine=True, axes=(-1,), gamma_shape=(SHAPE[-1],), keepdims=1, shape=SHAPE):
    nodes = _layer_norm_nodes("x", square, inverse, affine, axes, keepdims)
    inits = {"two": scalar(2.0), "eps": scalar(1e-5)}
    if affine:
        inits["gamma"] = weights(*gamma_shape) + 1.0
        inits["beta"] = weights(*gamma_shape)
    return graph_model(nodes, {"x": shape}, [nodes[-1].output[0]], inits)


@pytest.mark.parametrize("square", ["pow", "mul"])
@pytest.mark.parametrize("inverse", [False, True], ids=["div", "reciprocal"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
def test_every_spelling_becomes_one_layer_normalization(square, inverse, affine):
    model = _model(square, inverse, affine)
    after, stats = apply(fuse_layer_norm.PASS, model)
    assert ops(after) == ["LayerNormalization"] and stats.rewritten == 1
    assert_same_outputs(model, after)
    again, stats = apply(fuse_layer_norm.PASS, after)
    assert ops(again) == ["LayerNormalization"] and stats.matched == 0


def test_normalizing_the_last_two_axes_with_a_broadcast_gamma():
    model = _model(axes=(2, 3), gamma_shape=(1, 6), shape=[1, 3, 5, 6])
    after, _ = apply(fuse_layer_norm.PASS, model)
    assert ops(after) == ["LayerNormalization"]
    assert_same_outputs(model, after)


@pytest.mark.parametrize("kwargs, reason", [
    (dict(axes=(1,)), "the normalized axes are not the last ones"),
    (dict(keepdims=0, shape=[1, 1, 64]), "a mean without keepdims"),
    (dict(gamma_shape=(SHAPE[1], 1)), "gamma varies over an axis that is not normalized"),
])
def test_what_is_not_a_layer_norm_over_the_last_axes_is_left(kwargs, reason):
    model = _model(**kwargs)
    after, stats = apply(fuse_layer_norm.PASS, model)
    assert "LayerNormalization" not in ops(after) or reason.startswith("gamma")
    assert any(r.endswith(reason) for r in stats.refused), stats.refused
    assert_same_outputs(model, after)


def test_a_deviation_read_outside_is_not_fused():
    nodes = _layer_norm_nodes("x", "pow", False, True) + [node("Relu", ["d"], "leak")]
    model = graph_model(nodes, {"x": SHAPE}, ["y", "leak"],
                        {"two": scalar(2.0), "eps": scalar(1e-5), "gamma": weights(64), "beta": weights(64)})
    after, stats = apply(fuse_layer_norm.PASS, model)
    assert "LayerNormalization" not in ops(after) and stats.rewritten == 0
