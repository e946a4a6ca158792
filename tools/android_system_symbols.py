"""Write the symbol lists of the NDK's system libraries that the Android loader check reads
(targets/android_symbols/*.txt) from bionic's symbol maps: one line per symbol apps on arm64 can
link against, with the API level it appeared in.

    git clone https://android.googlesource.com/platform/bionic       # or a mirror of it
    python tools/android_system_symbols.py bionic                       # rewrites targets/android_symbols/

The maps are what the NDK's own stub libraries are generated from, so the lists say what a device
of each API level provides without the NDK being installed here.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from mnv3compile.targets.android_loader import SYMBOL_LISTS
from mnv3compile.targets.bionic_symbols import symbols_for_apps

MAPS = {"libc.so": "libc/libc.map.txt", "libm.so": "libm/libm.map.txt", "libdl.so": "libdl/libdl.map.txt"}


def revision(checkout: Path) -> str:
    result = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else "an unknown revision"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bionic", type=Path, help="a checkout of AOSP's platform/bionic")
    parser.add_argument("--arch", default="arm64")
    parser.add_argument("-o", "--output", type=Path, default=SYMBOL_LISTS)
    parser.add_argument("--revision", help="the bionic commit the maps come from (default: the checkout's HEAD)")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    source = args.revision or revision(args.bionic)
    for soname, map_path in MAPS.items():
        symbols = symbols_for_apps((args.bionic / map_path).read_text(), args.arch)
        lines = [f"# {soname} on {args.arch}: the symbols the NDK lets apps link against, and the API level each",
                 f"# appeared in. Written by tools/android_system_symbols.py from bionic's {map_path} at {source}.",
                 *(f"{name} {level}" for name, level in sorted(symbols.items()))]
        (args.output / f"{soname}.txt").write_text("\n".join(lines) + "\n")
        print(f"{soname}: {len(symbols)} symbols")


if __name__ == "__main__":
    main()
