"""Android's loader rules checked here (targets/android_loader.py): what every model library links
against (the libtvm_ffi.so stub), and the check refusing libraries a device would refuse."""

import subprocess
from pathlib import Path

import pytest
from conftest import NEEDS_ANDROID_LINKER

from mnv3compile.errors import UserError
from mnv3compile.targets.android_loader import check_android_library, require_loadable_on_android
from mnv3compile.targets.elf_symbols import read_shared_library
from mnv3compile.targets.presets import preset
from mnv3compile.targets.toolchains import toolchain_for
from mnv3compile.targets.tvm_ffi_stub import installed_tvm_ffi, tvm_ffi_c_api

CALLER = """
#include <stddef.h>
void *memcpy(void *, const void *, size_t);
void TVMFFIErrorSetRaisedFromCStrParts(const char *, const char **, int);
void *catopen(const char *, int);
int fail(char *a, const char *b, size_t n) {
  memcpy(a, b, n);
  TVMFFIErrorSetRaisedFromCStrParts("RuntimeError", &b, 1);
  return catopen(b, 0) != 0;
}
"""


def test_the_tvm_ffi_stub_carries_the_real_librarys_soname_and_c_api():
    toolchain = toolchain_for(preset("host"))
    stub = read_shared_library(Path(toolchain.workdir) / "libtvm_ffi.so")
    real = read_shared_library(installed_tvm_ffi())
    assert stub.soname == real.soname == "libtvm_ffi.so"
    assert {s.name for s in stub.defined} == {s.name for s in tvm_ffi_c_api()}
    assert "TVMFFIErrorSetRaisedFromCStrParts" in {s.name for s in stub.defined}
    assert {s.name for s in tvm_ffi_c_api()} <= {s.name for s in real.defined}


def _android_library(tmp_path, flags_without=(), extra=()) -> Path:
    toolchain = toolchain_for(preset("arm64-android"))
    source, output = tmp_path / "caller.c", tmp_path / "libcaller.so"
    source.write_text(CALLER)
    flags = [f for f in toolchain.flags if f not in flags_without]
    subprocess.run([toolchain.compiler, *flags, *extra, "-shared", "-fPIC", "-o", str(output), str(source)],
                   check=True, capture_output=True)
    return output


@NEEDS_ANDROID_LINKER
def test_a_symbol_newer_than_the_api_level_is_unresolved(tmp_path):
    library = _android_library(tmp_path)
    check = check_android_library(library)
    assert check.needed == ("libtvm_ffi.so", "libc.so", "libm.so", "libdl.so")
    assert set(check.bindings) == {("memcpy", "libc.so"), ("TVMFFIErrorSetRaisedFromCStrParts", "libtvm_ffi.so")}
    assert check.problems == ["no library it names in DT_NEEDED (libtvm_ffi.so, libc.so, libm.so, libdl.so) "
                              "defines catopen"]  # introduced in API 26
    assert check_android_library(library, api=26).problems == []


@NEEDS_ANDROID_LINKER
def test_a_library_without_the_tvm_ffi_in_dt_needed_is_refused(tmp_path):
    """What every compiled model was before the stub: loadable only where libtvm_ffi.so was global."""
    library = _android_library(tmp_path, flags_without=("-ltvm_ffi",), extra=("-Wl,-z,max-page-size=4096",))
    with pytest.raises(UserError) as error:
        require_loadable_on_android(library, api=26)
    assert str(error.value) == (
        f"{library} would not load on Android (API 26): no library it names in DT_NEEDED (libc.so, libm.so, "
        "libdl.so) defines TVMFFIErrorSetRaisedFromCStrParts; its segments are aligned to 4096 bytes; 16 KiB-page "
        "devices need 16384")


def test_a_host_library_is_not_an_android_one():
    problems = check_android_library(installed_tvm_ffi()).problems
    assert problems[0].startswith("it is not an arm64 library (EM_")
    assert problems[1].startswith("it needs libdl.so.2, libpthread.so.0, libstdc++.so.6")
