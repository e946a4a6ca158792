"""Android's loader rules checked here (targets/android_loader.py): what every model library links
against (the libtvm_ffi.so stub), and the check refusing libraries a device would refuse."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import NEEDS_ANDROID_LINKER

from mnv3compile.errors import UserError
from mnv3compile.targets.android_loader import check_android_library, require_loadable_on_android
from mnv3compile.targets.elf_symbols import DynamicSymbol, read_shared_library
from mnv3compile.targets.presets import preset
from mnv3compile.targets.toolchains import toolchain_for
from mnv3compile.targets.tvm_ffi_stub import build_stub_library, installed_tvm_ffi, stub_source, tvm_ffi_c_api

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


@NEEDS_ANDROID_LINKER
@pytest.mark.skipif(not Path("/usr/aarch64-linux-gnu/include/stdlib.h").is_file() or not shutil.which("javac"),
                    reason="needs libc6-dev-arm64-cross (gcc-aarch64-linux-gnu) and a JDK's jni.h")
def test_the_jni_binding_cross_compiles_for_android_needing_only_the_runtime_and_libc(tmp_path):
    """runtime/jni/mnv3_jni.c as the APK's libmnv3_jni.so, linked as 'build' links Android libraries
    (clang + lld, no NDK: bionic's headers are in the NDK only, so the C declarations come from
    arm64 glibc's headers; the symbols it binds are checked against bionic's lists)."""
    from mnv3compile.deploy_check import source_root

    root, toolchain = source_root(), toolchain_for(preset("arm64-android"))
    header = (root / "runtime/include/mnv3.h").read_text()
    c_api = frozenset(re.findall(r"\b(mnv3_\w+)\(", header))
    target = [f for f in toolchain.flags if f.startswith(("--target", "-fuse-ld"))]
    build_stub_library(tmp_path, toolchain.compiler, target, "libmnv3.so",
                       stub_source([DynamicSymbol(name, "function") for name in c_api]))
    jdk = Path(shutil.which("javac")).resolve().parents[1] / "include"
    output = tmp_path / "libmnv3_jni.so"
    flags = [f for f in toolchain.flags if f != "-ltvm_ffi"]  # a model library's link, not the binding's
    subprocess.run([toolchain.compiler, *flags, "-shared", "-fPIC", "-O2", f"-I{root / 'runtime/include'}",
                    f"-I{jdk}", f"-I{jdk / 'linux'}", "-isystem", "/usr/aarch64-linux-gnu/include",
                    str(root / "runtime/jni/mnv3_jni.c"), f"-L{tmp_path}", "-lmnv3", "-o", str(output)],
                   check=True, capture_output=True)
    check = check_android_library(output, app_libraries={"libmnv3.so": c_api})
    assert check.problems == [] and check.needed == ("libc.so", "libm.so", "libdl.so", "libmnv3.so")
    assert {symbol for symbol, library in check.bindings if library == "libc.so"} == {"malloc", "free"}
    assert {symbol for symbol, library in check.bindings if library == "libmnv3.so"} >= {"mnv3_open_with", "mnv3_run_f32"}
