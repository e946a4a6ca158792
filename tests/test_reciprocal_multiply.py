"""mnv3compile/relax/reciprocal_multiply.py: a float32 division by a constant becomes a multiplication by its
reciprocal (h-swish's "/ 6" was a vdivps per output vector), within one unit in the last place;
divisions it cannot change so are left alone."""

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import ir as I, relax as R

from mnv3compile.relax.reciprocal_multiply import to_reciprocal_multiply

from relax_structural import assert_rewrites_to


def _divide(divisor: np.ndarray, dtype: str = "float32"):
    x = relax.Var("x", relax.TensorType((4, 6), dtype))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.divide(x, relax.const(divisor, dtype)))
        bb.emit_func_output(out)
    return bb.get()


@pytest.mark.parametrize("divisor", [np.array(6, np.float32), np.arange(1, 7, dtype=np.float32) * 3])
def test_a_float_division_by_a_constant_becomes_a_multiply_within_an_ulp(divisor):
    module = to_reciprocal_multiply(_divide(divisor))
    text = module.script()
    assert "R.multiply" in text and "R.divide" not in text
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32) * 100
    vm = relax.VirtualMachine(tvm.compile(module, "llvm"), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    expected = x / divisor
    assert np.all(np.abs(got - expected) <= np.spacing(np.abs(expected)))


@pytest.mark.parametrize("divisor, dtype", [
    (np.array([1, 2, 0, 4, 5, 6], np.float32), "float32"),  # a zero: x / 0 is inf or nan, keep it
    (np.array(6, np.int32), "int32"),                       # an integer division
])
def test_divisions_it_cannot_change_are_left_alone(divisor, dtype):
    assert "R.divide" in to_reciprocal_multiply(_divide(divisor, dtype)).script()


# Structural: the rewrite of a small Before module is exactly Expected (tests/relax_structural.py).



def test_structure_a_division_by_a_scalar_becomes_a_multiply_by_its_reciprocal():
    """h-swish's "/ 6": the constant becomes float32(1 / 6), computed in float64."""

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 4, 4, 8), "float32")) -> R.Tensor((1, 4, 4, 8), "float32"):
            with R.dataflow():
                gate = R.clip(R.add(x, R.const(3.0, "float32")), 0, 6)
                product = R.multiply(x, gate)
                gv = R.divide(product, R.const(6.0, "float32"))
                R.output(gv)
            return gv

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 4, 4, 8), "float32")) -> R.Tensor((1, 4, 4, 8), "float32"):
            with R.dataflow():
                gate = R.clip(R.add(x, R.const(3.0, "float32")), 0, 6)
                product = R.multiply(x, gate)
                gv = R.multiply(product, R.const(np.array(1 / 6, np.float32)))
                R.output(gv)
            return gv

    assert_rewrites_to(to_reciprocal_multiply, Before, Expected)


def test_structure_a_division_by_a_constant_vector_multiplies_by_each_reciprocal():
    divisor = np.array([1, 2, 4, 8, 10, 3], np.float32)
    reciprocals = np.array([1, 0.5, 0.25, 0.125, 0.1, 1 / 3], np.float32)

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((4, 6), "float32")) -> R.Tensor((4, 6), "float32"):
            with R.dataflow():
                gv = R.divide(x, R.const(divisor))
                R.output(gv)
            return gv

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((4, 6), "float32")) -> R.Tensor((4, 6), "float32"):
            with R.dataflow():
                gv = R.multiply(x, R.const(reciprocals))
                R.output(gv)
            return gv

    assert_rewrites_to(to_reciprocal_multiply, Before, Expected)


def _division_left_alone(case: str):
    zero = np.array([1, 2, 0, 4, 5, 6], np.float32)

    @I.ir_module
    class ByZero:
        @R.function
        def main(x: R.Tensor((4, 6), "float32")) -> R.Tensor((4, 6), "float32"):
            with R.dataflow():
                gv = R.divide(x, R.const(zero))
                R.output(gv)
            return gv

    @I.ir_module
    class Integer:
        @R.function
        def main(x: R.Tensor((4, 6), "int32")) -> R.Tensor((4, 6), "int32"):
            with R.dataflow():
                gv = R.divide(x, R.const(6, "int32"))
                R.output(gv)
            return gv

    @I.ir_module
    class ByTensor:
        @R.function
        def main(x: R.Tensor((4, 6), "float32"), y: R.Tensor((6,), "float32")) -> R.Tensor((4, 6), "float32"):
            with R.dataflow():
                gv = R.divide(x, y)
                R.output(gv)
            return gv

    return {"by_zero": ByZero, "integer": Integer, "by_tensor": ByTensor}[case]


@pytest.mark.parametrize("case", ["by_zero", "integer", "by_tensor"])
def test_structure_divisions_it_cannot_change_are_unchanged(case):
    before = _division_left_alone(case)
    assert_rewrites_to(to_reciprocal_multiply, before, before)
