"""Reading bionic's symbol maps (targets/bionic_symbols.py) and the lists shipped from them
(targets/android_symbols/), which the Android loader check trusts."""

import pytest

from mnv3compile.targets.android_loader import system_library_symbols
from mnv3compile.targets.bionic_symbols import symbols_for_apps

MAP = """\
LIBC {
  global:
    plain;
    arm_only; # arm x86
    arm64_too; # arm arm64
    later; # introduced=26
    arm64_earlier; # introduced=28 introduced-arm64=23
    vendor_only; # llndk
    in_apex; # apex
    unreleased; # introduced=Baklava
    shown_twice;
  local:
    *;
};

LIBC_N { # introduced-arm64=24 introduced-x86=24
  global:
    in_n;
    in_n_later; # introduced=29
    shown_twice; # introduced=30
} LIBC;

LIBC_X86 { # x86
  global:
    x86_block;
} LIBC_N;

LIBC_PRIVATE {
  global:
    private_one;
} LIBC_N;

LIBC_PLATFORM {
  global:
    platform_one;
} LIBC_N;
"""


def test_map_rules_for_arm64_apps():
    assert symbols_for_apps(MAP) == {"plain": 21, "arm64_too": 21, "later": 26, "arm64_earlier": 23,
                                     "shown_twice": 21, "in_n": 24, "in_n_later": 29}


def test_map_rules_for_another_architecture():
    found = symbols_for_apps(MAP, "arm")
    assert found["arm_only"] == 9 and found["arm64_earlier"] == 28 and "in_n" in found and found["in_n"] == 9
    assert "x86_block" in symbols_for_apps(MAP, "x86")
    with pytest.raises(ValueError, match="unknown architecture 'mips'"):
        symbols_for_apps(MAP, "mips")


def test_shipped_lists_at_api_24():
    libc, libm, libdl = (system_library_symbols(f"lib{n}.so", 24) for n in ("c", "m", "dl"))
    assert {"memcpy", "memset", "memmove", "malloc", "__stack_chk_fail", "pthread_create"} <= libc
    assert "catopen" not in libc and "catopen" in system_library_symbols("libc.so", 26)  # introduced=26
    assert "bsd_signal" not in libc  # arm and x86 only
    assert "__system_property_add" not in libc  # LIBC_PLATFORM
    assert {"expf", "tanhf", "roundf", "lrintf"} <= libm and "cpowf" not in libm  # cpowf: LIBC_O, 26
    assert {"dlopen", "dlsym", "dlclose", "dlerror", "dlvsym"} <= libdl and "__cfi_slowpath" not in libdl
    assert system_library_symbols("libc++_shared.so", 24) is None
