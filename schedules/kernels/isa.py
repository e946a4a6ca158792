"""The ISA table: per instruction set, everything the kernels know of it, in one row (XNNPACK's
hardware-config idea): its vector width and registers, its int8 dot-product instruction (or the
stand-in the ``dot4`` kernel uses), the weights that instruction multiplies exactly, whether int8
depthwise convs accumulate on float32 FMAs there, and the templates' default knobs.

A target's ISA is the first row of its architecture whose LLVM features the target has (LLVM
knows the features of every CPU it names; no CPU-name lists here). Adding an ISA is a row here
plus its kernel variants (a tensor intrinsic, a template branch) where it needs new ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from mnv3compile.schedules.kernels.knobs import ConvKnobs, Dot4Knobs, GemvKnobs


@dataclass(frozen=True)
class DotInstruction:
    """The instruction the ``dot4`` kernel accumulates int8 products with (kernels/dot4.py)."""
    name: str  # as the tensor intrinsics name it (kernels/intrinsics.py): vnni, sdot, pmaddubsw, smlal
    mnemonic: str  # what the kernel executes, as variant names say it
    lanes: tuple[int, ...]  # int32 lanes of the vectors it can use, widest first
    exact_weights: tuple[int, int] = (-128, 127)  # int8 weights it multiplies exactly


@dataclass(frozen=True)
class Knobs:
    """The templates' default knobs on one ISA, per kernel family."""
    conv: ConvKnobs
    dot4: Dot4Knobs | None
    gemv: GemvKnobs


@dataclass(frozen=True)
class Isa:
    name: str
    arch: str  # "x86_64", "aarch64", or "any" (targets that are not LLVM CPUs)
    requires: tuple[str, ...]  # LLVM features a target must have for this row
    vector_bytes: int  # one vector register
    vector_registers: int
    knobs: Knobs
    dot: DotInstruction | None = None  # None: int8 convs are left to the other kernels
    float_depthwise: bool = False  # int8 depthwise convs accumulate on float32 FMAs (relax/float_accumulation.py)
    # int8 requantization as saturating integer narrowing (kernels/requantize.py): arm64's sqxtn and
    # sqadd make it 8 instructions per 8 outputs instead of 12
    saturating_requantize: bool = False
    # int8 depthwise convs (int32 accumulators) step this many channels at a time where the tile
    # allows, 0: a vector register's worth. NEON: 8, which LLVM makes one smull of 8 int8 pairs and
    # a saddw + saddw2 into the accumulators, where 4 took an sxtl per smlal.
    depthwise_int8_lanes: int = 0
    # float32 pointwise convs take 4 input channels per load, as multiply-adds by element (NEON's
    # fmla v.4s, w.4s, x.s[k]); x86 broadcasts from memory for free
    float_pointwise_by_lane: bool = False
    # Multiply-accumulates one core can issue per cycle, (float32 FMAs, int8 on ``dot``), assuming two
    # vector pipes (Zen, Xeon Gold/Platinum, Cortex-A76/X1): what benchmarks/kernels.py's "share of
    # peak" divides by. An estimate of the ceiling, not a measurement.
    peak_macs: tuple[int, int] = (0, 0)

    def lanes(self, dtype: str) -> int:
        """Elements of ``dtype`` in one vector register (int8 kernels accumulate in int32)."""
        bits = 32 if dtype in ("int8", "uint8", "int32", "float32") else 64 if dtype in ("int64", "float64") else 16
        return max(1, self.vector_bytes * 8 // bits)


# Default knobs, chosen by measuring Small's and Large's kernels one by one (docs/experiments.md has
# the figures). Tiles are (pixels, vector registers of channels). AVX2 has 16 ymm registers: float
# pointwise tiles stay small (7x1) or are chosen by the FMA model within 14 registers; int8 pointwise
# convs widen without a broadcast register per pixel (4x3) and take input channels in pairs
# (vpmaddwd); its dot4 stand-in (vpmaddubsw) streams up to 8 weight vectors past one broadcast (1x8).
# AVX-512 and NEON have 32 registers, for wider tiles. "wide_rows" paid on x86 and cost
# instructions on NEON (7 broadcasts per weight load), except in the smlal kernels (kernels/dot4.py).
_AVX2_KNOBS = Knobs(
    ConvKnobs(pointwise=(7, 1), pointwise_int8=(4, 3), depthwise=(7, 1), conv=(4, 2), gemv=5, wide_rows=True,
              fma_registers=14, int8_pairs=True),
    Dot4Knobs(dot4=(1, 8), gemv=5, wide_rows=True), GemvKnobs(gemv=5))
_AVX512_KNOBS = Knobs(
    ConvKnobs(pointwise=(7, 2), pointwise_int8=(4, 3), depthwise=(7, 1), conv=(4, 2), gemv=5, wide_rows=True,
              fma_registers=None),
    Dot4Knobs(dot4=(7, 3), gemv=5, wide_rows=True), GemvKnobs(gemv=5))
_NEON_KNOBS = Knobs(
    ConvKnobs(pointwise=(7, 3), pointwise_int8=(4, 3), depthwise=(7, 2), conv=(4, 3), gemv=5, fma_registers=None),
    Dot4Knobs(dot4=(4, 4), gemv=5), GemvKnobs(gemv=5))
_SCALAR_KNOBS = Knobs(
    ConvKnobs(pointwise=(4, 1), pointwise_int8=None, depthwise=(4, 1), conv=(4, 1), gemv=1, fma_registers=None),
    None, GemvKnobs(gemv=1))

# Rows in order of preference: a target takes the first of its architecture it has the features of.
ISAS: tuple[Isa, ...] = (
    Isa("avx512-vnni", "x86_64", ("avx512f", "avx512vnni"), 64, 32, _AVX512_KNOBS,
        DotInstruction("vnni", "vpdpbusd", (16, 8)), float_depthwise=True, peak_macs=(32, 128)),
    Isa("avx512", "x86_64", ("avx512f",), 64, 32, _AVX512_KNOBS, float_depthwise=True, peak_macs=(32, 0)),
    # vpmaddubsw saturates its int16 pair sums unless the weights lie in -64..63 (--weight-bits 7).
    Isa("avx2", "x86_64", ("avx2", "fma"), 32, 16, _AVX2_KNOBS,
        DotInstruction("pmaddubsw", "vpmaddubsw", (8,), exact_weights=(-64, 63)), float_depthwise=True,
        peak_macs=(16, 32)),
    Isa("sse", "x86_64", (), 16, 16, _AVX2_KNOBS, float_depthwise=True, peak_macs=(8, 0)),
    Isa("neon-dotprod", "aarch64", ("neon", "dotprod"), 16, 32, _NEON_KNOBS, DotInstruction("sdot", "sdot", (4,)),
        peak_macs=(8, 32), saturating_requantize=True, depthwise_int8_lanes=8,
        float_pointwise_by_lane=True),
    # no dot product: XNNPACK's "mlal lane" way, 8 input channels per step (kernels/dot4.py)
    Isa("neon", "aarch64", (), 16, 32, _NEON_KNOBS, DotInstruction("smlal", "smlal", (8,)), peak_macs=(8, 8),
        saturating_requantize=True, depthwise_int8_lanes=8, float_pointwise_by_lane=True),
    Isa("scalar", "any", (), 16, 16, _SCALAR_KNOBS),
)
ISAS_BY_NAME = {isa.name: isa for isa in ISAS}


def isa_named(name: str) -> Isa:
    return ISAS_BY_NAME[name]


def _arch(target) -> str:
    triple = str(target.attrs.get("mtriple", ""))
    if not triple:  # the host: LLVM's own triple
        from tvm.target import codegen

        triple = codegen.llvm_get_system_triple()
    return "aarch64" if triple.startswith(("aarch64", "arm64")) else "x86_64"


def isa_of(target) -> Isa:
    """The row of the ISA table a TVM target compiles for: the first of its architecture whose
    LLVM features (from its ``-mcpu`` and ``-mattr``) it has."""
    from tvm.target import codegen

    table = ISAS  # read at each call: a test may add a row

    if target.kind.name != "llvm":
        return next(isa for isa in table if isa.arch == "any")
    arch = _arch(target)
    return next(isa for isa in table
                if isa.arch in (arch, "any") and all(codegen.target_has_features(f, target) for f in isa.requires))


def current_isa() -> Isa | None:
    """The ISA of the target the Relax pipeline runs under (``with target:``), None outside one."""
    import tvm

    target = tvm.target.Target.current(allow_none=True)
    return isa_of(target) if target is not None else None


def describe(target) -> str:
    """Which row a target got and by what, for build reports: 'avx2 (LLVM features of znver3: avx2, fma)'."""
    isa = isa_of(target)
    cpu = str(target.attrs.get("mcpu", "")) or "the default CPU"
    if not isa.requires:
        return f"{isa.name} ({cpu} has none of the features the other rows need)"
    return f"{isa.name} (LLVM features of {cpu}: {', '.join(isa.requires)})"
