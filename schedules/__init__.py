"""Kernels and their tuning (imported as ``mnv3compile.schedules``): ``kernels`` (ISA table,
intrinsics, templates) and ``tuning`` (sessions, measurers, databases).

As TVM passes for any Relax pipeline (passes.py; TVM is imported on first use of these names):
``KernelTemplates(target=None, skip=(), report=None)`` schedules the fused kernels with our
templates, ``TuningDatabase(database, target=None, report=None)`` applies a 'tune' database."""

_PASSES = ("KernelTemplates", "TuningDatabase")

__all__ = list(_PASSES)


def __getattr__(name: str):
    if name in _PASSES:  # importing TVM takes seconds: only when a pass is asked for
        from mnv3compile.schedules import passes

        return getattr(passes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PASSES])
