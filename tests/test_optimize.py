"""The whole pipeline on real MobileNetV3 graphs: ours, PaddleOCR's trained one, torch.onnx.export's."""

import numpy as np
import onnx
import pytest

from mnv3compile.analysis import with_static_inputs
from mnv3compile.passes import verify
from mnv3compile.passes.base import GraphPass
from mnv3compile.passes.census import non_canonical
from mnv3compile.passes.canonical import check_units, read_units
from mnv3compile.passes.graph_edit import add_initializer
from mnv3compile.passes.rules import PassStats
from mnv3compile.passes.optimize import PassVerificationError, optimize
from mnv3compile.passes.registry import PIPELINE, select
from mnv3compile.errors import UserError
from mnv3compile.zoo import build_model, build_spec

HSIGMOID_OPS = {"HardSigmoid"}


def _assert_canonical_and_equal(before: onnx.ModelProto, after: onnx.ModelProto, report) -> None:
    counts = report.ops_after
    assert "BatchNormalization" not in counts and not (HSIGMOID_OPS & set(counts)) and "Div" not in counts
    assert non_canonical(after) == {}
    assert check_units(after) == []
    assert all(p.errors is not None and max(e.max_rel for e in p.errors) <= 1e-4 for p in report.passes)
    # and independently of the verifier: the final model against the input model
    feeds = verify.random_feeds(before, seed=42)
    errors = verify.compare(verify.run(before, feeds), verify.run(after, feeds))
    assert max(e.max_rel for e in errors) <= 1e-4, errors


@pytest.mark.slow
@pytest.mark.parametrize("model", ["large", "small", "lraspp-small"])
def test_zoo_models(model):
    spec = build_spec(model, 1.0, 224 if not model.startswith("lraspp") else 160)
    before = build_model(spec)
    after, report = optimize(before, PIPELINE, check_numerics=True)
    _assert_canonical_and_equal(before, after, report)
    assert report.ops_before["HardSigmoid"] > 0 and report.ops_after["HardSwish"] == report.ops_before["HardSwish"]
    units = read_units(after)
    assert len(units) == report.ops_after["Conv"]


def test_paddleocr_trained_classifier(paddle_cls_path):
    from assets import PADDLE_CLS_SHAPE

    original = onnx.load(str(paddle_cls_path))
    before, _ = with_static_inputs(original, {"x": PADDLE_CLS_SHAPE})
    assert non_canonical(before) == {"BatchNormalization": 35, "HardSigmoid": 9, "(x*relu6(x+3))/6": 18}
    after, report = optimize(before, PIPELINE, check_numerics=True)
    _assert_canonical_and_equal(before, after, report)
    assert report.ops_after["HardSwish"] == 18
    assert {u.activation for u in read_units(after)} == {"hswish", "relu", "hsigmoid", "none"}


def test_paddleocr_with_dynamic_shape_optimizes_without_verification(paddle_cls_path):
    after, report = optimize(onnx.load(str(paddle_cls_path)), PIPELINE)
    assert non_canonical(after) == {} and report.errors is None
    feeds = {"x": np.random.default_rng(0).standard_normal((3, 3, 48, 160)).astype(np.float32)}
    original = verify.run(onnx.load(str(paddle_cls_path)), feeds)
    assert verify.compare(original, verify.run(after, feeds))[0].max_rel <= 1e-4  # still any batch/width


@pytest.mark.slow
@pytest.mark.parametrize("spelled", [False, True], ids=["nn.Hardswish", "relu6-arithmetic"])
def test_torch_onnx_export(tmp_path, spelled):
    torch = pytest.importorskip("torch")
    from torch_reference import export_with_zoo_parameters

    spec = build_spec("small", 1.0, 128)
    path = tmp_path / "exported.onnx"
    export_with_zoo_parameters(spec, path, spelled, training=torch.onnx.TrainingMode.PRESERVE,
                               do_constant_folding=False)
    before = onnx.load(str(path))
    if spelled:
        assert non_canonical(before).get("(x*relu6(x+3))/6", 0) > 0
    after, report = optimize(before, PIPELINE, check_numerics=True)
    _assert_canonical_and_equal(before, after, report)


def test_a_pass_that_changes_numbers_is_refused_and_named():
    def scale_first_conv(model):
        """A wrong rewrite: multiplies the first Conv's weights by 1.01."""
        conv = next(n for n in model.graph if n.op_type == "Conv")
        weight = conv.inputs[1].const_value.numpy() * np.float32(1.01)
        conv.replace_input_with(1, add_initializer(model.graph, weight, "scaled"))
        return model, PassStats(1, 1)

    broken = GraphPass("scale_first_conv", "a wrong rewrite", scale_first_conv)
    with pytest.raises(PassVerificationError, match=r"pass 'scale_first_conv' changed output 'logits' by .* "
                                                    r"over the tolerance 0.0001; refused"):
        optimize(build_model(build_spec("small", 0.5, 96)), [broken], check_numerics=True)


def test_unknown_pass_name():
    with pytest.raises(UserError, match="unknown pass 'fold_everything'; passes are: upgrade_opset, cleanup, "):
        select(["fold_everything"])


def test_fused_model_imports_into_tvm():
    from tvm.relax.frontend.onnx import from_onnx

    after, _ = optimize(build_model(build_spec("small", 0.5, 96)), PIPELINE)
    module = from_onnx(after, keep_params_in_input=False)
    assert "main" in [gv.name_hint for gv in module.get_global_vars()]


@pytest.mark.slow
def test_optimize_is_idempotent():
    once, _ = optimize(build_model(build_spec("small", 0.5, 96)), PIPELINE)
    twice, report = optimize(once, PIPELINE)
    assert report.ops_after == report.ops_before
    assert all(p.rewritten == 0 for p in report.passes if p.name not in ("fuse_conv_activation",))
