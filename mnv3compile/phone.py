"""The stand-in phone: an arm64 Python with the TVM runtime, run by qemu-user, serving TVM RPC.

No chroot and no bind mounts: the arm64 Debian packages are unpacked (``dpkg -x``) into a sysroot
folder, TVM's aarch64 wheels are pip-installed into it from the host, and binfmt_misc lets the
emulated RPC server start its worker processes. A tracker and a server listen on 127.0.0.1 only;
their PIDs are kept in the state file and only those processes are ever stopped.

    mnv3compile phone start | status | stop
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mnv3compile.errors import UserError
from mnv3compile.targets.arm64_sysroot import ensure_binfmt, ensure_sysroot, home

DEVICE_KEY = "mnv3-phone"


MAX_DEVICES = 5  # the servers' port range below: port + 5 .. port + 9


@dataclass
class PhoneState:
    tracker_pid: int
    server_pids: list[int]  # one emulated device each, all under ``key``
    tracker_port: int
    key: str = DEVICE_KEY
    host: str = "127.0.0.1"

    def tracker(self) -> str:
        return f"{self.host}:{self.tracker_port}"


def _free_port_block(size: int = 10) -> int:
    for start in range(19190, 19990, size):
        if all(_port_free(p) for p in range(start, start + size)):
            return start
    raise UserError("no free loopback ports for the stand-in phone")


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def _state_file() -> Path:
    return home() / "state.json"


def _stored_state() -> PhoneState | None:
    path = _state_file()
    if not path.exists():
        return None
    saved = json.loads(path.read_text())
    if "server_pid" in saved:  # written by an earlier release: one device
        saved["server_pids"] = [saved.pop("server_pid")]
    return PhoneState(**saved)


def read_state() -> PhoneState | None:
    """The stand-in phone's state when its tracker and all its devices run, else None."""
    state = _stored_state()
    if state is None or not (_alive(state.tracker_pid) and all(_alive(pid) for pid in state.server_pids)):
        return None
    return state


def _alive(pid: int) -> bool:
    try:  # a child of this process that died stays a zombie, which kill(0) still finds: reap it
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:  # not our child (started by another mnv3compile process)
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _wait_for_server(state: PhoneState, timeout: float) -> None:
    from tvm import rpc

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            summary = rpc.connect_tracker("127.0.0.1", state.tracker_port).summary()
            # free, not only listed: a device that just died may still be listed for a moment
            if summary.get("queue_info", {}).get(state.key, {}).get("free", 0) >= len(state.server_pids):
                return
        except Exception:  # tracker not up yet
            pass
        time.sleep(1)
    raise UserError(f"the stand-in phone did not register with its tracker within {timeout:.0f} s")


def start(timeout: float = 120.0, devices: int = 1) -> PhoneState:
    """Start the tracker and ``devices`` emulated RPC servers under one key (or return the running
    ones, adding devices up to ``devices``). Devices that died (a crash, or a test that kills
    one) are replaced behind the running tracker, whose address clients already have."""
    if not 1 <= devices <= MAX_DEVICES:
        raise UserError(f"--devices {devices}: the stand-in phone runs 1 to {MAX_DEVICES} devices")
    running = read_state()
    if running is not None and len(running.server_pids) >= devices:
        return running
    root = ensure_sysroot()
    ensure_binfmt()
    logs = home() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    previous = _stored_state()
    alive: list[int] = []
    started: list[int] = []  # by this call: stopped again if it does not finish (Ctrl-C, a timeout)
    try:
        if previous is not None and _alive(previous.tracker_pid):
            tracker_pid, port = previous.tracker_pid, previous.tracker_port
            alive = [pid for pid in previous.server_pids if _alive(pid)]
        else:
            stop()  # whatever is left of an earlier phone
            previous = None
            port = _free_port_block()
            tracker_pid = subprocess.Popen(
                [sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(port),
                 "--port-end", str(port + 4)], stdout=open(logs / "tracker.log", "w"), stderr=subprocess.STDOUT,
                start_new_session=True).pid
            started.append(tracker_pid)
        version = (root / ".complete").read_text().strip()
        # One worker per server: the stand-in phone checks what runs, not how fast, and an emulated
        # worker spinning for the next parallel loop costs as much as the loop.
        env = {"PATH": "/usr/bin:/bin", "QEMU_LD_PREFIX": str(root), "PYTHONPATH": str(root / "opt/site"),
               "TVM_USE_RUNTIME_LIB": "1", "HOME": str(home()), "TVM_NUM_THREADS": "1"}
        for _ in range(devices - len(alive)):  # each server takes a free port of the range
            started.append(subprocess.Popen(
                [str(root / f"usr/bin/python{version}"), "-m", "tvm.exec.rpc_server", "--tracker",
                 f"127.0.0.1:{port}", "--key", DEVICE_KEY, "--host", "127.0.0.1", "--port", str(port + 5),
                 "--port-end", str(port + 5 + MAX_DEVICES - 1),
                 "--load-library", str(root / "opt/site/tvm/lib/libtvm_runtime_extra.so")],
                env=env, stdout=open(logs / "server.log", "a"), stderr=subprocess.STDOUT,
                start_new_session=True).pid)
            alive.append(started[-1])
        state = PhoneState(tracker_pid, alive, port)
        _state_file().write_text(json.dumps(asdict(state)))
        _wait_for_server(state, timeout)
    except BaseException:
        _kill_groups(started)
        if previous is None:
            _state_file().unlink(missing_ok=True)
        else:  # the tracker and devices that ran before this call
            kept = PhoneState(previous.tracker_pid, [p for p in alive if p not in started], previous.tracker_port)
            _state_file().write_text(json.dumps(asdict(kept)))
        raise
    return state


def _kill_groups(pids: list[int]) -> None:
    """SIGTERM each process group, SIGKILL what is left after 10 s."""
    for pid in pids:  # workers die with their group
        try:
            os.killpg(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.2)
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass


def stop() -> bool:
    """Stop the processes this module started (their whole process groups), by PID."""
    state = _stored_state()
    if state is None:
        return False
    _kill_groups([*state.server_pids, state.tracker_pid])
    _state_file().unlink(missing_ok=True)
    return True


def unauthenticated_warning(tracker: str) -> str | None:
    """The warning for a TVM RPC tracker that is not on this machine (TVM RPC has no authentication:
    whoever reaches a tracker or server can run code on its devices), or None for a loopback one."""
    import ipaddress
    import socket

    host = tracker.rpartition(":")[0] or "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(socket.gethostbyname(host.strip("[]"))).is_loopback
    except (OSError, ValueError):
        loopback = False
    if loopback:
        return None
    return (f"warning: TVM RPC has no authentication: anyone who can reach {host} can run code on its "
            "devices; keep the tracker and the phones on a network you trust")


def default_tracker() -> tuple[str, str]:
    """(host:port, key) of the running stand-in phone."""
    state = read_state()
    if state is None:
        raise UserError("the stand-in phone is not running: mnv3compile phone start "
                        "(or give --rpc HOST:PORT --key KEY of your tracker)")
    return state.tracker(), state.key


def run_remote(library: Path, inputs: "list", tracker: str | None = None, key: str | None = None,
               outputs_per_call: int = 1, threads: int = 0, affinity: str = "big",
               on_threads=lambda count: None) -> list:
    """Upload ``library`` to a device behind a TVM RPC tracker (default: the stand-in phone), run its
    ``main`` on each input array and return the outputs: an array per input, or, for a model of
    ``outputs_per_call`` > 1 outputs (a detector's boxes and scores), a list of that many arrays.
    The device's thread pool is configured first as ``threads``/``affinity`` say (mnv3compile/threads.py);
    ``on_threads`` is told how many workers it then has."""
    from tvm import relax, rpc

    from mnv3compile import threads as pool

    pool.check(threads, affinity)

    if tracker is None:
        tracker, default_key = default_tracker()
        key = key or default_key
    host, _, port = tracker.rpartition(":")
    if not port.isdigit():
        raise UserError(f"--rpc takes HOST:PORT of a TVM RPC tracker, got {tracker!r}")
    try:  # TVM's own client retries for a minute; say at once when nothing listens there
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=3).close()
    except OSError as exc:
        raise UserError(f"cannot reach the TVM RPC tracker at {tracker}: {exc.strerror or exc}") from exc
    try:
        session = rpc.connect_tracker(host or "127.0.0.1", int(port)).request(key, session_timeout=600, max_retry=2)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot reach a device with key {key!r} through the tracker {tracker}: {first}") from exc
    session.upload(str(library))
    module = session.load_module(Path(library).name)
    device = session.cpu()
    on_threads(pool.configure_remote(session, threads, affinity))  # the stand-in phone's servers run 1
    vm = relax.VirtualMachine(module, device)
    outputs = []
    for array in inputs:
        import tvm

        result = vm["main"](tvm.runtime.tensor(array, device))
        if outputs_per_call > 1:  # a tuple stays on the device: its items are fetched one by one
            get_item = session.get_function("ffi.ArrayGetItem")
            outputs.append([get_item(result, index).numpy() for index in range(outputs_per_call)])
        else:
            outputs.append(result.numpy() if hasattr(result, "numpy") else result[0].numpy())
    return outputs
