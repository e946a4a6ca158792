"""mnv3compile/relax/reciprocal_multiply.py: a float32 division by a constant becomes a multiplication by its
reciprocal (h-swish's "/ 6" was a vdivps per output vector), within one unit in the last place;
divisions it cannot change so are left alone."""

import numpy as np
import pytest
import tvm
from tvm import relax

from mnv3compile.relax.reciprocal_multiply import to_reciprocal_multiply


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
