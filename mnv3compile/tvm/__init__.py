"""The Apache TVM 0.27 backend: ONNX -> Relax, an explicit Relax pipeline, build and export."""
