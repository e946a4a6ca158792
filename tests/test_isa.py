"""The ISA table (schedules/kernels/isa.py): a target's row comes from LLVM's features, not CPU
names; every preset names its row; and a new ISA is one row: a test-only row reaches the Relax
rewrites and the templates, and its kernels compute what the int32 conv does."""

import dataclasses

import numpy as np
import pytest
import tvm
from tvm import relax

from mnv3compile.relax.pipeline import run_pipeline
from mnv3compile.schedules.kernels import isa as isa_table
from mnv3compile.schedules.kernels.dispatch import apply_templates
from mnv3compile.schedules.kernels.family import Variant
from mnv3compile.schedules.kernels.isa import ISAS, Knobs, describe, isa_named, isa_of
from mnv3compile.schedules.kernels.knobs import Dot4Knobs
from mnv3compile.targets.presets import PRESETS
from mnv3compile.tvm.build import tvm_target
from test_dot_products import _int8_conv  # noqa: E402  (tests/ is on the path under pytest)


def _x86(mcpu: str, mattr: list[str] | None = None):
    spec = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": mcpu, **({"mattr": mattr} if mattr else {})}
    return tvm.target.Target(spec)


@pytest.mark.parametrize("preset", [p for p in PRESETS if not p.is_host], ids=lambda p: p.name)
def test_every_device_preset_names_the_row_its_target_gets(preset):
    assert preset.isa == isa_of(tvm_target(preset)).name


def test_a_cpu_known_only_by_its_llvm_features_gets_its_row_and_says_why():
    """No CPU-name lists: Arrow Lake (AVX2, FMA, AVX-VNNI, no AVX-512) is avx2 by its features."""
    assert isa_of(_x86("arrowlake")).name == "avx2"
    assert describe(_x86("arrowlake")) == "avx2 (LLVM features of arrowlake: avx2, fma)"
    assert isa_of(_x86("sapphirerapids")).name == "avx512-vnni"
    assert isa_of(_x86("x86-64")).name == "sse"
    assert isa_of(_x86("x86-64", ["+avx2", "+fma"])).name == "avx2"  # features given by -mattr


def test_arm64_rows_follow_dotprod():
    arm = {"kind": "llvm", "mtriple": "aarch64-linux-gnu"}
    assert isa_of(tvm.target.Target({**arm, "mcpu": "cortex-a55"})).name == "neon-dotprod"  # ARMv8.2
    assert isa_of(tvm.target.Target({**arm, "mcpu": "cortex-a53"})).name == "neon"


def test_variant_names_are_derived_from_the_record():
    variant = Variant("conv", "conv1x1", "int8", "avx2", layout="nhwc", instruction="vpmaddwd", tile="p4x24")
    assert variant.name == "conv1x1_nhwc_int8_vpmaddwd_avx2_p4x24"
    assert Variant("pad", "pad_transpose", "int8", "neon").name == "pad_transpose_int8_neon"


def test_a_new_isa_is_one_table_row(monkeypatch):
    """A row that exists only in this test (AVX2's instructions, its own dot4 tile) is what an AVX2
    target gets once it heads the table: DotProducts packs for its dot instruction, dispatch
    schedules with its knobs and names it, and the kernel computes the int32 conv exactly."""
    avx2 = isa_named("avx2")
    row = dataclasses.replace(avx2, name="test-isa", knobs=Knobs(avx2.knobs.conv, Dot4Knobs(dot4=(7, 1), gemv=2),
                                                                 avx2.knobs.gemv))
    monkeypatch.setattr(isa_table, "ISAS", (row, *ISAS))
    target = _x86("znver3")
    assert isa_of(target) is row
    rng = np.random.default_rng(0)
    weight = rng.integers(-64, 64, (1, 1, 16, 24)).astype(np.int8)  # vpmaddubsw's exact range
    module = run_pipeline(_int8_conv(weight), target)
    scheduled, report = apply_templates(module, row)
    (applied,) = report.applied
    assert applied.variant == Variant("dot4", "conv1x1", "int8", "test-isa", layout="nhwc",
                                      instruction="vpmaddubsw", tile="p4x8")  # 7 wanted, 4 divides the row
    x = rng.integers(-128, 128, (1, 8, 8, 16)).astype(np.int8)
    vm = relax.VirtualMachine(tvm.compile(scheduled, target), tvm.cpu())
    expected = np.einsum("nhwc,cf->nhwf", x.astype(np.int32), weight[0, 0].astype(np.int32))
    np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(x)).numpy(), expected)
