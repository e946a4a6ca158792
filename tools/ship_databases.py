"""Make the tuning databases shipped in the package (schedules/tuning/databases/): for each arm64 ISA and
zoo model, 'mnv3compile tune --measure instructions' (resumable: run it again after an interruption
and it continues), then the records that beat the template's default tile, packed.

    python tools/ship_databases.py            # tune what is missing, then pack (an hour or so, 1 core)
    python tools/ship_databases.py --pack     # pack what is tuned

A shipped database is keyed by ISA (neon-dotprod, neon), not by preset: its records are the
templates' knob choices, which are the same code on every CPU of an ISA, and instruction counts
barely depend on the CPU model. 'build' takes it when the user has tuned nothing for the model.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from mnv3compile.model_source import load_model
from mnv3compile.schedules.tuning.database import default_folder
from mnv3compile.schedules.tuning.shipped import pack

TUNED_ON = {"neon-dotprod": "arm64-android", "neon": "arm64-linux"}  # ISA -> the preset tuned for it
MODELS = [("small", "int8"), ("large", "int8"), ("small", "none"), ("large", "none")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack", action="store_true", help="only pack the databases already tuned")
    args = parser.parse_args()
    for model, quant in MODELS:  # int8 first, on each ISA
        for isa, target in TUNED_ON.items():
            key = load_model(model, None, 1.0, 224, None, None).key(quant)
            folder = default_folder(target, key)
            if not args.pack:
                progress = folder / "progress.json"
                command = [sys.executable, "-m", "mnv3compile.cli", "tune", "--model", model, "--quant", quant,
                           "--target", target, "--measure", "instructions", *(["--resume"] if progress.exists() else [])]
                print(" ".join(command[2:]), flush=True)
                subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            if (folder / "progress.json").exists():
                written = pack(folder, isa, key)
                print(f"{isa} {key}: {written} ({written.stat().st_size / 1e3:.0f} kB)", flush=True)


if __name__ == "__main__":
    main()
