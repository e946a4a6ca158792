"""Malformed-model fuzzing at a longer budget than the test run's: mutated ONNX models (tests/
model_fuzz.py: truncation, bit flips, wrong dtypes, missing/extra inputs, cycles, huge or zero
dims, empty graphs, duplicate names, unknown domains) through inspect, optimize, quantize and
build, in-process. Prints per command how many were accepted, refused in one line, and crashed
(a traceback or another exit code), and the first crashes in full.

    python benchmarks/fuzz_models.py [--cases 2000] [--seed 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from model_fuzz import COMMANDS, fuzz  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        result = fuzz(args.cases, args.seed, Path(work))
    print("| command | cases | accepted | refused (one line) | crashed |")
    print("|---|---|---|---|---|")
    for command in COMMANDS:
        outcome = result["outcomes"][command]
        print(f"| {command} | {sum(outcome.values())} | {outcome['accepted']} | {outcome['refused']} | "
              f"{outcome['crashed']} |")
    print(f"slowest case: {result['slowest_s']:.1f} s")
    for kind, command, output in result["crashes"]:
        print(f"\n--- crash: {command} on a model with {kind}\n{output}")


if __name__ == "__main__":
    main()
