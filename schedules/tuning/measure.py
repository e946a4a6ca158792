"""How 'tune' times a candidate kernel: here (``LocalMeasurer``), or on a device behind a TVM RPC
tracker (``RpcMeasurer``: cross-compiled here with the target's toolchain, uploaded, timed there).

A measurer is called with a scheduled PrimFunc and returns its cost in the measurer's ``unit``
(microseconds here; schedules/tuning/instructions.py's counts instructions), or raises: an ordinary
exception is the candidate's failure (recorded, skipped), ``DeviceLost`` is the device's (the
tuner keeps every record and stops; --resume continues).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np



def export_candidate(scheduled, target, toolchain, path: Path) -> Path:
    """One candidate PrimFunc compiled for ``target`` and linked by the target's toolchain into
    ``path`` (unstripped: the runner looks the function up by name)."""
    import tvm

    library = tvm.compile(tvm.IRModule({"main": scheduled}), target)
    library.export_library(str(path), fcompile=toolchain.fcompile(strip=False))
    return path


class DeviceLost(BaseException):
    """The RPC device or its tracker went away and did not come back in time (not a candidate's
    fault, so a BaseException: the tuner does not record it as a failed candidate)."""


@dataclass
class Measurement:
    """TVM's time_evaluator: ``repeat`` timings, each of as many calls as fill ``min_repeat_ms``;
    the median of the repeats is the candidate's latency."""

    repeat: int = 5
    min_repeat_ms: int = 40
    cooldown_s: float = 0.0  # a pause before each candidate, so a phone does not heat up and throttle


def random_arrays(func, seed: int = 0) -> list[np.ndarray]:
    """Random arrays for a kernel's parameters: int8-range integers, or standard normal floats."""
    rng = np.random.default_rng(seed)
    arrays = []
    for param in func.params:
        shape, dtype = [int(d) for d in param.shape], str(param.dtype)
        data = rng.integers(-128, 128, shape) if "int" in dtype else rng.standard_normal(shape)
        arrays.append(data.astype(dtype))
    return arrays


def random_arguments(func, seed: int = 0) -> list:
    """``random_arrays`` as TVM tensors on this machine."""
    import tvm

    return [tvm.runtime.tensor(array) for array in random_arrays(func, seed)]


def _first_line(exc: Exception) -> str:
    """An exception's first line (TVM's RPC errors carry a whole remote traceback), or its type."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _time(module, device, arguments, settings: Measurement) -> float:
    if settings.cooldown_s:
        time.sleep(settings.cooldown_s)
    timer = module.time_evaluator("main", device, number=1, repeat=settings.repeat,
                                  min_repeat_ms=settings.min_repeat_ms)
    return float(np.median(timer(*arguments).results)) * 1e6


class LocalMeasurer:
    """Times candidates on this machine, in this process, one at a time."""

    unit = "us"

    def __init__(self, target, work: Path, settings: Measurement, threads: int = 1):
        from mnv3compile import threads as pool

        self.target, self.work, self.settings, self.count = target, work, settings, 0
        self.threads = threads
        pool.check(threads, "big")

    def __call__(self, scheduled, arrays: list[np.ndarray] | None = None) -> float:
        """Microseconds of one call of ``scheduled`` on ``arrays`` (one per parameter; random ones
        when not given)."""
        import tvm

        library = tvm.compile(tvm.IRModule({"main": scheduled}), self.target)
        self.count += 1
        path = self.work / f"candidate{self.count}.so"  # a new name each: dlopen reuses a loaded path
        library.export_library(str(path))
        arguments = random_arguments(scheduled) if arrays is None else [tvm.runtime.tensor(a) for a in arrays]
        from mnv3compile import threads as pool

        pool.configure(self.threads)  # the count tuned for (parallel kernels would take the pool's default)
        try:
            return _time(tvm.runtime.load_module(str(path)), tvm.cpu(), arguments, self.settings)
        finally:
            path.unlink(missing_ok=True)


def free_devices(tracker: str, key: str) -> int:
    """How many devices registered under ``key`` at ``tracker`` are free now (0 if it cannot say)."""
    from tvm import rpc

    host, _, port = tracker.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=3).close()
        summary = rpc.connect_tracker(host or "127.0.0.1", int(port)).summary()
    except Exception:  # RpcMeasurer waits for it and says so
        return 0
    return int(summary.get("queue_info", {}).get(key, {}).get("free", 0))


class RpcMeasurer:
    """Cross-compiles each candidate here (the target's toolchain) and times it on a device the
    tracker hands out under ``key``. A session that breaks is requested again for up to
    ``device_timeout`` seconds (a phone that rebooted, a cable pulled and put back) and the
    candidate measured again; then ``DeviceLost``."""

    unit = "us"

    def __init__(self, target, toolchain, tracker: str, key: str, work: Path, settings: Measurement,
                 device_timeout: float = 120.0, log=lambda text: None, name: str = "device", threads: int = 1):
        self.target, self.toolchain, self.work, self.settings = target, toolchain, work, settings
        self.threads = threads
        host, _, port = tracker.rpartition(":")
        self.host, self.port, self.key, self.tracker = host or "127.0.0.1", int(port), key, tracker
        self.device_timeout, self.log, self.name = device_timeout, log, name
        self.session, self.count = None, 0
        work.mkdir(parents=True, exist_ok=True)

    def _connect(self):
        from tvm import rpc

        deadline = time.monotonic() + self.device_timeout
        while True:
            try:
                # TVM's client retries for a minute on its own: ask the socket first.
                socket.create_connection((self.host, self.port), timeout=3).close()
                tracker = rpc.connect_tracker(self.host, self.port)
                # A request for a key no device has waits forever at the tracker: look first.
                queue = tracker.summary().get("queue_info", {}).get(self.key, {})
                if queue.get("free", 0) < 1:
                    raise ConnectionError(f"no free device with key {self.key!r} registered")
                self.session = tracker.request(self.key, session_timeout=0, max_retry=1)
                self._pin()
                return self.session
            except Exception as exc:
                if time.monotonic() >= deadline:
                    raise DeviceLost(f"no device with key {self.key!r} at the tracker {self.tracker} for "
                                     f"{self.device_timeout:.0f} s: {_first_line(exc)}") from None
                self.log(f"waiting for a device with key {self.key!r} at {self.tracker} ...")
                time.sleep(2)

    def _pin(self) -> None:
        """The threads tuned for, on big cores: TVM's runtime.config_threadpool(1 = big cores,
        threads), as a deployed app runs the model. A runtime that cannot (no big.LITTLE
        information) keeps its default, which the log says, as it says fewer workers than asked."""
        from mnv3compile import threads as pool

        try:
            workers = pool.configure_remote(self.session, self.threads)
            self.log(f"{self.name} (key {self.key!r}): measuring on {workers} thread{'s' if workers > 1 else ''} "
                     f"of its big cores" + (f", not the {self.threads} asked" if workers < self.threads else ""))
        except Exception as exc:
            self.log(f"{self.name} (key {self.key!r}): could not pin to a big core ({_first_line(exc)}); "
                     "default threads")

    def close(self) -> None:
        """Give the device back to the tracker (a TVM RPC server serves one session at a time)."""
        import gc

        self.session = None
        gc.collect()  # the session closes when its last reference goes

    def _alive(self) -> bool:
        import tvm

        try:
            tvm.runtime.tensor(np.zeros(1, np.float32), self.session.cpu())  # a round trip
            return True
        except Exception:
            return False

    def __call__(self, scheduled) -> float:
        import tvm

        self.count += 1
        path = export_candidate(scheduled, self.target, self.toolchain, self.work / f"candidate{self.count}.so")
        try:
            for attempt in (1, 2):
                session = self.session or self._connect()
                try:
                    session.upload(str(path))
                    module = session.load_module(path.name)
                    device = session.cpu()
                    arguments = [tvm.runtime.tensor(a, device) for a in random_arrays(scheduled)]
                    return _time(module, device, arguments, self.settings)
                except Exception:
                    if self._alive():
                        raise  # the device is there: the candidate itself failed
                    self.session = None
                    self.log(f"lost {self.name} (key {self.key!r}); requesting a device again")
                    if attempt == 2:
                        raise DeviceLost(f"the device with key {self.key!r} went away twice while measuring "
                                         "one candidate") from None
        finally:
            path.unlink(missing_ok=True)
