"""Target presets as data: what each target compiles for and which toolchain links it."""

from __future__ import annotations

from dataclasses import dataclass

from mnv3compile.errors import UserError

ANDROID_API = 24


@dataclass(frozen=True)
class TargetPreset:
    name: str
    description: str
    toolchain: str  # "host", "aarch64-linux-gnu" or "android"
    triple: str | None = None  # None: the machine we run on
    mcpu: str | None = None
    mattr: tuple[str, ...] = ()
    isa: str | None = None  # its row of the ISA table (schedules/kernels/isa.py); None: the host's, detected

    @property
    def is_host(self) -> bool:
        return self.toolchain == "host"

    def tvm_target(self) -> dict:
        """The dict ``tvm.target.Target`` takes (0.27 rejects option strings)."""
        target: dict = {"kind": "llvm", "num-cores": 1}
        if self.triple:
            target["mtriple"] = self.triple
        if self.mcpu:
            target["mcpu"] = self.mcpu
        if self.mattr:
            target["mattr"] = list(self.mattr)
        return target


_LINUX = "aarch64-linux-gnu"
_ANDROID = f"aarch64-linux-android{ANDROID_API}"
_DOT = ("+neon", "+dotprod")

PRESETS: tuple[TargetPreset, ...] = (
    TargetPreset("host", "this machine's CPU (llvm -mcpu=native)", "host", mcpu="native"),
    TargetPreset("arm64-linux", "generic ARMv8-A Linux (aarch64-linux-gnu), NEON", "aarch64-linux-gnu",
                 _LINUX, "cortex-a53", ("+neon",), "neon"),
    TargetPreset("arm64-android", f"generic ARMv8.2-A Android (API {ANDROID_API}+), NEON + dotprod", "android",
                 _ANDROID, "cortex-a76", _DOT, "neon-dotprod"),
    TargetPreset("pixel2", "Pixel 2: Snapdragon 835, Cortex-A73 big cores, no dotprod", "android",
                 _ANDROID, "cortex-a73", ("+neon",), "neon"),
    TargetPreset("pixel3", "Pixel 3: Snapdragon 845, Cortex-A75, dotprod", "android", _ANDROID, "cortex-a75", _DOT,
                 "neon-dotprod"),
    TargetPreset("pixel4", "Pixel 4: Snapdragon 855, Cortex-A76, dotprod", "android", _ANDROID, "cortex-a76", _DOT,
                 "neon-dotprod"),
    TargetPreset("pixel6", "Pixel 6: Tensor G1, Cortex-X1, dotprod", "android", _ANDROID, "cortex-x1", _DOT,
                 "neon-dotprod"),
    TargetPreset("pixel7", "Pixel 7: Tensor G2, Cortex-X1, dotprod", "android", _ANDROID, "cortex-x1", _DOT,
                 "neon-dotprod"),
    # The X3 has i8mm too; no kernel uses it yet, so the preset does not ask LLVM for it.
    TargetPreset("pixel8", "Pixel 8: Tensor G3, Cortex-X3, dotprod", "android", _ANDROID, "cortex-x3", _DOT,
                 "neon-dotprod"),
    TargetPreset("rpi4", "Raspberry Pi 4: Cortex-A72, 64-bit Linux", "aarch64-linux-gnu", _LINUX, "cortex-a72",
                 ("+neon",), "neon"),
    TargetPreset("rpi5", "Raspberry Pi 5: Cortex-A76, 64-bit Linux, dotprod", "aarch64-linux-gnu", _LINUX,
                 "cortex-a76", _DOT, "neon-dotprod"),
)
PRESETS_BY_NAME = {p.name: p for p in PRESETS}


def preset(name: str) -> TargetPreset:
    if name not in PRESETS_BY_NAME:
        raise UserError(f"unknown target {name!r}; choose one of: {', '.join(PRESETS_BY_NAME)} "
                        "(see 'mnv3compile targets')")
    return PRESETS_BY_NAME[name]
