"""Kernels and their tuning (imported as ``mnv3compile.schedules``): ``kernels`` (ISA table,
intrinsics, templates) and ``tuning`` (sessions, measurers, databases)."""
