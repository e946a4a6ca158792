"""The kernels: the ISA table, tensor intrinsics, and per kernel family its compute (where we
write one) and its schedule template.

Adding an ISA: a row in isa.py (its LLVM features, vector width and registers, dot instruction,
default knobs); where it needs new instructions, their tensor intrinsic (intrinsics.py) and the
family's branch for them; tests/test_isa.py shows a test-only row reaching dispatch. Adding a
kernel family: a module with its knobs dataclass (knobs.py), its compute carrying
``family.rule(name)``, a ``KernelFamily`` with ``applies`` and ``schedule``, an entry in
dispatch.FAMILIES, and rows in specs.py (which give it its tests and benchmark rows).
"""
