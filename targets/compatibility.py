"""Whether a library built for one target preset can run on a device: what 'run --rpc' checks
before it sends a library, so a mismatch is one line instead of TVM's 30-line RPCError (or a
SIGILL on the device)."""

from __future__ import annotations

from pathlib import Path

from mnv3compile.errors import UserError
from mnv3compile.targets.presets import PRESETS, preset as target_preset


def require_runs_on_device(bundle: Path, preset_name: str, stand_in: bool, key: str | None = None) -> None:
    """Refuse a host library on a device and bionic on the glibc stand-in phone, and, when the
    device key is a preset's name (the README's convention, --key pixel6), a library for another C
    library or for instructions that device lacks (dotprod on a Pixel 2)."""
    built_for = target_preset(preset_name)
    toolchain = built_for.toolchain
    if toolchain == "host":
        raise UserError(f"{bundle} was built for this machine ('{preset_name}'), not for a device: run it without "
                        "--rpc, or build it with --target arm64-linux (the stand-in phone) or a phone preset")
    if toolchain == "android" and stand_in:
        raise UserError(f"{bundle} is an Android library ('{preset_name}', bionic libc) and the stand-in phone is "
                        "arm64 Linux (glibc): build with --target arm64-linux to run it there, or give --rpc "
                        "HOST:PORT --key KEY of a tracker with a real Android device")
    device = next((p for p in PRESETS if p.name == key), None)
    if device is None or device.is_host or device.name == built_for.name:
        return
    missing = [feature for feature in built_for.mattr if feature not in device.mattr]
    if (device.toolchain == "android") != (toolchain == "android") or missing:
        why = f"it needs {' '.join(missing)}" if missing else \
            f"it links {'bionic' if toolchain == 'android' else 'glibc'}, the device has the other libc"
        raise UserError(f"{bundle} was built for {preset_name} and the devices under key {key!r} are "
                        f"{device.description}: {why}; build with --target {device.name}")
