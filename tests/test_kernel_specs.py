"""Every kernel family's spec table (schedules/kernels/specs.py) as tests: for each row and each x86
ISA this CPU runs (its own, AVX2 as znver3, SSE as x86-64), the kernel its graph fuses to, once
scheduled by its family's template, equals the unscheduled kernel bit for bit, on odd shapes and
vector tails, with the kernel's real constants (so AVX2's vpmaddubsw gets only the weights it
multiplies exactly, as in a build)."""

import numpy as np
import pytest
import tvm

from mnv3compile.schedules.kernels.dispatch import NoTemplate, apply_template
from mnv3compile.schedules.kernels.isa import isa_of
from mnv3compile.schedules.kernels.specs import SPECS, kernels_of, run_kernel
from mnv3compile.targets.presets import preset
from mnv3compile.tvm.build import tvm_target


def _cpu_flags() -> set[str]:
    with open("/proc/cpuinfo") as cpuinfo:
        line = next(line for line in cpuinfo if line.startswith("flags"))
    return set(line.split(":")[1].split())


# (target, CPU flag needed to run its code here)
X86_TARGETS = {
    "host": (lambda: tvm_target(preset("host")), None),
    "avx2": (lambda: tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver3"}), "avx2"),
    "sse": (lambda: tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "x86-64"}), None),
}


@pytest.mark.parametrize("where", [*X86_TARGETS])
@pytest.mark.parametrize("spec", SPECS, ids=[s.label.replace(" ", "_") for s in SPECS])
def test_each_variant_equals_the_unscheduled_kernel(spec, where):
    make_target, flag = X86_TARGETS[where]
    if flag and flag not in _cpu_flags():
        pytest.skip(f"this CPU cannot run {flag} code")
    target = make_target()
    isa = isa_of(target)
    variants = []
    for kernel in kernels_of(spec, target):
        try:
            scheduled, variant = apply_template(kernel.func, isa)
        except NoTemplate:
            continue
        assert variant.isa == isa.name
        variants.append(variant)
        expected = run_kernel(kernel.func, target, kernel.arrays, fill=1)
        np.testing.assert_array_equal(run_kernel(scheduled, target, kernel.arrays, fill=2), expected,
                                      err_msg=f"{variant.name} ({kernel.name})")
    assert variants, f"no kernel of {spec.label} took a template on {isa.name}"
