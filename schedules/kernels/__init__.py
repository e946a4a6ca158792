"""The kernels: the ISA table, tensor intrinsics, and per kernel family its compute (where we
write one) and its schedule template."""
