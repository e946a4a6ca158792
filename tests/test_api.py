"""The public Python API: what it takes in memory gives what the command line gives from files,
and its errors are the command line's."""

from __future__ import annotations


import numpy as np
import onnx
import pytest

import mnv3compile as m3


@pytest.fixture(scope="module")
def small96() -> onnx.ModelProto:
    return m3.export("small", resolution=96)


def test_quantize_on_arrays_in_memory_equals_quantize_on_their_file(small96, tmp_path):
    images = np.random.default_rng(3).standard_normal((6, 3, 96, 96)).astype(np.float32)
    np.save(tmp_path / "calib.npy", images)
    onnx.save(small96, tmp_path / "small.onnx")
    from_memory = m3.quantize(small96, images)
    from_files = m3.quantize(tmp_path / "small.onnx", str(tmp_path / "calib.npy"))
    from_list = m3.quantize(small96, [image for image in images])  # (C, H, W) tensors
    assert from_memory.model.SerializeToString() == from_files.model.SerializeToString()
    assert from_list.model.SerializeToString() == from_files.model.SerializeToString()
    assert from_memory.calibration_samples == 6


def test_quantized_model_saves_what_the_quantize_command_writes(small96, tmp_path, cli):
    images = np.random.default_rng(3).standard_normal((4, 3, 96, 96)).astype(np.float32)
    np.save(tmp_path / "calib.npy", images)
    onnx.save(small96, tmp_path / "small.onnx")
    cli("quantize", str(tmp_path / "small.onnx"), "--calib", str(tmp_path / "calib.npy"), "-o", str(tmp_path / "c.onnx"))
    int8 = m3.quantize(tmp_path / "small.onnx", str(tmp_path / "calib.npy"))
    int8.save(tmp_path / "api.onnx", {"source": str(tmp_path / "calib.npy"), "preprocess": None})
    assert (tmp_path / "api.onnx").read_bytes() == (tmp_path / "c.onnx").read_bytes()
    import json

    written = json.loads((tmp_path / "c.json").read_text())
    saved = json.loads((tmp_path / "api.json").read_text())
    assert saved == {k: v for k, v in written.items() if k != "accuracy"}  # the command adds its evaluation


def test_build_from_memory_equals_the_build_command_from_files(small96, tmp_path, cli):
    """A model and calibration tensors in memory build the library the command builds from files."""
    images = np.random.default_rng(5).standard_normal((4, 3, 96, 96)).astype(np.float32)
    np.save(tmp_path / "calib.npy", images)
    onnx.save(small96, tmp_path / "small.onnx")
    cli("build", "--onnx", str(tmp_path / "small.onnx"), "--calib", str(tmp_path / "calib.npy"),
        "-o", str(tmp_path / "cli"))
    bundle = m3.build(small96, calibration=images, output=tmp_path / "api")
    from_cli = m3.Bundle.load(tmp_path / "cli")
    assert (bundle.path / f"{bundle.name}.int8.onnx").read_bytes() == \
        (from_cli.path / f"{from_cli.name}.int8.onnx").read_bytes()
    x = np.random.default_rng(0).standard_normal((1, 3, 96, 96)).astype(np.float32)
    assert np.array_equal(bundle.run(x)[0], from_cli.run(x)[0])
    assert bundle.report.kernels == from_cli.report.kernels
    assert bundle.notes == []  # calibrated on the tensors given: no synthetic-data note


@pytest.mark.parametrize(("call", "message"), [
    (lambda: m3.build("smal"), "unknown model 'smal': give a zoo model (large, small, large-minimal, small-minimal, "
                               "lraspp-large, lraspp-small, ssdlite-large, ssdlite-small) or an ONNX file"),
    (lambda: m3.build("missing.onnx"), "cannot read missing.onnx: no such file"),
    (lambda: m3.build("small", quant="int4"), "unknown quantization 'int4'; choose none or int8"),
    (lambda: m3.build("small", target="pixel99"), None),
    (lambda: m3.export("small", width=0.0), None),
    (lambda: m3.Bundle.load("/"), "/ is not an mnv3compile bundle (no manifest); make one with 'mnv3compile build'"),
    (lambda: m3.optimize(b"not a model"), "the model given is not an ONNX model (a bytes, not an onnx.ModelProto)"),
    (lambda: m3.build(None), "the model given is not an ONNX model (a NoneType, not an onnx.ModelProto)"),
])
def test_bad_input_is_a_user_error_with_the_command_lines_words(call, message):
    with pytest.raises(m3.UserError) as caught:
        call()
    if message is not None:
        assert str(caught.value) == message


def test_onnx_width_is_refused(small96, tmp_path):
    with pytest.raises(m3.UserError, match="^width, resolution and weights choose a zoo model; an ONNX model has its "
                                           "own$"):
        m3.build(small96, width=0.5)


def test_bundle_run_checks_the_input_shape(tmp_path):
    bundle = m3.build("small", resolution=96, quant="none", output=tmp_path / "b")
    with pytest.raises(m3.UserError, match=r"^input of shape \(1, 3, 64, 64\); .*/b takes \(1, 3, 96, 96\)$"):
        bundle.run(np.zeros((1, 3, 64, 64), np.float32))
    x = np.random.default_rng(0).standard_normal((1, 3, 96, 96)).astype(np.float32)
    expected = onnx_reference(bundle, x)
    np.testing.assert_allclose(bundle.run(x)[0], expected, rtol=1e-4, atol=1e-4)


def onnx_reference(bundle: m3.Bundle, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(bundle.path / bundle.manifest["model"]), providers=["CPUExecutionProvider"])
    return session.run(None, {bundle.inputs[0]["name"]: x})[0]
