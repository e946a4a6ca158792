"""--method auto: each tensor gets the candidate range that least disturbs the groups reading it."""

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from mnv3compile.passes.optimize import optimize
from mnv3compile.passes.registry import PIPELINE
from mnv3compile.quant import QuantizeSettings, quantize
from mnv3compile.quant.auto_ranges import choose_ranges, fake_quantize
from mnv3compile.quant.calibration import Sample
from mnv3compile.quant.observers import AUTO_CANDIDATES
from mnv3compile.quant.plan import plan_groups
from mnv3compile.zoo import build_model, build_spec


def _two_layer_model() -> onnx.ModelProto:
    """input -> Conv 1x1 + ReLU -> Conv 1x1 -> output: the first conv's output is calibrated and
    read by the second."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 4, 1, 1)).astype(np.float32), "w1"),
             numpy_helper.from_array(np.zeros(8, np.float32), "b1"),
             numpy_helper.from_array(rng.standard_normal((4, 8, 1, 1)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.zeros(4, np.float32), "b2")]
    nodes = [helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1"),
             helper.make_node("Relu", ["c1"], ["hidden"], name="relu1"),
             helper.make_node("Conv", ["hidden", "w2", "b2"], ["output"], name="conv2")]
    graph = helper.make_graph(nodes, "two", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4, 6, 6])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 6, 6])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _canonical_groups(model):
    canonical, _ = optimize(model, PIPELINE)
    return canonical, plan_groups(ir.from_proto(canonical))


@pytest.mark.parametrize("spread, expected", [(1.0, "tight"), (40.0, "wide")])
def test_the_candidate_that_disturbs_the_reader_least_wins(spread, expected):
    """Inputs inside [-3, 3]: the tight range (a 27x finer step) wins; inputs reaching +-40: the
    tight one clips them and the wide range wins."""
    canonical, groups = _canonical_groups(_two_layer_model())
    rng = np.random.default_rng(1)
    samples = [Sample(np.clip(rng.standard_normal((1, 4, 6, 6)) * spread, -spread * 2.9, spread * 2.9)
                      .astype(np.float32)) for _ in range(4)]
    candidates = {"input": {"wide": (-80.0, 80.0), "tight": (-3.0, 3.0)}}
    ranges, methods = choose_ranges(canonical, groups, candidates, samples)
    assert methods == {"input": expected}
    assert ranges["input"] == candidates["input"][expected]


def test_equal_errors_keep_the_first_candidate():
    canonical, groups = _canonical_groups(_two_layer_model())
    samples = [Sample(np.zeros((1, 4, 6, 6), np.float32))]  # every range quantizes zeros exactly
    candidates = {"input": {"first": (-1.0, 1.0), "second": (-2.0, 2.0)}}
    assert choose_ranges(canonical, groups, candidates, samples)[1] == {"input": "first"}


def test_fake_quantize_is_int8_rounding():
    x = np.array([-10.0, -1.0, 0.0, 0.26, 1.0, 10.0], np.float32)
    # range [-1, 1]: scale 2/255, zero point 0 (rounded from -0.5); clipped at -128 and 127 steps
    got = fake_quantize(x, -1.0, 1.0, symmetric=False)
    scale = 2.0 / 255
    np.testing.assert_allclose(got, np.clip(np.round(x / scale), -128, 127) * scale, rtol=1e-6)


@pytest.mark.slow
def test_auto_on_a_zoo_model_records_a_candidate_for_every_calibrated_tensor():
    spec = build_spec("small", 0.5, 96)
    rng = np.random.default_rng(0)
    samples = [Sample(rng.standard_normal(spec.input_shape).astype(np.float32)) for _ in range(4)]
    result = quantize(build_model(spec), samples, QuantizeSettings("auto"))
    calibrated = {n: a for n, a in result.record.activations.items() if a["rule"] == "calibrated"}
    assert calibrated and all(a["method"] in AUTO_CANDIDATES for a in calibrated.values())
    assert len({a["method"] for a in calibrated.values()}) > 1  # it does choose, not one method for all
    assert result.sidecar()["calibration"]["method"] == "auto"
