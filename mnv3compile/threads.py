"""How many threads a bundle's kernels run on, and on which cores: TVM's thread pool, configured
per calling thread (TVM keeps one pool per thread that runs kernels, so two models called from two
app threads each run with their own count).

Affinity (TVM's ``runtime.config_threadpool`` modes; the C API and JNI take the same names):

- ``big``: one worker per big core, pinned (cores ranked by their maximum frequency; on a phone the
  performance cluster). The default: little cores added to a pool usually make it slower, and a
  pinned worker does not migrate mid-inference.
- ``little``: the little cores, pinned (background work that must not heat the big cluster).
- ``all``: workers pinned over all the cores, the fastest first (0 threads: one per core).
- ``unpinned``: workers are not pinned at all (the OS scheduler places them).

``threads`` 0 means one per core of the chosen kind (``big``: the big cores).
"""

from __future__ import annotations

import os
import threading

from mnv3compile.errors import UserError

AFFINITIES = ("big", "little", "all", "unpinned")
DEFAULT_AFFINITY = "big"
MAX_THREADS = 256
# TVM's ThreadGroup::AffinityMode (runtime/threading_backend.h)
_MODES = {"big": 1, "little": -1, "all": 1, "unpinned": 1}  # kBig pins worker i to the i-th fastest core

# Times an idle worker yields its core before it sleeps (TVM's default, 300000, keeps it spinning
# for a tenth of a second after every inference: battery on a phone, and cores taken from whatever
# runs next). Between two kernels of an inference the wait is microseconds: 1000 yields measured as
# fast as 300000, 0 (sleep at once) twice as slow (docs/experiments.md, "Threads").
SPIN_COUNT = 2000

_configured = threading.local()  # (threads, affinity) the calling thread's pool has
_environment = threading.Lock()  # TVM reads its variables as a thread's pool starts
# TVM_NUM_THREADS as we (or the C runtime) last set it, beside it in the environment: a child process
# inherits both and knows the value is not the user's (one the user set is never changed).
OUR_ROOM = "MNV3COMPILE_TVM_NUM_THREADS"


def check(threads: int, affinity: str) -> None:
    """One clear error for a thread count or affinity the runtime cannot take."""
    if isinstance(threads, bool) or not isinstance(threads, int) or not 0 <= threads <= MAX_THREADS:
        raise UserError(f"threads {threads!r}: give a whole number from 1 to {MAX_THREADS} "
                        "(0: one per core of the chosen affinity)")
    if affinity not in AFFINITIES:
        raise UserError(f"affinity {affinity!r}: choose one of {', '.join(AFFINITIES)}")


def configure(threads: int = 0, affinity: str = DEFAULT_AFFINITY) -> None:
    """The calling thread's kernels run on ``threads`` workers placed as ``affinity`` says; a no-op
    when this thread is configured so already (reconfiguring restarts the pool's workers)."""
    check(threads, affinity)
    if getattr(_configured, "value", None) == (threads, affinity):
        return
    import tvm

    with _environment:  # the variables are read as this thread's pool starts, inside the call
        # TVM starts a thread's pool with TVM_NUM_THREADS workers (else half the cores on x86,
        # taken for hyper-threads: 1 of this machine's 2) and never grows it: room for every core
        # or what is asked, first, unless the user set the variable (then it is the cap). No more
        # than the cores: TVM pins no worker at all when its pool has more workers than cores.
        if os.environ.get("TVM_NUM_THREADS") in (None, os.environ.get(OUR_ROOM)):
            os.environ["TVM_NUM_THREADS"] = os.environ[OUR_ROOM] = str(max(threads, os.cpu_count() or 1))
        os.environ.setdefault("TVM_THREAD_POOL_SPIN_COUNT", str(SPIN_COUNT))
        bind = os.environ.get("TVM_BIND_THREADS")
        os.environ["TVM_BIND_THREADS"] = "0" if affinity == "unpinned" else "1"
        try:
            tvm.get_global_func("runtime.config_threadpool")(*threadpool_arguments(threads, affinity))
        finally:
            if bind is None:
                del os.environ["TVM_BIND_THREADS"]
            else:
                os.environ["TVM_BIND_THREADS"] = bind
    if threads and current_threads() != threads:
        raise UserError(f"this thread's TVM pool has {current_threads()} workers, fewer than the {threads} "
                        "threads asked (a thread's pool is sized as it starts: ask for threads before its "
                        "first inference, or set TVM_NUM_THREADS)")
    _configured.value = (threads, affinity)


def threadpool_arguments(threads: int, affinity: str, cores: int | None = None) -> tuple[int, int]:
    """(mode, count) for TVM's ``runtime.config_threadpool``; ``cores``: the machine's (default this
    one's; "all" with 0 threads means one per core; TVM caps the count at its pool's size)."""
    count = (cores or os.cpu_count() or 1) if affinity == "all" and threads == 0 else threads
    return _MODES[affinity], count


def configure_remote(session, threads: int, affinity: str = DEFAULT_AFFINITY) -> int:
    """A device's pool over TVM RPC, as ``configure`` does here: the server runs a session's calls
    on one thread of its own, whose pool this configures; the workers it then has (the device's
    TVM_NUM_THREADS caps them). "all" with 0 threads: every worker the device's pool has."""
    session.get_function("runtime.config_threadpool")(*threadpool_arguments(threads, affinity, MAX_THREADS))
    return int(session.get_function("runtime.NumThreads")())


def current_threads() -> int:
    """Workers the calling thread's pool runs kernels on."""
    import tvm

    return int(tvm.get_global_func("runtime.NumThreads")())
