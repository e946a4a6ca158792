"""The TVM FFI library as a compiled model links against it.

TVM's generated code calls the FFI library's C API directly (``TVMFFIErrorSetRaisedFromCStrParts``
on every error path), but ``export_library`` links nothing that defines it: the symbol resolved
only because a process happened to have ``libtvm_ffi.so`` in its global scope. Android's loader
binds every symbol when it opens a library and looks only in the library's own ``DT_NEEDED`` tree
and the global group; ``System.loadLibrary`` loads the runtime ``RTLD_LOCAL``, so there it failed.

Every model library therefore links a stub with the real library's soname and C API, built by the
target's own compiler: the library records ``DT_NEEDED libtvm_ffi.so`` and, at load, binds to the
copy the runtime already loaded (both glibc and bionic match a loaded library by soname) or to
the one next to it on the search path (an APK's ``lib/arm64-v8a/``). The stub itself is never
shipped. Its symbol list comes from the installed apache-tvm-ffi wheel, the version the runtime
is pinned to, so a C API added or removed there follows on the next build.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from mnv3compile.errors import UserError
from mnv3compile.targets.elf_symbols import DynamicSymbol, read_shared_library

TVM_FFI_SONAME = "libtvm_ffi.so"
# The FFI's stable C ABI; its C++ symbols are mangled and never called by generated code.
C_API_PREFIX = "TVMFFI"


def installed_tvm_ffi() -> Path:
    from tvm_ffi import libinfo

    return Path(libinfo.find_libtvm_ffi())


@cache  # read once per process: every toolchain and every Android check wants it
def tvm_ffi_c_api(library: Path | None = None) -> tuple[DynamicSymbol, ...]:
    """The C API symbols ``library`` (default: the installed wheel's libtvm_ffi.so) exports."""
    found = read_shared_library(library or installed_tvm_ffi())
    symbols = tuple(s for s in found.defined if s.name.startswith(C_API_PREFIX))
    if not any(s.name == "TVMFFIErrorSetRaisedFromCStrParts" for s in symbols):
        raise UserError(f"{found.path} does not export TVMFFIErrorSetRaisedFromCStrParts: not the TVM FFI "
                        "library this version of mnv3compile links against (apache-tvm-ffi==0.1.14.post1)")
    return symbols


def stub_source(symbols: Sequence[DynamicSymbol]) -> str:
    """C with one definition per symbol: the linker needs each name and its kind, nothing more."""
    lines = ["/* A link-time stand-in written by mnv3compile/targets/tvm_ffi_stub.py; never loaded. */"]
    for symbol in sorted(symbols, key=lambda s: s.name):
        lines.append(f"char {symbol.name}[8];" if symbol.kind == "object" else f"void {symbol.name}(void) {{}}")
    return "\n".join(lines) + "\n"


def build_stub_library(folder: Path, compiler: str, target_flags: Sequence[str], soname: str, source: str) -> Path:
    """Compile ``source`` into ``folder/<soname>`` for the toolchain's target, without any C library."""
    folder.mkdir(parents=True, exist_ok=True)
    c_file, output = folder / f"{soname}.c", folder / soname
    c_file.write_text(source)
    command = [compiler, *target_flags, "-shared", "-fPIC", "-nostdlib", f"-Wl,-soname,{soname}", "-o", str(output),
               str(c_file)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise UserError(f"{compiler} could not build the link stub {soname}: {detail[-1] if detail else 'no output'}")
    return output
