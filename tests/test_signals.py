"""SIGINT and SIGTERM at six points of 'build' (issue 13): one line, exit 130/143, no traceback and
nothing left beside the output (no bundle, no hidden temporary folder).

Each case runs the CLI in a child process in which one stage function is wrapped so that the signal
arrives (from a timer thread) while that stage runs: inside TVM's C++ code for the TVM stages,
which is where Ctrl-C used to be ignored or end in a traceback through TVM's FFI."""

import signal
import subprocess
import sys

import pytest

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
    "relax-passes": ("mnv3compile.tvm.build", "run_pipeline"),
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
