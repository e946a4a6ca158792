"""One contender of ``mnv3compile bench`` in a process of its own (mnv3compile/benchmark.py starts
it, stops it with SIGSTOP while the others run, and asks it for one timed call at a time).

A fresh process is also the cold start an app sees: the worker measures, before anything else,
how long its runtime takes to import, the model to open (our library loaded, or onnxruntime's
session created) and the first inference to return, and its resident memory after the import and
at its peak after that first inference (Linux: /proc/self/status). It imports nothing heavy before
it starts the clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerSpec:
    kind: str  # "bundle" or "onnxruntime"
    path: str  # the bundle folder, or the ONNX model
    threads: int
    affinity: str = "big"  # ours only
    input_name: str = ""  # onnxruntime only
    input_shape: tuple[int, ...] = ()


def _memory_mib(field: str) -> float:
    """VmRSS (resident now) or VmHWM (the peak so far) of this process, MiB; 0 where unknown."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _open(spec: WorkerSpec):
    """The contender's call, on a random input, after its runtime is imported: the time measured
    as open."""
    import numpy as np

    if spec.kind == "bundle":
        from mnv3compile.runner import BundleRunner

        runner = BundleRunner(spec.path, threads=spec.threads, affinity=spec.affinity)
        x = np.random.default_rng(0).standard_normal(runner.input_shape).astype(np.float32)
        return lambda: runner(x)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = spec.threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(spec.path, options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal(spec.input_shape).astype(np.float32)
    feeds = {spec.input_name: x}
    return lambda: session.run(None, feeds)


def _import_runtime(kind: str) -> None:
    if kind == "bundle":
        import tvm  # noqa: F401  (the TVM runtime; our bundles' only dependency)

        import mnv3compile.runner  # noqa: F401
    else:
        import onnxruntime  # noqa: F401


def serve(spec: WorkerSpec, connection) -> None:
    """Start up (timed), report, then answer ("run", n) with an untimed call and n calls'
    milliseconds, until "exit"."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops its workers
    try:
        start = time.perf_counter()
        _import_runtime(spec.kind)
        imported = time.perf_counter()
        resident = _memory_mib("VmRSS")
        call = _open(spec)
        opened = time.perf_counter()
        call()
        first = time.perf_counter()
        connection.send({"import_ms": (imported - start) * 1e3, "open_ms": (opened - imported) * 1e3,
                         "first_run_ms": (first - opened) * 1e3, "resident_after_import_mib": resident,
                         "peak_mib": _memory_mib("VmHWM")})
    except Exception as error:  # the parent raises it as the contender's failure
        connection.send({"error": f"{type(error).__name__}: {error}"})
        return
    while True:
        request = connection.recv()
        if request == "exit":
            return
        call()  # warm again: the other contenders ran since this process last did
        times = []
        for _ in range(request[1]):
            began = time.perf_counter()
            call()
            times.append((time.perf_counter() - began) * 1e3)
        connection.send(times)
