"""The Apache TVM 0.27 backend: ONNX -> Relax (frontend), compile and export (build). The Relax
rewrites between the two are mnv3compile.relax; the kernels' schedules, mnv3compile.schedules.

Our compiler as TVM passes (passes.py), for any Relax pipeline: ``pipeline(target)``, the ordered
list 'build' runs (a ``tvm.transform.Sequential``), ``pipeline_passes`` (the same as a list),
``IntegerLowering``, ``KernelTemplates``, ``TuningDatabase`` and ``PipelineReports``."""

from mnv3compile.tvm import vectorizable  # noqa: F401  (fixes an op attribute before any build)

_PASSES = ("IntegerLowering", "KernelTemplates", "PipelineReports", "TuningDatabase", "pipeline", "pipeline_passes")

__all__ = list(_PASSES)


def __getattr__(name: str):
    if name in _PASSES:  # passes.py imports the Relax rewrites and the schedules: on first use
        from mnv3compile.tvm import passes

        return getattr(passes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PASSES])
