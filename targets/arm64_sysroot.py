"""The arm64 sysroot: Debian's arm64 python3 and libraries unpacked (``dpkg -x``, no chroot, no
bind mounts) with TVM's aarch64 wheels pip-installed into it from the host, and qemu-aarch64
registered with binfmt_misc. What runs arm64 code here: the stand-in phone (mnv3compile/phone.py),
qemu instruction counting (schedules/tuning/instructions.py) and deploy-test's arm64 rows."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from mnv3compile.errors import UserError

DEBIAN_PACKAGES = ("python3", "libgomp1", "libstdc++6", "ca-certificates")
WHEELS = ("apache-tvm==0.27.0.post1", "apache-tvm-ffi==0.1.14.post1", "numpy", "tornado", "psutil", "cloudpickle")
PLATFORMS = ("manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64")


def home() -> Path:
    """Where the sysroot and the phone's state live (the folder is the phone's, as it always was)."""
    from mnv3compile.cache import cache_root

    return cache_root() / "phone"


def run_checked(cmd: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise UserError(f"{what} failed: {' | '.join(tail)}")
    return result


def sysroot() -> Path:
    return home() / "sysroot"


def ensure_sysroot() -> Path:
    """Build the arm64 sysroot once (about a minute, nothing emulated); reused afterwards."""
    root = sysroot()
    if (root / ".complete").exists():
        return root
    if not shutil.which("dpkg") or not shutil.which("apt-get"):
        raise UserError("the stand-in phone needs Debian's apt-get and dpkg")
    work = home() / "apt"
    for sub in ("lists/partial", "cache/archives/partial"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    (work / "status").touch()
    apt = ["apt-get", "-q", "-o", "APT::Architecture=arm64", "-o", "APT::Architectures::=arm64",
           "-o", f"Dir::State::Lists={work / 'lists'}", "-o", f"Dir::State::status={work / 'status'}",
           "-o", f"Dir::Cache={work / 'cache'}"]
    run_checked([*apt, "update"], "apt-get update (arm64 package lists)")
    run_checked([*apt, "install", "-y", "--download-only", "--no-install-recommends", *DEBIAN_PACKAGES],
         "apt-get download of arm64 packages")
    staging = root.with_name("sysroot.partial")
    shutil.rmtree(staging, ignore_errors=True)  # our own unpacked files: no mounts can be inside
    staging.mkdir(parents=True)
    for deb in sorted((work / "cache" / "archives").glob("*.deb")):
        run_checked(["dpkg-deb", "-x", str(deb), str(staging)], f"unpacking {deb.name}")
    for name in ("lib", "bin", "sbin"):  # Debian's merged /usr
        if not (staging / name).exists():
            (staging / name).symlink_to(f"usr/{name}")
    python = sorted((staging / "usr/bin").glob("python3.*"))
    if not python:
        raise UserError("the arm64 packages held no python3")
    version = python[0].name.removeprefix("python")
    run_checked([sys.executable, "-m", "pip", "install", "-q", "--target", str(staging / "opt/site"),
          *[f"--platform={p}" for p in PLATFORMS], "--python-version", version, "--implementation", "cp",
          "--only-binary=:all:", *WHEELS], "pip install of the aarch64 TVM runtime")
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(staging / f"usr/lib/python{version}")],
                   capture_output=True)
    (staging / ".complete").write_text(version + "\n")
    if root.exists():
        shutil.rmtree(root)
    staging.rename(root)
    return root


def ensure_binfmt() -> None:
    """qemu-aarch64 registered with binfmt_misc, so arm64 executables run (and spawn) directly."""
    if not shutil.which("qemu-aarch64"):
        raise UserError("the stand-in phone needs qemu: apt-get install qemu-user binfmt-support")
    entry = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    if entry.exists() and entry.read_text().startswith("enabled"):
        return
    if not Path("/proc/sys/fs/binfmt_misc/register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc"], capture_output=True)
    if shutil.which("update-binfmts"):
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True)
    if not (entry.exists() and entry.read_text().startswith("enabled")):
        raise UserError("cannot register qemu-aarch64 with binfmt_misc (needs root and binfmt-support: "
                        "apt-get install qemu-user binfmt-support)")
