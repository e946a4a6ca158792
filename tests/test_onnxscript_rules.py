"""The pipeline from onnxscript's side (passes/onnxscript_rules.py): our rules as one RewriteRuleSet
through ``onnxscript.rewriter.rewrite``, the other passes through onnx_ir's PassManager, the
canonical-form check as a function; on a zoo MobileNetV3 (BatchNorm, HardSigmoid ops) and on
torch.onnx.export's (BatchNorm, h-sigmoid and h-swish spelled with ReLU6 arithmetic)."""

import subprocess
import sys

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import helper, numpy_helper
from onnxscript.rewriter import MatchingTracer, MatchStatus, RewriteRuleSet, rewrite

from mnv3compile import passes
from mnv3compile.errors import NotCanonicalError, UserError
from mnv3compile.passes import verify
from mnv3compile.passes.optimize import optimize
from mnv3compile.passes.registry import PIPELINE
from mnv3compile.zoo import build_model, build_spec
from pass_helpers import graph_model, node, ops, scalar

SPEC = build_spec("small", 1.0, "96", None, None)


@pytest.fixture(scope="module")
def zoo_model() -> onnx.ModelProto:
    return build_model(SPEC, seed=0)


@pytest.fixture(scope="module")
def torch_model(tmp_path_factory) -> onnx.ModelProto:
    torch = pytest.importorskip("torch")
    from torch_reference import export_with_zoo_parameters

    path = tmp_path_factory.mktemp("export") / "spelled.onnx"
    export_with_zoo_parameters(SPEC, path, spelled=True, training=torch.onnx.TrainingMode.PRESERVE,
                               do_constant_folding=False)
    return onnx.load(str(path))


@pytest.fixture(params=["zoo", "torch"])
def model(request) -> onnx.ModelProto:
    return request.getfixturevalue(f"{request.param}_model")


@pytest.fixture(scope="module")
def optimized():
    """``optimize(model, PIPELINE)``, once per model of the module's fixtures."""
    results = {}

    def run(model: onnx.ModelProto) -> onnx.ModelProto:
        if id(model) not in results:
            results[id(model)] = model, optimize(model, PIPELINE)[0]  # the model kept: its id stays its own
        return results[id(model)][1]

    return run


def _nodes(model: onnx.ModelProto) -> list[tuple]:
    return [(n.op_type, n.name, list(n.input), list(n.output),
             {a.name: helper.get_attribute_value(a) for a in n.attribute},
             {p.key: p.value for p in n.metadata_props}) for n in model.graph.node]


def _initializers(model: onnx.ModelProto) -> dict[str, tuple]:
    return {t.name: (t.data_type, list(t.dims), numpy_helper.to_array(t).tobytes()) for t in model.graph.initializer}


def _assert_same_model(result: onnx.ModelProto, expected: onnx.ModelProto) -> None:
    assert _nodes(result) == _nodes(expected)  # op types, names, wiring, attributes, fused-unit metadata
    assert _initializers(result) == _initializers(expected)  # bit for bit
    # and the rest too: value_info (inferred shapes), inputs, outputs, opset imports, IR version
    assert result.SerializeToString() == expected.SerializeToString()
    feeds = verify.random_feeds(expected, seed=1)
    for got, want in zip(verify.run(result, feeds), verify.run(expected, feeds), strict=True):
        assert np.array_equal(got, want)


def test_rewrite_with_rule_set_gives_what_optimize_gives(model, optimized):
    expected = optimized(model)
    before = ir.passes.PassManager(passes.ir_passes(passes.BEFORE_RULES))(ir.from_proto(model)).model
    assert {"BatchNormalization", "Conv"} <= {n.op_type for n in before.graph}  # left for the rules
    rewritten = rewrite(before, pattern_rewrite_rules=passes.rule_set())
    result = ir.passes.PassManager(passes.ir_passes(passes.AFTER_RULES))(rewritten).model
    _assert_same_model(ir.to_proto(result), expected)
    passes.check_canonical(result)
    # and the same numbers as the model we started from
    feeds = verify.random_feeds(model, seed=2)
    assert max(e.max_rel for e in verify.compare(verify.run(model, feeds), verify.run(expected, feeds))) <= 1e-4


def test_the_readme_composition_writes_what_the_optimize_command_writes(zoo_model, tmp_path, cli):
    onnx.save(zoo_model, str(tmp_path / "model.onnx"))
    code, _, err = cli("optimize", str(tmp_path / "model.onnx"), "-o", str(tmp_path / "cli.onnx"))
    assert code == 0, err
    model = ir.load(tmp_path / "model.onnx")
    model = ir.passes.PassManager(passes.ir_passes(passes.BEFORE_RULES))(model).model
    model = rewrite(model, pattern_rewrite_rules=passes.rule_set())
    model = ir.passes.PassManager(passes.ir_passes(passes.AFTER_RULES))(model).model
    ir.save(model, tmp_path / "onnxscript.onnx")
    assert (tmp_path / "onnxscript.onnx").read_bytes() == (tmp_path / "cli.onnx").read_bytes()


def test_the_whole_pipeline_as_onnx_ir_passes_is_optimize(model, optimized):
    expected = optimized(model)
    result = ir.passes.PassManager(passes.ir_passes())(ir.from_proto(model)).model
    _assert_same_model(ir.to_proto(result), expected)


def test_each_rule_is_its_own_walk_which_a_plain_rule_set_of_the_same_rules_is_not():
    """TF's ReLU6 is one Clip through rule_set(); walked once, the one-sided Max rule fires at the
    Max before the pair rule (rooted at the Min) is tried."""
    model = graph_model([node("Max", ["x", "zero"], "m"), node("Min", ["m", "six"], "y")], {"x": [1, 4]}, ["y"],
                        {"zero": scalar(0), "six": scalar(6)})
    rules = passes.rule_set(["min_max_to_clip"])
    assert ops(rewrite(model, pattern_rewrite_rules=rules)) == ["Clip"]
    assert ops(rewrite(model, pattern_rewrite_rules=RewriteRuleSet(list(rules)))) == ["Clip", "Clip"]


def test_rule_set_holds_the_rules_of_the_rule_passes_in_pipeline_order():
    rules = passes.rule_set()
    assert [p.name for p in rules.passes] == [p.name for p in PIPELINE if p.rules]
    assert [p.name for p in passes.rule_set(["min_max_to_clip", "fold_batchnorm"]).passes] == ["min_max_to_clip",
                                                                                              "fold_batchnorm"]
    names = [rule.name for rule in rules]
    assert names.index("FuseBatchNormIntoConv") < names.index("Min(Max(x,lo),hi)") < names.index("HardSigmoid")
    with pytest.raises(UserError, match=r"^'cleanup' has no rewrite rules \(its onnx_ir pass is "
                                        r"ir_passes\(\['cleanup'\]\)\); passes with rules: fuse_layer_norm, "):
        passes.rule_set(["cleanup"])
    with pytest.raises(UserError, match="unknown pass 'fold_everything'"):
        passes.rule_set(["fold_everything"])


def test_with_a_tracer_the_rule_set_records_matches_and_changes_nothing(zoo_model):
    model = ir.from_proto(zoo_model)
    tracer = MatchingTracer()
    assert passes.rule_set(["fold_batchnorm"]).apply_to_model(model, tracer=tracer) == 0
    assert ir.to_proto(model).SerializeToString() == ir.to_proto(ir.from_proto(zoo_model)).SerializeToString()
    successes = [info for infos in tracer.best_matches_map.values() for info in infos
                 if info.status == MatchStatus.SUCCESS]
    assert len(successes) == 34  # one per BatchNormalization


def test_check_canonical_passes_on_optimize_output(model, optimized):
    passes.check_canonical(optimized(model))
    passes.check_canonical(ir.from_proto(optimized(model)))
    assert passes.is_canonical(optimized(model))


@pytest.mark.parametrize("which, message", [
    ("zoo", "non-canonical spellings left: BatchNormalization x34, HardSigmoid x9 (and 52 more)"),
    ("torch", ("non-canonical spellings left: BatchNormalization x34, Clip(x+3,0,6)/6 x9, (x*relu6(x+3))/6 x19 "
               "(and 52 more)")),
])
def test_check_canonical_says_what_is_left(request, which, message):
    model = request.getfixturevalue(f"{which}_model")
    assert not passes.is_canonical(model)
    with pytest.raises(NotCanonicalError) as raised:
        passes.check_canonical(model)
    assert str(raised.value) == f"the model is not in the canonical form: {message}"  # and 52 Convs in no unit


def test_check_canonical_finds_a_spelled_hswish_alone(torch_model):
    no_hswish_pass, _ = optimize(torch_model, [p for p in PIPELINE if p.name != "canonicalize_hswish"])
    with pytest.raises(NotCanonicalError) as raised:
        passes.check_canonical(no_hswish_pass)
    assert str(raised.value) == "the model is not in the canonical form: non-canonical spellings left: " \
                                "(x*relu6(x+3))*1/6 x19"


def test_rewrite_alone_is_not_the_canonical_form(zoo_model, torch_model):
    """Without AFTER_RULES no Conv is in a fused unit; without BEFORE_RULES the rules miss the
    constants torch.onnx.export keeps in Cast(Constant) nodes and its h-swish stays spelled."""
    with pytest.raises(NotCanonicalError) as raised:
        passes.check_canonical(rewrite(zoo_model, pattern_rewrite_rules=passes.rule_set()))
    assert str(raised.value) == "the model is not in the canonical form: Conv 'features.0.0' is in no fused unit " \
                                "(and 51 more)"
    with pytest.raises(NotCanonicalError) as raised:
        passes.check_canonical(rewrite(torch_model, pattern_rewrite_rules=passes.rule_set()))
    assert str(raised.value).startswith("the model is not in the canonical form: non-canonical spellings left: "
                                        "(x*relu6(x+3))*1/6 x19")


def test_the_onnxscript_surface_loads_on_first_use():
    code = ("import sys, mnv3compile.passes as p\n"
            "assert 'mnv3compile.passes.onnxscript_rules' not in sys.modules and 'onnxscript' not in sys.modules\n"
            "from mnv3compile.passes import rule_set\n"
            "assert type(rule_set()).__name__ == 'PipelineRuleSet' and set(p.__all__) <= set(dir(p))\n")
    subprocess.run([sys.executable, "-P", "-c", code], check=True)
    assert passes.__all__ == ["AFTER_RULES", "BEFORE_RULES", "check_canonical", "ir_passes", "is_canonical",
                              "rule_set"]
    with pytest.raises(AttributeError, match="has no attribute 'fold_everything'"):
        _ = passes.fold_everything
