"""Every kernel family's spec table (schedules/kernels/specs.py) as tests: for each row and each x86
ISA this CPU runs (its own, AVX2 as znver3, SSE as x86-64), the kernel its graph fuses to, once
scheduled by its family's template, equals the unscheduled kernel bit for bit, on odd shapes and
vector tails, with the kernel's real constants (so AVX2's vpmaddubsw gets only the weights it
multiplies exactly, as in a build)."""

import numpy as np
import pytest
import tvm
from conftest import cpu_flags

from mnv3compile.schedules.kernels.dispatch import NoTemplate, apply_template
from mnv3compile.schedules.kernels.isa import isa_of
from mnv3compile.schedules.kernels.specs import ARM64_TARGETS, SPECS, kernels_of, run_kernel
from mnv3compile.targets.presets import preset
from mnv3compile.tvm.build import tvm_target


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
    if flag and flag not in cpu_flags():
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


@pytest.mark.slow
@pytest.mark.parametrize("where", [*ARM64_TARGETS])
def test_each_arm64_variant_equals_the_unscheduled_kernel(stand_in_phone, tmp_path, where):
    """The same for NEON (smlal) and NEON + dotprod (sdot): every row's templated kernels and their
    unscheduled forms compiled for arm64 (linked as arm64-linux: the stand-in phone is glibc) and
    run on the stand-in phone over RPC. Integer kernels are
    equal bit for bit; float ones to float32 rounding: on arm64 LLVM contracts a multiply and an add
    into one fmla in the vector loops and not always in the scalar ones it makes of the unscheduled
    kernel (seen: 1 ulp in 5 of 24 outputs of a GEMV)."""
    from tvm import rpc

    from mnv3compile.schedules.tuning.measure import export_candidate
    from mnv3compile.targets.toolchains import toolchain_for

    target = tvm.target.Target({"kind": "llvm", "num-cores": 1, **ARM64_TARGETS[where]})
    isa = isa_of(target)
    toolchain = toolchain_for(preset("arm64-linux"))
    session = rpc.connect_tracker("127.0.0.1", stand_in_phone.tracker_port).request(stand_in_phone.key,
                                                                                      session_timeout=600)
    device, count, checked = session.cpu(), 0, []

    def run(func, arrays, fill):
        nonlocal count
        count += 1
        path = export_candidate(func.with_attr("global_symbol", "main"), target, toolchain,
                                tmp_path / f"kernel{count}.so")
        session.upload(str(path))
        tensors = [tvm.runtime.tensor(a, device) for a in arrays[:-1]]
        tensors.append(tvm.runtime.tensor(np.full_like(arrays[-1], fill), device))
        session.load_module(path.name)["main"](*tensors)
        return tensors[-1].numpy()

    for spec in SPECS:
        for kernel in kernels_of(spec, target):
            try:
                scheduled, variant = apply_template(kernel.func, isa)
            except NoTemplate:
                continue
            got, expected = run(scheduled, kernel.arrays, 2), run(kernel.func, kernel.arrays, 1)
            if np.issubdtype(expected.dtype, np.integer):
                np.testing.assert_array_equal(got, expected, err_msg=f"{variant.name} ({spec.label})")
            else:  # the fill values (1, 2) are far outside this tolerance: unwritten outputs still fail
                np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max(),
                                           err_msg=f"{variant.name} ({spec.label})")
            checked.append(variant.name)
    assert any("_smlal_" in name or "_sdot_" in name for name in checked), checked
