"""arm64 bundles on the stand-in phone (qemu-user + TVM RPC), compared with onnxruntime on the host."""

import numpy as np
import onnx
import pytest
from conftest import NEEDS_ARM64_GCC

from mnv3compile import phone
from mnv3compile.passes import verify
from mnv3compile.pipeline import BuildRequest, build
from mnv3compile.targets.presets import preset
from mnv3compile.zoo import build_model, build_spec

pytestmark = pytest.mark.slow  # the whole module is slow: see the README's test section


def _bundle(tmp_path, model_name, quant, width=1.0, resolution=224, target="arm64-linux"):
    spec = build_spec(model_name, width, resolution)
    return build(BuildRequest(target=preset(target), output=tmp_path / "bundle", name="m", model=build_model(spec),
                              quant=quant)), spec


def test_small_arm64_linux_over_rpc_matches_onnxruntime(stand_in_phone, tmp_path):
    result, spec = _bundle(tmp_path, "small", "none")
    model = onnx.load(str(result.bundle / result.manifest["model"]))
    inputs = [np.random.default_rng(seed).standard_normal(spec.input_shape).astype(np.float32) for seed in range(2)]
    outputs = phone.run_remote(result.library, inputs)
    for x, y in zip(inputs, outputs):
        expected = verify.run(model, {"input": x})["logits"]
        assert np.abs(y - expected).max() <= 1e-4 * np.abs(expected).max()


@pytest.mark.parametrize("target", ["arm64-linux", "rpi5"])
def test_int8_arm64_linux_over_rpc_equals_the_host_bit_for_bit(stand_in_phone, tmp_path, target):
    """Integer kernels compute the same integers on every ISA: the arm64 bundle's output equals the
    host's compiled from the same QDQ model exactly, and both agree with onnxruntime on top-1.
    arm64-linux (Cortex-A53) has no dot product and runs its pointwise convs on smlal by element;
    rpi5 (Cortex-A76) runs them on sdot (qemu's default CPU has dotprod)."""
    import tvm
    from tvm import relax

    from mnv3compile.tvm.build import compile_onnx

    result, spec = _bundle(tmp_path, "small", "int8", 0.75, 160, target)
    model = onnx.load(str(result.bundle / result.manifest["model"]))
    x = np.random.default_rng(0).standard_normal(spec.input_shape).astype(np.float32)
    (y,) = phone.run_remote(result.library, [x])
    host = compile_onnx(model, preset("host"), tmp_path / "host.so")
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(host.path)), tvm.cpu())
    assert np.array_equal(y, vm["main"](tvm.runtime.tensor(x)).numpy())
    assert np.argmax(y) == np.argmax(verify.run(model, {"input": x})["logits"])


def test_cli_run_over_rpc(stand_in_phone, tmp_path, cli):
    result, spec = _bundle(tmp_path, "small-minimal", "none", 0.5, 96)
    x = np.random.default_rng(3).standard_normal(spec.input_shape).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, stdout, err = cli("run", str(result.bundle), str(tmp_path / "x.npy"), "--rpc", "--top", "1")
    assert code == 0, err
    expected = verify.run(onnx.load(str(result.bundle / result.manifest["model"])), {"input": x})["logits"]
    assert stdout.startswith(f"1. class {int(np.argmax(expected))}: ")
    # The device's pool is configured as asked: the stand-in phone's servers run with
    # TVM_NUM_THREADS=1 (emulated workers spinning would cost time), and the count comes back.
    code, two, err = cli("run", str(result.bundle), str(tmp_path / "x.npy"), "--rpc", "--top", "1", "--threads", "2",
                         "--affinity", "little")
    assert code == 0, err
    assert two == "warning: the device runs 1 worker, not the 2 asked (its TVM_NUM_THREADS?)\n" + stdout


@NEEDS_ARM64_GCC
def test_unreachable_tracker_is_one_line(tmp_path, cli):
    result, _ = _bundle(tmp_path, "small-minimal", "none", 0.35, 96)
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 96, 96), np.float32))
    code, _, err = cli("run", str(result.bundle), str(tmp_path / "x.npy"), "--rpc", "127.0.0.1:9", "--key", "k")
    assert (code, err) == (2, "error: cannot reach the TVM RPC tracker at 127.0.0.1:9: Connection refused\n")


def test_the_stand_in_phone_listens_on_loopback_only(stand_in_phone):
    """TVM RPC has no authentication: the tracker and the emulated devices bind 127.0.0.1."""
    import psutil

    state = phone.read_state()
    listening = {c.pid: c.laddr.ip for c in psutil.net_connections("inet") if c.status == psutil.CONN_LISTEN}
    for pid in (state.tracker_pid, *state.server_pids):  # each listens in a worker process it started
        tree = {pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))}
        addresses = {listening[p] for p in tree if p in listening}
        assert addresses == {"127.0.0.1"}, (pid, addresses)


def test_a_tracker_off_this_machine_gets_the_no_authentication_warning(cli):
    assert phone.unauthenticated_warning("127.0.0.1:9190") is None
    assert phone.unauthenticated_warning("localhost:9190") is None
    warning = ("warning: TVM RPC has no authentication: anyone who can reach 192.0.2.1 can run code on its "
               "devices; keep the tracker and the phones on a network you trust")
    assert phone.unauthenticated_warning("192.0.2.1:9190") == warning
    code, _, err = cli("tune", "--model", "small-minimal", "--width", "0.35", "--resolution", "96", "--quant",
                       "none", "--target", "arm64-linux", "--tracker", "192.0.2.1:9", "--key", "k",
                       "--device-timeout", "1")
    assert code == 2 and err.splitlines()[0] == warning, err



def test_int8_detector_on_the_phone_equals_the_host_bit_for_bit_and_run_prints_its_boxes(stand_in_phone, tmp_path,
                                                                                           cli):
    """SSDLite-Small's two outputs (boxes, scores) come back from the device as the host computes
    them from the same QDQ model, exactly; ``run --rpc`` prints the host's detections."""
    import tvm
    from tvm import relax

    from mnv3compile.detection import detect
    from mnv3compile.tvm.build import compile_onnx

    result, spec = _bundle(tmp_path, "ssdlite-small", "int8", 0.5, 160)
    model = onnx.load(str(result.bundle / result.manifest["model"]))
    x = np.random.default_rng(0).standard_normal(spec.input_shape).astype(np.float32)
    ((boxes, scores),) = phone.run_remote(result.library, [x], outputs_per_call=2)
    host = compile_onnx(model, preset("host"), tmp_path / "host.so")
    expected = relax.VirtualMachine(tvm.runtime.load_module(str(host.path)), tvm.cpu())["main"](tvm.runtime.tensor(x))
    assert np.array_equal(boxes, expected[0].numpy()) and np.array_equal(scores, expected[1].numpy())
    np.save(tmp_path / "x.npy", x)
    code, stdout, err = cli("run", str(result.bundle), str(tmp_path / "x.npy"), "--rpc", "--score", "0.2", "--top", "1")
    assert code == 0, err
    best = detect(boxes, scores, 0.2)[0]
    assert stdout.splitlines()[1].startswith(f"  class {best.class_id}: {best.score:.3f} at ")
