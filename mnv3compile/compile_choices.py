"""What the TVM backend's two choices accept (mnv3compile/tvm/build.py checks them), in a module
that imports nothing: the CLI lists them in --help without loading TVM."""

# "integer": int8 kernels, float32 requantization in the epilogue; "fixed-point": int8 kernels with
# integer-only epilogues; "fake": TVM's dequantize -> float kernel -> quantize.
INT8_LOWERINGS = ("integer", "fixed-point", "fake")
# "templates": our kernel templates (schedules/kernels/); "default": TVM's default schedules.
SCHEDULES = ("templates", "default")
