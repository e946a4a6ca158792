"""Structural tests of the Relax rewrites (mnv3compile/relax/), as TVM tests its graph passes: the
rewrite of a small ``Before`` module must be ``tvm.ir.assert_structural_equal`` to an ``Expected``
module (the ops, their attributes, the bindings and the constants' values), and where the rewrite
does not apply, ``Expected`` is ``Before``.

``Before`` and ``Expected`` are TVMScript (``from tvm.script import relax as R, ir as I``). A rewrite
that emits a TE compute (``BlockBuilder.call_te``) adds a PrimFunc to the module, generated from the
kernel's TE; its ``Expected`` is built by ``expected_module`` with the BlockBuilder calls the
rewrite should make, so the comparison covers the PrimFunc as the kernel's TE makes it on the
arguments the rewrite should give it (shapes, packed constants, strides, instruction)."""

from __future__ import annotations

from collections.abc import Callable

import tvm
from tvm import relax

# Targets the ISA-dependent rewrites read (mnv3compile/schedules/kernels/isa.py's rows).
ZNVER4 = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver4"}  # AVX-512 VNNI
ZNVER3 = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver3"}  # AVX2
SSE = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "x86-64"}  # no int8 dot product
A76 = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a76", "mattr": ["+neon", "+dotprod"]}
A53 = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a53", "mattr": ["+neon"]}  # no dotprod


def rewritten(rewrite: Callable, before: tvm.IRModule, target: dict | None = None) -> tvm.IRModule:
    """``rewrite(before)``, with ``target`` the current target when given; the result must be
    well formed (TVM 0.27's ``well_formed`` raises where it is not)."""
    if target is None:
        after = rewrite(before)
    else:
        with tvm.target.Target(target):
            after = rewrite(before)
    relax.analysis.well_formed(after)
    return after


def assert_rewrites_to(rewrite: Callable, before: tvm.IRModule, expected: tvm.IRModule,
                       target: dict | None = None) -> None:
    """``rewrite(before)`` (under ``target``) is ``expected``, structurally."""
    tvm.ir.assert_structural_equal(rewritten(rewrite, before, target), expected)


def expected_module(params: dict[str, relax.TensorType], body: Callable) -> tvm.IRModule:
    """A module whose ``main`` takes ``params`` (name -> type, e.g. ``R.Tensor((1, 16), "int8")``)
    and, in one dataflow block, binds what ``body(builder, *params)`` emits (``builder.emit``,
    ``builder.call_te``), returning the value ``body`` returns: the Expected of a rewrite that
    emits TE computes."""
    builder = relax.BlockBuilder()
    args = [relax.Var(name, ty) for name, ty in params.items()]
    with builder.function("main", args):
        with builder.dataflow():
            out = builder.emit_output(body(builder, *args))
        builder.emit_func_output(out)
    return builder.get()
