"""ONNX rewrite passes (imported as ``mnv3compile.passes``)."""
