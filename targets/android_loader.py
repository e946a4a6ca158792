"""Whether Android's loader can open a library, checked without a device.

Bionic binds every symbol of a library when it opens it, and looks for each only in the library's
own DT_NEEDED tree (and the namespace's global group, which an app's System.loadLibrary never adds
to). So a library opens on every device of its API level when each of its strong undefined symbols
is defined by a library it names in DT_NEEDED: the NDK's system libraries by the symbol lists in
targets/android_symbols/ (bionic's maps, tools/android_system_symbols.py), ``libtvm_ffi.so`` by
the installed TVM FFI's C API (the version the app's runtime must be built from), nothing else.
Android 15+ devices with 16 KiB pages also need every PT_LOAD segment aligned to 16 KiB.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from mnv3compile.errors import UserError
from mnv3compile.targets.elf_symbols import read_shared_library
from mnv3compile.targets.presets import ANDROID_API
from mnv3compile.targets.tvm_ffi_stub import TVM_FFI_SONAME, tvm_ffi_c_api

SYMBOL_LISTS = Path(__file__).parent / "android_symbols"
PAGE_SIZE = 16384  # the largest Android page size (Android 15+ devices)


@cache
def system_library_symbols(soname: str, api: int = ANDROID_API) -> frozenset[str] | None:
    """What the system library ``soname`` exports to apps of ``api`` on arm64; None if unknown."""
    path = SYMBOL_LISTS / f"{soname}.txt"
    if not path.is_file():
        return None
    symbols = set()
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, level = line.split()
            if int(level) <= api:
                symbols.add(name)
    return frozenset(symbols)


def provided_by(soname: str, api: int = ANDROID_API) -> frozenset[str] | None:
    if soname == TVM_FFI_SONAME:
        return frozenset(s.name for s in tvm_ffi_c_api())
    return system_library_symbols(soname, api)


@dataclass(frozen=True)
class LoaderCheck:
    library: Path
    needed: tuple[str, ...]
    unresolved: tuple[str, ...]  # strong undefined symbols no DT_NEEDED library provides
    unknown_needed: tuple[str, ...]  # DT_NEEDED libraries nothing here knows the symbols of
    bindings: tuple[tuple[str, str], ...]  # (undefined symbol, the DT_NEEDED library that defines it)
    machine: str
    load_alignments: tuple[int, ...]

    @property
    def problems(self) -> list[str]:
        found = []
        if self.machine != "EM_AARCH64":
            found.append(f"it is not an arm64 library ({self.machine})")
        if self.unknown_needed:
            found.append(f"it needs {', '.join(self.unknown_needed)}, which is neither an NDK system library nor "
                         "libtvm_ffi.so")
        if self.unresolved:
            found.append(f"no library it names in DT_NEEDED ({', '.join(self.needed) or 'none'}) defines "
                         f"{', '.join(self.unresolved)}")
        if any(a < PAGE_SIZE for a in self.load_alignments):
            found.append(f"its segments are aligned to {min(self.load_alignments)} bytes; 16 KiB-page devices need "
                         f"{PAGE_SIZE}")
        return found


def check_android_library(path: Path, api: int = ANDROID_API,
                          app_libraries: Mapping[str, frozenset[str]] | None = None) -> LoaderCheck:
    """``app_libraries``: what the app's own libraries (libmnv3.so, say) export, by soname."""
    library = read_shared_library(path)
    provider: dict[str, str] = {}
    unknown = []
    for soname in library.needed:  # the loader searches them in this order
        symbols = (app_libraries or {}).get(soname) or provided_by(soname, api)
        if symbols is None:
            unknown.append(soname)
        else:
            for symbol in symbols:
                provider.setdefault(symbol, soname)
    unresolved = tuple(s for s in library.undefined if s not in provider)
    bindings = tuple((s, provider[s]) for s in library.undefined if s in provider)
    return LoaderCheck(library.path, library.needed, unresolved, tuple(unknown), bindings, library.machine,
                       library.load_alignments)


def require_loadable_on_android(path: Path, api: int = ANDROID_API) -> None:
    """Refuse a library Android's loader would refuse, saying why."""
    problems = check_android_library(path, api).problems
    if problems:
        raise UserError(f"{path} would not load on Android (API {api}): " + "; ".join(problems))
