"""Malformed-model fuzzing (tests/model_fuzz.py): truncated files, bit flips, wrong dtypes,
missing and extra inputs, cycles, huge or zero dimensions, empty graphs, duplicate names and
unknown domains, fed to inspect, optimize, quantize and build. Every case ends accepted or refused
in one 'error:' line: no traceback, no other exit code, none slow. A fixed seed and budget here;
benchmarks/fuzz_models.py runs longer budgets."""

import pytest
from model_fuzz import COMMANDS, fuzz


@pytest.mark.slow
def test_malformed_models_are_refused_in_one_line_never_a_traceback(tmp_path):
    result = fuzz(cases=120, seed=0, work=tmp_path)
    assert not result["crashes"], result["crashes"][0]
    for command in COMMANDS:
        outcome = result["outcomes"][command]
        assert sum(outcome.values()) == 120 and outcome["refused"] > 60, (command, outcome)
    assert result["slowest_s"] < 60


def _save(model, path):
    import onnx

    onnx.save(model, str(path))
    return str(path)


def test_a_huge_input_is_one_line(cli, tmp_path):
    from model_fuzz import valid_model

    model = valid_model()
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 2**40
    path = _save(model, tmp_path / "huge.onnx")
    code, _, err = cli("optimize", path, "-o", str(tmp_path / "out.onnx"))
    assert (code, err) == (2, f"error: {path}: input 'input' has shape (1, 3, 1099511627776, 32): "
                              f"{3 * 32 * 2**40} elements, more than 2147483647\n")
    assert not (tmp_path / "out.onnx").exists()


def test_an_initializer_that_does_not_fill_its_shape_is_named(cli, tmp_path):
    from model_fuzz import valid_model

    model = valid_model()
    model.graph.initializer[1].dims[0] = 4  # the bias: 8 floats of data for a shape of 4
    path = _save(model, tmp_path / "m.onnx")
    code, _, err = cli("quantize", path, "--calib", "synthetic:2", "-o", str(tmp_path / "q.onnx"))
    assert (code, err) == (2, f"error: {path}: initializer 'b' (FLOAT (4,)) does not hold its data: "
                              "cannot reshape array of size 8 into shape (4,)\n")
