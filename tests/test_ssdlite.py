"""SSDLite (mnv3compile/zoo/ssdlite.py) and its post-processing (mnv3compile/detection.py): the
paper's Table 6 sizes, anchors, the decoding in the graph, suppression, and bundles that run."""

import math
import subprocess
import sys

import numpy as np
import onnx
import pytest
from PIL import Image

from conftest import random_input, run_onnx
from mnv3compile.analysis import analyze
from mnv3compile.quant import quantize
from mnv3compile.quant.calibration import load_samples
from int8_kernels import compare_kernels
from mnv3compile.detection import Detection, detect, iou, suppress
from mnv3compile.zoo import build_model, build_spec, parameter_list, structure_only
from mnv3compile.zoo.ssdlite import (BOX_CODER_WEIGHTS, MAX_LOG_SIZE, PAPER_TABLE6, anchor_count, anchors,
                                     boxes_per_cell, feature_map_sizes)


@pytest.mark.parametrize("model, reduced_tail", sorted(PAPER_TABLE6))
def test_sizes_are_the_papers_table_6(model, reduced_tail):
    """Parameters (BatchNorm included, torchvision's count) within 2%, and MAdds within the paper's
    rounding (two decimals of a billion) plus 0.5%, of the paper's Table 6 at 320x320."""
    params, madds = PAPER_TABLE6[(model, reduced_tail)]
    spec = build_spec(model, 1.0, 320, reduced_tail=reduced_tail)
    stats = analyze(structure_only(spec))
    # what is counted: the state dict's learned tensors (not BN's running statistics, not the
    # anchor tables of the decoding)
    learned = [p for p in parameter_list(spec) if p.role not in ("bn_mean", "bn_var", "bn_count")]
    assert stats.total_params == sum(int(np.prod(p.shape)) for p in learned)
    assert stats.total_params / 1e6 == pytest.approx(params, rel=0.02)
    assert stats.total_madds / 1e9 == pytest.approx(madds, abs=0.005 + 0.005 * madds)


def test_c4_is_the_expansion_of_the_last_stride_2_bottleneck_and_keeps_its_width_in_the_reduced_tail():
    for model, index, channels in (("ssdlite-large", 13, 672), ("ssdlite-small", 9, 288)):
        for reduced_tail in (False, True):
            spec = build_spec(model, reduced_tail=reduced_tail)
            assert spec.c4_index == index
            assert spec.blocks[index - 1].expand_ch == channels
            assert spec.blocks[-1].expand_ch == (channels * 10 // 7 if model.endswith("large") else 576) // (
                2 if reduced_tail else 1)


def test_anchors_follow_the_ssd_scales_and_the_heads_order():
    spec = build_spec("ssdlite-large")
    assert spec.resolution == (320, 320) and spec.num_classes == 91
    assert feature_map_sizes(spec) == [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    cells = boxes_per_cell(spec)
    assert [len(c) for c in cells] == [3, 6, 6, 6, 6, 6]
    assert anchor_count(spec) == 20 * 20 * 3 + 6 * (100 + 25 + 9 + 4 + 1) == 2034
    boxes = anchors(spec)
    assert boxes.shape == (2034, 4)
    # The first cell of the first map: a 0.1 square, then 0.2 at aspect 2 and 1/2, centered at 0.025.
    np.testing.assert_allclose(boxes[:3], [[0.025, 0.025, 0.1, 0.1],
                                           [0.025, 0.025, 0.2 * math.sqrt(2), 0.2 / math.sqrt(2)],
                                           [0.025, 0.025, 0.2 / math.sqrt(2), 0.2 * math.sqrt(2)]], rtol=1e-6)
    # The last map is one cell at the center: scale 0.95, and the extra square sqrt(0.95 * 1).
    np.testing.assert_allclose(boxes[-6:, :2], 0.5)
    np.testing.assert_allclose(boxes[-6, 2:], 0.95, rtol=1e-6)
    np.testing.assert_allclose(boxes[-1, 2:], math.sqrt(0.95), rtol=1e-6)
    # Row-major over each map: the second cell of the first map is one step right.
    np.testing.assert_allclose(boxes[3, :2], [0.075, 0.025], rtol=1e-6)


def test_graph_decodes_boxes_as_the_box_coder():
    """The graph's boxes equal the SSD box coder applied in numpy to its own raw offsets."""
    spec = build_spec("ssdlite-small", 0.5, 160)
    model = build_model(spec)
    raw = ["head.regression_head.center_concat", "head.regression_head.size_concat"]
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in raw)
    boxes, scores, centers, sizes = run_onnx(model, {"input": random_input(spec.input_shape, seed=3)})
    prior = anchors(spec)[None]
    center = prior[..., :2] + centers / BOX_CODER_WEIGHTS[0] * prior[..., 2:]
    half = np.exp(np.minimum(sizes / BOX_CODER_WEIGHTS[2], MAX_LOG_SIZE)) * prior[..., 2:] / 2
    expected = np.clip(np.concatenate([center - half, center + half], axis=-1), 0, 1)
    np.testing.assert_allclose(boxes, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores.sum(-1), 1, atol=1e-5)


def test_iou_and_greedy_suppression():
    boxes = np.array([[0, 0, 1, 1], [0, 0, 1, 0.5], [2, 2, 3, 3], [0.05, 0, 1, 1]], np.float32)
    np.testing.assert_allclose(iou(boxes[0], boxes[1:]), [0.5, 0.0, 0.95])
    assert suppress(boxes, np.array([0.9, 0.8, 0.7, 0.6]), iou_threshold=0.55) == [0, 1, 2]
    assert suppress(boxes, np.array([0.9, 0.8, 0.7, 0.6]), iou_threshold=0.45) == [0, 2]


def test_detect_suppresses_per_class_and_ignores_the_background():
    boxes = np.array([[0.1, 0.1, 0.5, 0.5], [0.12, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]], np.float32)
    scores = np.array([[0.1, 0.9, 0.0],    # class 1
                       [0.1, 0.0, 0.9],    # class 2, the same place: not suppressed by class 1
                       [0.9, 0.05, 0.05]],  # background
                      np.float32)
    found = detect(boxes[None], scores[None], score_threshold=0.3)
    assert found == [Detection(1, pytest.approx(0.9), tuple(pytest.approx(v) for v in boxes[0])),
                     Detection(2, pytest.approx(0.9), tuple(pytest.approx(v) for v in boxes[1]))]
    scores[1] = [0.1, 0.8, 0.1]  # now class 1 twice at IoU 0.95: the weaker one goes
    assert [(d.class_id, round(d.score, 2)) for d in detect(boxes, scores)] == [(1, 0.9)]
    assert detect(boxes, scores, score_threshold=0.95) == []


def _mnv3compile(*args):
    result = subprocess.run([sys.executable, "-m", "mnv3compile.cli", *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


@pytest.mark.slow
def test_every_integer_kernel_of_ssdlite_within_one_step_of_onnxruntime():
    """The int8 detector's kernels (head, softmax, the box decoding's) on identical inputs."""
    spec = build_spec("ssdlite-small", 0.5, 160)
    model = quantize(build_model(spec), load_samples("synthetic:4", spec.input_shape, None)).model
    results = compare_kernels(model, {"input": random_input(spec.input_shape)})
    assert len(results) > 150
    worst = max(results, key=lambda r: r.max_steps)
    assert worst.max_steps <= 1, (worst.output, worst.ops, worst.max_steps)


@pytest.mark.slow
@pytest.mark.parametrize("quant", ["none", "int8"])
def test_detector_bundle_runs_and_draws(tmp_path, quant):
    """A host bundle of SSDLite-Small (0.5 x at 160) gives onnxruntime's boxes and scores (fp32:
    within 1e-4 of the output's largest magnitude, as every fp32 bundle test; element by element
    a box coordinate of 0.24 differs by 4.7e-5 since BatchNorm folds in float32; int8: its QDQ
    model's, per kernel within a step, so end to end the steps compound: measured on 4 inputs, 2
    equal bit for bit and 2 with a mean of 2.2 steps of 1/255 on the boxes), and ``run`` prints
    and draws them."""
    from mnv3compile.runner import BundleRunner

    bundle = tmp_path / quant
    _mnv3compile("build", "--model", "ssdlite-small", "--width", "0.5", "--resolution", "160", "--quant", quant,
                 "--calib", "synthetic:4", "--preprocess", "torchvision", "-o", str(bundle))
    runner = BundleRunner(bundle)
    names = [o["name"] for o in runner.manifest["outputs"]]
    assert names == ["boxes", "scores"]
    x = random_input(runner.input_shape, seed=7)
    boxes, scores = runner.outputs(x)
    reference = onnx.load(bundle / runner.manifest["model"])
    expected_boxes, expected_scores = run_onnx(reference, {runner.input["name"]: x})
    if quant == "none":  # the fp32 criterion: 1e-4 of each output's largest magnitude
        for actual, expected in ((boxes, expected_boxes), (scores, expected_scores)):
            assert np.abs(actual - expected).max() <= 1e-4 * np.abs(expected).max()
    else:
        steps = []
        for seed in range(4):
            x = random_input(runner.input_shape, seed=seed)
            steps.append(np.abs(runner.outputs(x)[0] - run_onnx(reference, {runner.input["name"]: x})[0]) * 255)
        steps = np.concatenate(steps).ravel()
        assert np.median(steps) == 0 and steps.mean() <= 3, (np.median(steps), steps.mean())
    image = tmp_path / "street.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 200, 3), np.uint8)).save(image)
    out = _mnv3compile("run", str(bundle), str(image), "--score", "0.01", "--top", "3", "--draw",
                       str(tmp_path / "boxes.png"))
    assert "detections" in out and "px of the 160x160 input" in out
    assert Image.open(tmp_path / "boxes.png").size == (200, 120)
    np.save(tmp_path / "x.npy", x)
    refused = subprocess.run([sys.executable, "-m", "mnv3compile.cli", "run", str(bundle), str(tmp_path / "x.npy"),
                              "--draw", str(tmp_path / "o.png")], capture_output=True, text=True)
    assert refused.returncode == 2 and "--draw needs an image input, not a tensor" in refused.stderr
