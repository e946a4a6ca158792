"""Did a change to the compiler change what it emits? A fingerprint per configuration, and a diff.

For zoo Small and Large, fp32 and int8, on this host's CPU, on LLVM's znver3 (the AVX2 path, run
natively when this CPU has AVX2) and on arm64 (NEON and dotprod presets), it records: the sha256
of the compiled library's code (.text), the kernel count and the kernel -> variant table of the
build report, and for host bundles the outputs on a fixed input. Record before a refactor, record
after, compare: outputs must be bit-identical and kernel counts equal; when .text differs, run
benchmarks/arm64_instructions.py on both trees for the arm64 instruction counts.

    python benchmarks/same_code.py record OUT [--resolution 224] [--only small]
    python benchmarks/same_code.py compare BEFORE AFTER
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
from elftools.elf.elffile import ELFFile

from mnv3compile.pipeline import BuildRequest, QuantizeSettings, build
from mnv3compile.targets.presets import preset
from mnv3compile.zoo import build_model, build_spec

# (label, model, quant, target preset, host CPU override, weight bits)
CONFIGS = [
    *((f"{m}-{q}-host", m, q, "host", None, 8) for m in ("small", "large") for q in ("none", "int8")),
    *((f"{m}-{q}-znver3", m, q, "host", "znver3", 8) for m in ("small", "large") for q in ("none", "int8")),
    *((f"{m}-int8-w7-znver3", m, "int8", "host", "znver3", 7) for m in ("small", "large")),
    *((f"{m}-{q}-{t}", m, q, t, None, 8) for m in ("small", "large") for q in ("none", "int8")
      for t in ("arm64-linux", "arm64-android")),
    # the same with the tuning database shipped for the ISA (what 'build' takes by default there)
    *((f"{m}-{q}-{t}-tuned", m, q, t, None, 8) for m in ("small", "large") for q in ("none", "int8")
      for t in ("arm64-linux", "arm64-android")),
]


def text_sha256(library: Path) -> str:
    with library.open("rb") as stream:
        return hashlib.sha256(ELFFile(stream).get_section_by_name(".text").data()).hexdigest()


def shipped_database(model: str, quant: str, target: str, resolution: int) -> Path:
    from mnv3compile.model_source import load_model
    from mnv3compile.tvm.build import tvm_target

    try:
        from mnv3compile.schedules.kernels.isa import isa_of
        from mnv3compile.schedules.tuning.shipped import shipped_database as shipped
    except ImportError:  # the tree before the re-zone
        from mnv3compile.schedules.isa import isa_of
        from mnv3compile.schedules.shipped import shipped_database as shipped
    key = load_model(model, None, 1.0, resolution, None, None).key(quant)
    return shipped(isa_of(tvm_target(preset(target))).name, key)[0]


def record(out: Path, resolution: int, only: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    fingerprints = json.loads((out / "fingerprints.json").read_text()) if (out / "fingerprints.json").exists() else {}
    for label, model, quant, target, cpu, weight_bits in CONFIGS:
        if only not in label or label in fingerprints:
            continue
        print(f"building {label} ...", file=sys.stderr, flush=True)
        if cpu:
            os.environ["MNV3COMPILE_HOST_CPU"] = cpu
        else:
            os.environ.pop("MNV3COMPILE_HOST_CPU", None)
        spec = build_spec(model, 1.0, resolution)
        database = shipped_database(model, quant, target, resolution) if label.endswith("-tuned") else None
        request = BuildRequest(target=preset(target), output=out / "bundles" / label, name=model,
                               model=build_model(spec), quant=quant, calib="synthetic:8" if quant == "int8" else None,
                               quant_settings=QuantizeSettings(weight_bits=weight_bits), database=database)
        result = build(request)
        report = json.loads((result.bundle / "build_report.json").read_text())
        entry = {"text_sha256": text_sha256(result.library), "kernel_count": report["kernel_count"],
                 "variants": (report.get("templates") or {}).get("templates")}
        if target == "host":
            from mnv3compile.runner import BundleRunner

            runner = BundleRunner(result.bundle)
            x = np.random.default_rng(0).standard_normal(runner.input_shape).astype(np.float32)
            outputs = runner.outputs(x)
            np.savez(out / f"{label}.npz", *outputs)
            entry["outputs_sha256"] = hashlib.sha256(b"".join(o.tobytes() for o in outputs)).hexdigest()
        fingerprints[label] = entry
        (out / "fingerprints.json").write_text(json.dumps(fingerprints, indent=1, sort_keys=True))


def compare(before: Path, after: Path) -> int:
    a = json.loads((before / "fingerprints.json").read_text())
    b = json.loads((after / "fingerprints.json").read_text())
    failures = 0
    print("| configuration | outputs | kernels | code (.text) | variant names |")
    print("|---|---|---|---|---|")
    for label in a:
        if label not in b:
            print(f"| {label} | not recorded after | | | |")
            continue
        x, y = a[label], b[label]
        outputs = "-" if "outputs_sha256" not in x else (
            "identical" if x["outputs_sha256"] == y.get("outputs_sha256") else "DIFFER")
        kernels = f"{x['kernel_count']}" if x["kernel_count"] == y["kernel_count"] else \
            f"DIFFER {x['kernel_count']} -> {y['kernel_count']}"
        code = "identical" if x["text_sha256"] == y["text_sha256"] else "differs"
        names = "same" if x["variants"] == y["variants"] else "renamed"
        failures += outputs == "DIFFER" or kernels.startswith("DIFFER")
        print(f"| {label} | {outputs} | {kernels} | {code} | {names} |")
    return 1 if failures else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    recording = commands.add_parser("record")
    recording.add_argument("out", type=Path)
    recording.add_argument("--resolution", type=int, default=224)
    recording.add_argument("--only", default="", help="the configurations whose label contains this")
    comparing = commands.add_parser("compare")
    comparing.add_argument("before", type=Path)
    comparing.add_argument("after", type=Path)
    args = parser.parse_args()
    if args.command == "record":
        record(args.out, args.resolution, args.only)
    else:
        sys.exit(compare(args.before, args.after))


if __name__ == "__main__":
    main()
