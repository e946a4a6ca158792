"""The Apache TVM 0.27 backend: ONNX -> Relax, an explicit Relax pipeline, build and export."""

from mnv3compile.tvm import vectorizable  # noqa: F401  (fixes an op attribute before any build)
