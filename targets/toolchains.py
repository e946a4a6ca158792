"""Find the compiler that links a target's shared object, or say exactly how to get one.

- host: the system ``cc``.
- arm64 Linux: ``aarch64-linux-gnu-gcc`` (Debian: gcc-aarch64-linux-gnu).
- Android: the NDK's clang when ANDROID_NDK_HOME / ANDROID_NDK_ROOT is set; otherwise Debian's
  ``clang`` + ``lld`` with ``--target=aarch64-linux-android24 -nostdlib`` and one-line stub
  libc.so/libm.so/libdl.so, which gives the library NDK-style DT_NEEDED entries and no glibc
  dependency; ``-z max-page-size=16384`` for 16 KiB-page Android 15 devices.

Every toolchain links the model against a stub ``libtvm_ffi.so`` (targets/tvm_ffi_stub.py), so the
library names the TVM FFI library it calls in its DT_NEEDED entries: Android's loader resolves a
library's symbols only from those (README, "Deploy").
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mnv3compile.errors import UserError
from mnv3compile.targets.presets import ANDROID_API, TargetPreset
from mnv3compile.targets.tvm_ffi_stub import TVM_FFI_SONAME, build_stub_library, stub_source, tvm_ffi_c_api

ANDROID_STUB_LIBS = ("c", "m", "dl")


@dataclass(frozen=True)
class Toolchain:
    name: str
    compiler: str  # path
    flags: tuple[str, ...]
    # Where the flags point (link stubs); removed when the process ends.
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


def _link_stubs(compiler: str, target_flags: tuple[str, ...], system_libs: tuple[str, ...]) -> str:
    """A folder of link-time stubs for one toolchain: libtvm_ffi.so (every model library needs it:
    targets/tvm_ffi_stub.py) and, for Android without the NDK, one-line libc.so/libm.so/libdl.so that
    give the library NDK-style DT_NEEDED entries without any glibc. Removed when the process ends."""
    folder = Path(tempfile.mkdtemp(prefix="mnv3compile-link-"))
    atexit.register(_remove_if_ours, folder, os.getpid())
    build_stub_library(folder, compiler, target_flags, TVM_FFI_SONAME, stub_source(tvm_ffi_c_api()))
    for lib in system_libs:
        build_stub_library(folder, compiler, target_flags, f"lib{lib}.so", "void mnv3compile_stub(void) {}\n")
    return str(folder)


def _remove_if_ours(folder: Path, owner: int) -> None:
    if os.getpid() == owner:  # a forked child that exits through atexit must not take it away
        shutil.rmtree(folder, ignore_errors=True)


def _link_tvm_ffi(stubs: str) -> tuple[str, ...]:
    # TVM puts link options before the objects, and Debian's gcc links --as-needed: a library named
    # before anything refers to it would be dropped without --no-as-needed.
    return (f"-L{stubs}", "-Wl,--push-state,--no-as-needed", "-ltvm_ffi", "-Wl,--pop-state")


def toolchain_for(target: TargetPreset) -> Toolchain:
    found = status(target.toolchain)
    if found.found is None:
        raise UserError(f"no toolchain for target {target.name!r} ({target.toolchain}); install it: "
                        f"{found.how_to_install}")
    ndk = _ndk_clang() if target.toolchain == "android" else None
    if target.toolchain in ("host", "aarch64-linux-gnu") or ndk:
        name = {"host": "host cc", "aarch64-linux-gnu": "aarch64-linux-gnu-gcc"}.get(target.toolchain, "Android NDK clang")
        compiler = ndk or found.found
        stubs = _link_stubs(compiler, (), ())
        page = ("-Wl,-z,max-page-size=16384",) if ndk else ()
        return Toolchain(name, compiler, (*page, *_link_tvm_ffi(stubs)), stubs)
    clang_android = (f"--target=aarch64-linux-android{ANDROID_API}", "-fuse-ld=lld")
    stubs = _link_stubs(found.found, clang_android, ANDROID_STUB_LIBS)
    return Toolchain("clang + lld (no NDK)", found.found,
                     (*clang_android, "-nostdlib", *_link_tvm_ffi(stubs), *(f"-l{lib}" for lib in ANDROID_STUB_LIBS),
                      "-Wl,-z,max-page-size=16384"), stubs)
