"""Tuning the kernel templates' knobs: the tune session, measurers (time, or arm64 instructions
under qemu), MetaSchedule databases and the ones shipped in the package."""
