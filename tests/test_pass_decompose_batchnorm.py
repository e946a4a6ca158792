import numpy as np

from mnv3compile.passes import decompose_batchnorm
from pass_helpers import apply, assert_same_outputs, graph_model, node, ops

C = 3


def test_batchnorm_on_a_graph_input_becomes_mul_add():
    rng = np.random.default_rng(2)
    inits = {"s": rng.uniform(0.5, 1.5, C), "b": rng.normal(0, 1, C), "m": rng.normal(0, 1, C), "v": rng.uniform(0.5, 2, C)}
    model = graph_model([node("BatchNormalization", ["x", "s", "b", "m", "v"], "y", epsilon=1e-3)],
                        {"x": [2, C, 5, 5]}, ["y"], {k: v.astype(np.float32) for k, v in inits.items()})
    after, stats = apply(decompose_batchnorm.PASS, model)
    assert ops(after) == ["Mul", "Add"] and stats.rewritten == 1
    assert_same_outputs(model, after)
