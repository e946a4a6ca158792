"""SIGINT and SIGTERM at six points of 'build' (issue 13): one line, exit 130/143, no traceback and
nothing left beside the output (no bundle, no hidden temporary folder).

Each case runs the CLI in a child process in which one stage function is wrapped so that the signal
arrives (from a timer thread) while that stage runs: inside TVM's C++ code for the TVM stages,
which is where Ctrl-C used to be ignored or end in a traceback through TVM's FFI."""

import signal
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # the whole module is slow: see the README's test section

CHILD = r"""
import importlib, os, signal, sys, threading
module_name, attribute, signum, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
owner, _, name = attribute.rpartition(".")
target = importlib.import_module(module_name)
holder = getattr(target, owner) if owner else target
original = getattr(holder, name)

def wrapped(*args, **kwargs):
    threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()
    return original(*args, **kwargs)

setattr(holder, name, wrapped)
from mnv3compile.cli import main
sys.exit(main(["build", "--model", "small", "--resolution", "96", "--width", "0.5", "-o", out]))
"""

POINTS = {  # stage -> (module, attribute) the signal arrives in
    "optimize": ("mnv3compile.passes.optimize", "optimize"),
    "quantize": ("mnv3compile.quant", "quantize"),
    "tvm-import": ("mnv3compile.tvm.build", "import_onnx"),
    "relax-passes": ("mnv3compile.tvm.build", "run_passes"),
    "codegen": ("tvm", "compile"),
    "link": ("tvm.runtime", "Executable.export_library"),
}


# The default run takes one signal per stage family (each case is a child process that imports TVM
# and builds up to its point, ~15 s); `pytest -m slow` runs the whole 6 x 2 matrix.
DEFAULT_CASES = {("quantize", signal.SIGINT), ("relax-passes", signal.SIGTERM), ("codegen", signal.SIGINT),
                 ("link", signal.SIGTERM)}
CASES = [pytest.param(point, signum, id=f"{point}-{signal.Signals(signum).name}",
                      marks=() if (point, signum) in DEFAULT_CASES else pytest.mark.slow)
         for point in POINTS for signum in (signal.SIGINT, signal.SIGTERM)]


@pytest.mark.parametrize("point, signum", CASES)
def test_a_signal_at_any_stage_of_build_ends_cleanly(tmp_path, point, signum):
    module, attribute = POINTS[point]
    out = tmp_path / "bundle"
    result = subprocess.run([sys.executable, "-c", CHILD, module, attribute, str(int(signum)), str(out)],
                            capture_output=True, text=True, timeout=600)
    name = signal.Signals(signum).name
    assert result.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[signum], result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if "Warning: BlockBuilder destroyed" not in line]
    assert lines == [f"error: aborted ({name})"], result.stderr[-3000:]
    assert list(tmp_path.iterdir()) == []  # no bundle, no hidden .bundle.* folder


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_phone_start_stops_what_it_started(tmp_path, signum):
    """'phone start' interrupted while its device boots under qemu: one line, exit 130/143, and the
    tracker and device it started are stopped, its state file gone (a cache of its own, sharing the
    real sysroot, so the session's stand-in phone is left alone)."""
    import json
    import os
    import shutil
    import time

    import psutil

    from mnv3compile.targets import arm64_sysroot

    if not shutil.which("qemu-aarch64"):
        pytest.skip("qemu-user is not installed (apt-get install qemu-user binfmt-support)")
    root = arm64_sysroot.ensure_sysroot()
    (tmp_path / "phone").mkdir()
    (tmp_path / "phone" / "sysroot").symlink_to(root)
    state_file = tmp_path / "phone" / "state.json"
    child = subprocess.Popen([sys.executable, "-m", "mnv3compile.cli", "phone", "start"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "MNV3COMPILE_CACHE": str(tmp_path)})
    deadline = time.monotonic() + 120
    while not state_file.exists():  # the processes are started; the device is booting
        assert child.poll() is None and time.monotonic() < deadline, child.communicate()
        time.sleep(0.1)
    state = json.loads(state_file.read_text())
    child.send_signal(signum)
    _, stderr = child.communicate(timeout=60)
    name = signal.Signals(signum).name
    assert (child.returncode, stderr.splitlines()[-1]) == (128 + signum, f"error: aborted ({name})"), stderr
    assert "Traceback" not in stderr and not state_file.exists()
    for pid in (state["tracker_pid"], *state["server_pids"]):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, pid
