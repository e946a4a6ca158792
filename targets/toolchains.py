"""Find the compiler that links a target's shared object, or say exactly how to get one.

- host: the system ``cc``.
- arm64 Linux: ``aarch64-linux-gnu-gcc`` (Debian: gcc-aarch64-linux-gnu).
- Android: the NDK's clang when ANDROID_NDK_HOME / ANDROID_NDK_ROOT is set; otherwise Debian's
  ``clang`` + ``lld`` with ``--target=aarch64-linux-android24 -nostdlib`` and one-line stub
  libc.so/libm.so/libdl.so, which gives the library NDK-style DT_NEEDED entries and no glibc
  dependency; ``-z max-page-size=16384`` for 16 KiB-page Android 15 devices.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mnv3compile.errors import UserError
from mnv3compile.targets.presets import ANDROID_API, TargetPreset

ANDROID_STUB_LIBS = ("c", "m", "dl")


@dataclass(frozen=True)
class Toolchain:
    name: str
    compiler: str  # path
    flags: tuple[str, ...]
    # Where the flags point (stub libraries); kept alive by the toolchain object.
    workdir: str | None = None

    def fcompile(self, strip: bool = True) -> Callable:
        """A function for ``export_library(path, fcompile=...)``; ``strip`` drops symbols and debug
        information at link time (-s), as a library shipped in an app should be."""
        from tvm.support import cc

        compiler, flags = self.compiler, [*self.flags, *(["-s"] if strip else [])]

        def compile_shared(output, objects, options=None, **kwargs):
            cc.create_shared(output, objects, options=[*(options or []), *flags], cc=compiler)

        compile_shared.output_format = "so"
        return compile_shared


@dataclass(frozen=True)
class ToolchainStatus:
    kind: str
    found: str | None
    how_to_install: str


INSTALL = {
    "host": "apt-get install gcc",
    "aarch64-linux-gnu": "apt-get install gcc-aarch64-linux-gnu g++-aarch64-linux-gnu",
    "android": "set ANDROID_NDK_HOME to an Android NDK, or: apt-get install clang lld",
}


def _ndk_clang() -> str | None:
    for variable in ("ANDROID_NDK_HOME", "ANDROID_NDK_ROOT"):
        root = os.environ.get(variable)
        if root:
            for host in ("linux-x86_64", "darwin-x86_64"):
                candidate = Path(root) / "toolchains/llvm/prebuilt" / host / "bin" / f"aarch64-linux-android{ANDROID_API}-clang"
                if candidate.exists():
                    return str(candidate)
    return None


def status(kind: str) -> ToolchainStatus:
    if kind == "host":
        found = shutil.which("cc") or shutil.which("gcc")
    elif kind == "aarch64-linux-gnu":
        found = shutil.which("aarch64-linux-gnu-gcc")
    else:
        ndk = _ndk_clang()
        debian = shutil.which("clang") if shutil.which("ld.lld") else None
        found = ndk or debian
    return ToolchainStatus(kind, found, INSTALL[kind])


def _android_stubs() -> str:
    """A folder of one-line stub shared objects: linking against them records NDK-style
    DT_NEEDED entries (libc.so, libm.so, libdl.so) without any glibc."""
    folder = tempfile.mkdtemp(prefix="mnv3compile-android-stubs-")
    source = Path(folder) / "stub.c"
    source.write_text("void mnv3compile_stub(void) {}\n")
    for lib in ANDROID_STUB_LIBS:
        subprocess.run(["clang", f"--target=aarch64-linux-android{ANDROID_API}", "-shared", "-nostdlib",
                        "-fuse-ld=lld", f"-Wl,-soname,lib{lib}.so", "-o", str(Path(folder) / f"lib{lib}.so"),
                        str(source)], check=True, capture_output=True)
    return folder


def toolchain_for(target: TargetPreset) -> Toolchain:
    found = status(target.toolchain)
    if found.found is None:
        raise UserError(f"no toolchain for target {target.name!r} ({target.toolchain}); install it: "
                        f"{found.how_to_install}")
    if target.toolchain == "host":
        return Toolchain("host cc", found.found, ())
    if target.toolchain == "aarch64-linux-gnu":
        return Toolchain("aarch64-linux-gnu-gcc", found.found, ())
    common = ("-z", "max-page-size=16384")
    ndk = _ndk_clang()
    if ndk:
        return Toolchain("Android NDK clang", ndk, ("-Wl,-z,max-page-size=16384",))
    stubs = _android_stubs()
    return Toolchain("clang + lld (no NDK)", found.found,
                     (f"--target=aarch64-linux-android{ANDROID_API}", "-nostdlib", "-fuse-ld=lld",
                      f"-L{stubs}", *(f"-l{lib}" for lib in ANDROID_STUB_LIBS),
                      *(f"-Wl,{flag}" for flag in common)), stubs)
