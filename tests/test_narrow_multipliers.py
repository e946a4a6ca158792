"""NarrowMultipliers (mnv3compile/relax/narrow_multipliers.py): int64 constants that fit in int32
become int32 constants sign-extended in the kernel, results unchanged, and the requantization
multiply is a 32 x 32 -> 64-bit instruction (checked in the assembly, compile-only)."""

import re

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.ir import GenericConst
from tvm.script import ir as I, relax as R, tirx as T

from mnv3compile.relax.fixed_point import fixed_point
from mnv3compile.relax.narrow_multipliers import narrow_multipliers
from mnv3compile.relax.pipeline import run_pipeline

from relax_structural import assert_rewrites_to

SHAPE = (1, 4, 4, 16)


def _requantize_module(multiplier: np.ndarray, shift: int) -> tvm.IRModule:
    """int32 accumulators (NHWC) -> round(acc * m / 2**shift) -> int8, as the integer lowering emits it."""
    builder = relax.BlockBuilder()
    acc = relax.Var("acc", relax.TensorType(SHAPE, "int32"))
    with builder.function("main", [acc]):
        with builder.dataflow():
            wide = builder.emit(relax.op.astype(acc, "int64"))
            product = builder.emit(relax.op.multiply(wide, relax.const(multiplier.reshape(1, 1, 1, -1), "int64")))
            rounded = builder.emit(relax.op.add(product, relax.const(1 << (shift - 1), "int64")))
            shifted = builder.emit(relax.op.right_shift(rounded, relax.const(shift, "int64")))
            out = builder.emit_output(relax.op.astype(relax.op.clip(shifted, -128, 127), "int8"))
        builder.emit_func_output(out)
    return builder.get()


def _int64_multiplier_constants(module) -> list:
    found = []

    def visit(expr):
        if isinstance(expr, relax.Call) and getattr(expr.op, "name", None) == "relax.multiply":
            found.extend(a for a in expr.args if isinstance(a, GenericConst) and str(a.value.dtype) == "int64")

    relax.analysis.post_order_visit(module["main"], visit)
    return found


def test_multipliers_that_fit_int32_are_narrowed_and_results_are_unchanged():
    rng = np.random.default_rng(0)
    fp = fixed_point(rng.uniform(1e-4, 3e-3, SHAPE[-1]))  # 31-bit multipliers, as every int8 layer has
    assert fp.multiplier.max() >= 1 << 30  # the top of the int32 range is exercised
    module = _requantize_module(fp.multiplier, fp.shift)
    narrowed = narrow_multipliers(module)
    assert len(_int64_multiplier_constants(module)) == 1 and not _int64_multiplier_constants(narrowed)

    acc = rng.integers(-(1 << 20), 1 << 20, SHAPE).astype(np.int32)
    acc.flat[:4] = [np.iinfo(np.int32).min + 1, np.iinfo(np.int32).max, -(1 << 24), 1 << 24]
    expected = np.clip(fp.apply(acc), -128, 127).astype(np.int8)
    target = tvm.target.Target({"kind": "llvm"})
    for variant in (module, narrowed):
        vm = relax.VirtualMachine(tvm.compile(run_pipeline(variant, target), target), tvm.cpu())
        np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(acc)).numpy(), expected)


def test_a_multiplier_beyond_int32_stays_int64():
    module = _requantize_module(np.full(SHAPE[-1], 1 << 40, np.int64), 50)
    assert len(_int64_multiplier_constants(narrow_multipliers(module))) == 1


@pytest.mark.parametrize("target_spec, narrow, wide", [
    ({"mtriple": "x86_64-linux-gnu", "mcpu": "znver3"}, r"vpmuldq", r"vpmuludq"),       # AVX2
    ({"mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a76", "mattr": ["+neon"]}, r"smull2?\s", r"\bmul\s+x"),
], ids=["avx2", "neon"])
def test_requantization_multiplies_32_by_32_bits(target_spec, narrow, wide):
    """Compile-only: with an int64 multiplier LLVM emulates a 64 x 64 multiply (three vpmuludq per
    four lanes on AVX2, scalar mul on arm64); narrowed, it is vpmuldq / smull."""
    fp = fixed_point(np.linspace(1e-3, 2e-3, SHAPE[-1]))
    target = tvm.target.Target({"kind": "llvm", **target_spec})
    module = run_pipeline(_requantize_module(fp.multiplier, fp.shift), target)
    executable = tvm.compile(module, target)
    code = executable.mod.imports[0] if executable.mod.imports else executable.mod
    assembly = code.inspect_source("asm")
    assert re.search(narrow, assembly) and not re.search(wide, assembly)


# Structural: the rewrite of a small Before module is exactly Expected (tests/relax_structural.py).


# per output channel, as the lowering's requantization has them: the top of int32 and a negative
MULTIPLIERS = np.array([1 << 30, 3, -7, (1 << 31) - 1], np.int64).reshape(1, 1, 1, 4)


def _expected_widening_multiply():
    """The multiply as the TE function the pass emits: the int32 constant sign-extended per lane,
    broadcast along the leading axes."""
    narrow = MULTIPLIERS.astype(np.int32)

    @I.ir_module
    class Expected:
        @T.prim_func(private=True, s_tir=True)
        def multiply_int32(wide: T.Buffer((T.int64(1), T.int64(2), T.int64(2), T.int64(4)), "int64"),
                           B: T.Buffer((T.int64(1), T.int64(1), T.int64(1), T.int64(4)), "int32"),
                           widening_multiply: T.Buffer((T.int64(1), T.int64(2), T.int64(2), T.int64(4)), "int64")):
            T.func_attr({"tirx.noalias": True})
            for i0, i1, i2, i3 in T.grid(T.int64(1), T.int64(2), T.int64(2), T.int64(4)):
                with T.sblock("widening_multiply"):
                    v_i0, v_i1, v_i2, v_i3 = T.axis.remap("SSSS", [i0, i1, i2, i3])
                    T.reads(wide[v_i0, v_i1, v_i2, v_i3], B[T.int64(0), T.int64(0), T.int64(0), v_i3])
                    T.writes(widening_multiply[v_i0, v_i1, v_i2, v_i3])
                    widening_multiply[v_i0, v_i1, v_i2, v_i3] = \
                        wide[v_i0, v_i1, v_i2, v_i3] * T.Cast("int64", B[T.int64(0), T.int64(0), T.int64(0), v_i3])

        @R.function
        def main(acc: R.Tensor((1, 2, 2, 4), "int32")) -> R.Tensor((1, 2, 2, 4), "int64"):
            cls = Expected
            with R.dataflow():
                wide = R.astype(acc, "int64")
                gv = R.call_tir(cls.multiply_int32, (wide, R.const(narrow, "int32")),
                                out_ty=R.Tensor((1, 2, 2, 4), "int64"))
                R.output(gv)
            return gv

    return Expected


def test_structure_an_int64_multiplier_that_fits_int32_is_an_int32_constant_sign_extended_in_a_kernel():
    @I.ir_module
    class Before:
        @R.function
        def main(acc: R.Tensor((1, 2, 2, 4), "int32")) -> R.Tensor((1, 2, 2, 4), "int64"):
            with R.dataflow():
                wide = R.astype(acc, "int64")
                gv = R.multiply(wide, R.const(MULTIPLIERS, "int64"))
                R.output(gv)
            return gv

    assert_rewrites_to(narrow_multipliers, Before, _expected_widening_multiply())


def test_structure_the_constant_may_come_first():
    @I.ir_module
    class Before:
        @R.function
        def main(acc: R.Tensor((1, 2, 2, 4), "int32")) -> R.Tensor((1, 2, 2, 4), "int64"):
            with R.dataflow():
                wide = R.astype(acc, "int64")
                gv = R.multiply(R.const(MULTIPLIERS, "int64"), wide)
                R.output(gv)
            return gv

    assert_rewrites_to(narrow_multipliers, Before, _expected_widening_multiply())


def _multiply_left_alone(case: str):
    beyond = np.array([1, 2, 3, 1 << 31], np.int64)  # 2^31: one past int32's top

    @I.ir_module
    class BeyondInt32:
        @R.function
        def main(acc: R.Tensor((2, 4), "int64")) -> R.Tensor((2, 4), "int64"):
            with R.dataflow():
                gv = R.multiply(acc, R.const(beyond, "int64"))
                R.output(gv)
            return gv

    @I.ir_module
    class Int32:  # no 64-bit product to narrow
        @R.function
        def main(acc: R.Tensor((2, 4), "int32")) -> R.Tensor((2, 4), "int32"):
            with R.dataflow():
                gv = R.multiply(acc, R.const(np.array([1, 2, 3, 4], np.int32), "int32"))
                R.output(gv)
            return gv

    @I.ir_module
    class ByTensor:  # the multiplier is known only at run time
        @R.function
        def main(acc: R.Tensor((2, 4), "int64"), m: R.Tensor((4,), "int64")) -> R.Tensor((2, 4), "int64"):
            with R.dataflow():
                gv = R.multiply(acc, m)
                R.output(gv)
            return gv

    return {"beyond_int32": BeyondInt32, "int32": Int32, "by_tensor": ByTensor}[case]


@pytest.mark.parametrize("case", ["beyond_int32", "int32", "by_tensor"])
def test_structure_multiplies_it_cannot_narrow_are_unchanged(case):
    before = _multiply_left_alone(case)
    assert_rewrites_to(narrow_multipliers, before, before)
