"""What vector hardware a TVM target has, as the templates need it: its name (which says whether
int8 dot products exist: VNNI, dotprod) and its vector width. Register budgets are in the
templates' per-ISA knobs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Isa:
    name: str  # "avx512-vnni", "avx512", "avx2", "neon-dotprod", "neon", "scalar"
    vector_bytes: int  # one vector register

    def lanes(self, dtype: str) -> int:
        """Elements of ``dtype`` in one vector register (int8 kernels accumulate in int32)."""
        bits = 32 if dtype in ("int8", "uint8", "int32", "float32") else 64 if dtype in ("int64", "float64") else 16
        return max(1, self.vector_bytes * 8 // bits)


# x86 CPUs LLVM knows by name whose AVX-512 includes VNNI (vpdpbusd).
_VNNI_CPUS = ("cascadelake", "cooperlake", "icelake", "icelake-client", "icelake-server", "tigerlake",
              "sapphirerapids", "emeraldrapids", "graniterapids", "rocketlake", "znver4", "znver5")
_AVX512_CPUS = ("skylake-avx512", "skx", "cannonlake", "knl", "knm") + _VNNI_CPUS
_AVX2_CPUS = ("haswell", "broadwell", "skylake", "alderlake", "raptorlake", "meteorlake", "znver1", "znver2",
              "znver3", "core-avx2", "x86-64-v3") + _AVX512_CPUS


def isa_of(target) -> Isa:
    """The ISA a TVM target compiles for (its ``-mcpu`` and ``-mattr``)."""
    kind = target.kind.name
    if kind != "llvm":
        return Isa("scalar", 16)
    triple = str(target.attrs.get("mtriple", ""))
    mcpu = str(target.attrs.get("mcpu", ""))
    mattr = {str(a) for a in target.attrs.get("mattr", [])}
    if triple.startswith("aarch64") or mcpu.startswith(("cortex-a", "apple", "neoverse")):
        dotprod = "+dotprod" in mattr or mcpu in ("cortex-a76", "cortex-a77", "cortex-a78", "cortex-x1",
                                                 "cortex-a710", "cortex-x2", "cortex-a715", "cortex-x3",
                                                 "neoverse-n1", "neoverse-n2", "neoverse-v1", "apple-m1")
        return Isa("neon-dotprod" if dotprod else "neon", 16)
    if "+avx512vnni" in mattr or mcpu in _VNNI_CPUS:
        return Isa("avx512-vnni", 64)
    if "+avx512f" in mattr or mcpu in _AVX512_CPUS:
        return Isa("avx512", 64)
    if "+avx2" in mattr or mcpu in _AVX2_CPUS:
        return Isa("avx2", 32)
    return Isa("sse", 16)
