"""The Apache TVM 0.27 backend: ONNX -> Relax (frontend), compile and export (build). The Relax
rewrites between the two are mnv3compile.relax; the kernels' schedules, mnv3compile.schedules."""

from mnv3compile.tvm import vectorizable  # noqa: F401  (fixes an op attribute before any build)
