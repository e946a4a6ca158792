"""Relax graph rewrites, between the ONNX import and TIR: the int8 lowering to integer kernels,
the rewrites that choose kernels (channels-last layout, dot products, float accumulation, packed
GEMVs, ...) and the ordered pass list that runs them (pipeline.py). Shared helpers: helpers.py."""

from mnv3compile.tvm import vectorizable  # noqa: F401  (what these rewrites legalize must vectorize)
