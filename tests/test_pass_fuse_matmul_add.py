from mnv3compile.passes import fuse_matmul_add
from pass_helpers import apply, assert_same_outputs, graph_model, node, ops, weights


def test_matmul_plus_bias_becomes_gemm():
    model = graph_model([node("MatMul", ["x", "w"], "m"), node("Add", ["m", "b"], "y")],
                        {"x": [1, 8]}, ["y"], {"w": weights(8, 3), "b": weights(3)})
    after, stats = apply(fuse_matmul_add.PASS, model)
    assert ops(after) == ["Gemm"] and stats.rewritten == 1
    assert_same_outputs(model, after)


def test_a_matmul_over_tokens_becomes_a_gemm_over_rows():
    """PP-OCRv4's SVTR neck: 1 x T x C tokens through a Linear."""
    model = graph_model([node("MatMul", ["x", "w"], "m"), node("Add", ["m", "b"], "y")],
                        {"x": [2, 4, 8]}, ["y"], {"w": weights(8, 3), "b": weights(3)})
    after, stats = apply(fuse_matmul_add.PASS, model)
    assert ops(after) == ["Reshape", "Gemm", "Reshape"] and stats.rewritten == 1
    assert_same_outputs(model, after)


def test_a_matmul_input_of_unknown_size_is_left_alone():
    model = graph_model([node("MatMul", ["x", "w"], "m"), node("Add", ["m", "b"], "y")],
                        {"x": ["n", 4, 8]}, ["y"], {"w": weights(8, 3), "b": weights(3)})
    after, stats = apply(fuse_matmul_add.PASS, model)
    assert ops(after) == ["MatMul", "Add"]
    assert stats.refused == {"matmul+add over tokens: MatMul input of more than 2 axes without a static shape": 1}

