"""Which symbols an NDK system library (libc.so, libm.so, libdl.so) offers apps on one
architecture, and from which API level, read from bionic's symbol maps (``libc/libc.map.txt``,
``libm/libm.map.txt``, ``libdl/libdl.map.txt`` in AOSP's platform/bionic). The NDK's stub
libraries are generated from these maps; tools/android_system_symbols.py turns them into the
lists shipped in targets/android_symbols/, which the Android loader check reads.

The map format: version blocks (``LIBC_N { # introduced=24 ... } LIBC;``) of ``symbol; # tags``
lines. Tags name architectures (a symbol tagged ``arm x86`` exists only there), the API level a
symbol appeared in (``introduced=26``, or per architecture ``introduced-arm64=24``), and who may
use it: ``llndk``, ``apex``, ``systemapi``, ``platform-only`` are not for apps, nor are the
``*_PRIVATE``, ``*_PLATFORM`` and ``*_DEPRECATED`` blocks.
"""

from __future__ import annotations

import re

ARCHITECTURES = frozenset({"arm", "arm64", "x86", "x86_64", "riscv64"})
NOT_FOR_APPS = frozenset({"llndk", "apex", "systemapi", "platform-only", "future"})
PRIVATE_BLOCKS = ("_PRIVATE", "_PLATFORM", "_DEPRECATED")
FIRST_API = {"arm": 9, "x86": 9, "arm64": 21, "x86_64": 21, "riscv64": 35}  # the first release of each

_BLOCK = re.compile(r"^(\w+)\s*\{\s*(?:#(.*))?$")
_SYMBOL = re.compile(r"^([\w.$]+)\s*;\s*(?:#(.*))?$")


def _tags(comment: str | None) -> list[str]:
    return comment.split() if comment else []


def _introduced(tags: list[str], arch: str) -> int | str | None:
    """The level the tags give (the architecture's own first), or None when they give none."""
    values = dict(tag.split("=", 1) for tag in tags if tag.startswith("introduced") and "=" in tag)
    value = values.get(f"introduced-{arch}", values.get("introduced"))
    if value is None:
        return None
    return int(value) if value.isdigit() else value  # a codename: not released yet


def _api_level(block_tags: list[str], symbol_tags: list[str], arch: str) -> int | None:
    """The API level from which apps on ``arch`` can call the symbol; None if they never can."""
    for tags in (block_tags, symbol_tags):
        arches = ARCHITECTURES.intersection(tags)
        if (arches and arch not in arches) or NOT_FOR_APPS.intersection(tags):
            return None
    level = _introduced(symbol_tags, arch)
    if level is None:
        level = _introduced(block_tags, arch)
    if isinstance(level, str):
        return None
    return max(level or 0, FIRST_API[arch])


def symbols_for_apps(map_text: str, arch: str = "arm64") -> dict[str, int]:
    """Every symbol of the map apps on ``arch`` can link against, with its first API level."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; one of {sorted(ARCHITECTURES)}")
    found: dict[str, int] = {}
    block_tags: list[str] | None = None  # None: outside a block, or in one apps may not use
    exported = False
    for raw in map_text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("}"):
            block_tags, exported = None, False
            continue
        block = _BLOCK.match(line)
        if block:
            private = block.group(1).endswith(PRIVATE_BLOCKS)
            block_tags, exported = (None if private else _tags(block.group(2))), False
            continue
        if line.startswith(("global:", "local:")):
            exported = line.startswith("global:")
            continue
        symbol = _SYMBOL.match(line)
        if symbol and exported and block_tags is not None:
            level = _api_level(block_tags, _tags(symbol.group(2)), arch)
            if level is not None:
                found[symbol.group(1)] = min(level, found.get(symbol.group(1), level))
    return found
