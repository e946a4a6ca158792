"""What a shared library needs and provides, read from its ELF dynamic section and symbol table
(pyelftools): the checks an Android app's loader makes when it opens a library, made here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mnv3compile.errors import UserError


@dataclass(frozen=True)
class DynamicSymbol:
    name: str
    kind: str  # "function", "object" or "other"


@dataclass(frozen=True)
class SharedLibrary:
    """The dynamic-linking facts of one ELF shared object."""

    path: Path
    machine: str  # pyelftools' e_machine name: "EM_AARCH64", "EM_X86_64"
    soname: str | None
    needed: tuple[str, ...]  # DT_NEEDED, in order
    undefined: tuple[str, ...]  # strong undefined symbols: the loader must bind each (weak ones may stay 0)
    defined: tuple[DynamicSymbol, ...]  # exported (global or weak, default or protected visibility)
    load_alignments: tuple[int, ...]  # p_align of each PT_LOAD segment
    bind_now: bool  # DF_BIND_NOW / DF_1_NOW: every symbol bound at load, as bionic always does


_KINDS = {"STT_FUNC": "function", "STT_GNU_IFUNC": "function", "STT_OBJECT": "object", "STT_TLS": "object"}


def read_shared_library(path: Path) -> SharedLibrary:
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        with open(path, "rb") as stream:
            elf = ELFFile(stream)
            dynamic = elf.get_section_by_name(".dynamic")
            symbols = elf.get_section_by_name(".dynsym")
            if elf["e_type"] != "ET_DYN" or dynamic is None or symbols is None:
                raise UserError(f"{path} is not a shared library (no dynamic section)")
            tags = list(dynamic.iter_tags())
            needed = tuple(t.needed for t in tags if t.entry.d_tag == "DT_NEEDED")
            soname = next((t.soname for t in tags if t.entry.d_tag == "DT_SONAME"), None)
            flags = sum(t.entry.d_val for t in tags if t.entry.d_tag == "DT_FLAGS")
            flags_1 = sum(t.entry.d_val for t in tags if t.entry.d_tag == "DT_FLAGS_1")
            undefined, defined = [], []
            for symbol in symbols.iter_symbols():
                if not symbol.name:
                    continue
                binding, shndx = symbol["st_info"]["bind"], symbol["st_shndx"]
                if shndx == "SHN_UNDEF":
                    if binding == "STB_GLOBAL":
                        undefined.append(symbol.name)
                elif binding in ("STB_GLOBAL", "STB_WEAK", "STB_GNU_UNIQUE") and \
                        symbol["st_other"]["visibility"] in ("STV_DEFAULT", "STV_PROTECTED"):
                    defined.append(DynamicSymbol(symbol.name, _KINDS.get(symbol["st_info"]["type"], "other")))
            alignments = tuple(s["p_align"] for s in elf.iter_segments() if s["p_type"] == "PT_LOAD")
            return SharedLibrary(Path(path), elf["e_machine"], soname, needed, tuple(sorted(set(undefined))),
                                 tuple(defined), alignments, bool(flags & 0x8 or flags_1 & 0x1))
    except (ELFError, OSError) as error:
        raise UserError(f"{path}: cannot read it as an ELF shared library ({error})") from error
