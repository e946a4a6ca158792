"""State dicts: round trips are bit-exact, mismatches name the key and both shapes, torch agrees."""

import numpy as np
import pytest

from conftest import random_input, run_onnx
from mnv3compile.errors import UserError
from mnv3compile.zoo import (build_model, build_spec, check_state_dict, load_state_dict,
                             random_state_dict, save_state_dict, state_dict_from_onnx)


@pytest.mark.parametrize("suffix", [".npz", ".safetensors", ".pth"])
def test_state_dict_round_trip_gives_bit_identical_outputs(tmp_path, suffix):
    if suffix == ".pth":
        pytest.importorskip("torch")
    spec = build_spec("small", 0.75, 96)
    original = build_model(spec, seed=7)
    path = tmp_path / f"w{suffix}"
    save_state_dict(state_dict_from_onnx(original, spec), path)
    reloaded = build_model(spec, weights=path)
    x = random_input(spec.input_shape)
    (a,), (b,) = run_onnx(original, {"input": x}), run_onnx(reloaded, {"input": x})
    assert np.array_equal(a, b)
    assert original.SerializeToString() == reloaded.SerializeToString()


def test_state_dict_keys_are_torchvisions():
    state = random_state_dict(build_spec("large"))
    keys = list(state)
    assert keys[:6] == ["features.0.0.weight", "features.0.1.weight", "features.0.1.bias",
                        "features.0.1.running_mean", "features.0.1.running_var",
                        "features.0.1.num_batches_tracked"]
    assert "features.4.block.2.fc1.weight" in state and "features.4.block.2.fc2.bias" in state
    assert keys[-4:] == ["classifier.0.weight", "classifier.0.bias", "classifier.3.weight", "classifier.3.bias"]
    assert state["classifier.3.weight"].shape == (1000, 1280)


def test_shape_mismatch_names_first_key_and_both_shapes():
    state = random_state_dict(build_spec("small", 0.5))
    with pytest.raises(UserError) as info:
        check_state_dict(build_spec("small", 1.0), state)
    assert str(info.value) == ("weights do not fit small width 1.0: key 'features.0.0.weight' has shape "
                               "(8, 3, 3, 3) in the file, the model expects (16, 3, 3, 3)")


def test_missing_and_unexpected_keys_are_named():
    spec = build_spec("small")
    state = random_state_dict(spec)
    del state["features.1.block.1.fc1.bias"]
    with pytest.raises(UserError, match=r"missing key 'features.1.block.1.fc1.bias' \(model expects shape \(8,\)\)"):
        check_state_dict(spec, state)
    state = random_state_dict(spec)
    state["aux.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(UserError, match=r"unexpected key 'aux.weight' with shape \(3, 3\) \(1 unexpected in all\)"):
        check_state_dict(spec, state)


def test_num_batches_tracked_is_optional():
    spec = build_spec("small")
    state = {k: v for k, v in random_state_dict(spec).items() if not k.endswith("num_batches_tracked")}
    assert len(check_state_dict(spec, state)) > len(state)


@pytest.mark.parametrize("content, suffix, message", [
    (b"not a zip", ".npz", "cannot read weights file {path}: "),
    (b"\x00\x01garbage", ".safetensors", "cannot read weights file {path}: "),
    (b"x", ".bin", "cannot read weights file {path}: unsupported extension '.bin' (use one of .npz, .safetensors, .pth, .pt)"),
])
def test_unreadable_weights_file_is_one_clear_error(tmp_path, content, suffix, message):
    path = tmp_path / f"w{suffix}"
    path.write_bytes(content)
    with pytest.raises(UserError) as info:
        load_state_dict(path)
    assert str(info.value).startswith(message.format(path=path))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("model, width, resolution", [("large", 1.0, 224), ("small", 0.75, 160),
                                                      ("large-minimal", 0.5, 96), ("lraspp-small", 1.0, 160),
                                                      ("lraspp-large", 0.75, 128), ("small", 1.0, "96x160"),
                                                      ("lraspp-small", 0.5, "48x112")])
def test_zoo_graph_equals_torchvision_modules_with_the_same_state_dict(model, width, resolution):
    torch = pytest.importorskip("torch")
    from torch_reference import reference_model

    spec = build_spec(model, width, resolution)
    state = random_state_dict(spec, seed=3)
    net = reference_model(spec)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    x = random_input(spec.input_shape, seed=11)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    (actual,) = run_onnx(build_model(spec, seed=3), {"input": x})
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * float(np.abs(expected).max()))
