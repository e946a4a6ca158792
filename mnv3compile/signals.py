"""SIGINT and SIGTERM end a command cleanly: one line, exit 130 / 143, nothing half-written.

The first signal raises ``Interrupted`` in the main thread, so every ``with`` block on the way out
(the bundle's temporary folder, atomic writes) cleans up; later signals are only recorded, so a
second Ctrl-C cannot cut that cleanup short. A signal that arrives while TVM runs C++ code is
handled when control comes back to Python: either TVM's FFI re-raises it as its own error (the CLI
then sees that a signal was received and reports the signal, not the error), or the next Python
line raises it. ``check()`` before committing a result makes sure a signal swallowed along the
way still stops the command before anything is published.
"""

from __future__ import annotations

import contextlib
import signal
import threading

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
_received: list[int] = []


class Interrupted(BaseException):
    """A signal asked the command to stop (BaseException: no ``except Exception`` swallows it)."""

    def __init__(self, signum: int):
        super().__init__(name(signum))
        self.signum = signum


def _handle(signum, _frame) -> None:
    _received.append(signum)
    if len(_received) == 1:
        raise Interrupted(signum)


@contextlib.contextmanager
def handled():
    """SIGINT and SIGTERM raise ``Interrupted`` inside the block; the previous handlers come back
    after it (the CLI also runs in-process, under pytest). Outside the main thread, Python allows
    no handlers: the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    previous = {signum: signal.signal(signum, _handle) for signum in EXIT_CODES}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _received.clear()


def received() -> int | None:
    """The first signal received inside ``handled()``, if any."""
    return _received[0] if _received else None


def check() -> None:
    """Raise ``Interrupted`` if a signal came in and was swallowed on its way (by C++ code)."""
    if _received:
        raise Interrupted(_received[0])


def exit_code(signum: int) -> int:
    return EXIT_CODES.get(signum, 128 + signum)


def name(signum: int) -> str:
    return signal.Signals(signum).name
