"""kernels/requantize.py: int8(clip(round(v) + zero_point, lo, hi)) rewritten as saturating integer
narrowing gives the same int8 values, on the accumulator's whole range (the host runs LLVM's
generic saturating intrinsics too; on arm64 they become sqxtn/sqadd, checked on the stand-in phone
by test_kernel_specs.py's arm64 test, whose kernels go through ``apply_template``)."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import te, tirx

from mnv3compile.schedules.kernels.requantize import saturating_requantize

HOST = tvm.target.Target({"kind": "llvm"})


def _requantize_kernel(zero_point: float, low: float | None, high: float | None, relu: float | None, lanes: int):
    """out[i] = int8(clip(round(max(acc[i] * scale[i], relu)) + zero_point, low, high)): the form the
    int8 lowering emits (bounds only on the sides left open)."""
    acc = te.placeholder((256,), "int32", name="acc")
    scale = te.placeholder((256,), "float32", name="scale")

    def value(i):
        v = acc[i].astype("float32") * scale[i]
        if relu is not None:
            v = tirx.max(v, tirx.const(relu, "float32"))
        v = tirx.nearbyint(v) + tirx.const(zero_point, "float32")
        if high is not None:
            v = tirx.min(v, tirx.const(high, "float32"))
        if low is not None:
            v = tirx.max(v, tirx.const(low, "float32"))
        return v.astype("int8")

    out = te.compute((256,), value, name="out")
    func = te.create_prim_func([acc, scale, out])
    sch = tvm.s_tir.Schedule(func)
    (loop,) = sch.get_loops(sch.get_sblock("out"))
    sch.vectorize(sch.split(loop, [None, lanes])[1])
    return sch.mod["main"]


def _run(func, acc, scale) -> np.ndarray:
    library = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), HOST)
    out = tvm.runtime.tensor(np.zeros(acc.shape, np.int8))
    library["main"](tvm.runtime.tensor(acc), tvm.runtime.tensor(scale), out)
    return out.numpy()


def _inputs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    acc = rng.integers(-(2**31), 2**31 - 1, 256, dtype=np.int64).astype(np.int32)
    acc[:64] = rng.integers(-3000, 3000, 64)  # in range: every rounding tie and the int8 edges
    acc[64:70] = [2**31 - 1, -(2**31), 0, 1, -1, 32767]
    acc[70:90] = np.arange(-10, 10)  # around zero, where a ReLU's bound bites
    scale = np.where(np.arange(256) < 90, 0.5, rng.uniform(1e-3, 1e3, 256)).astype(np.float32)  # x.5 ties
    return acc, scale


@pytest.mark.parametrize("zero_point, low, high, relu", [
    (-128.0, -128.0, 127.0, None),  # both sides clipped
    (3.0, None, 127.0, 0.0),        # a ReLU before the rounding, the upper side open
    (-5.0, -128.0, 120.0, None),    # an activation's bound inside int8's range
    (0.0, -128.0, 127.0, 0.0),      # no zero point
    (-128.0, None, 127.0, 0.0),     # the ReLU's bound falls on int8's minimum
])
@pytest.mark.parametrize("lanes", [4, 8])
def test_rewrite_gives_the_same_int8_values(zero_point, low, high, relu, lanes):
    func = _requantize_kernel(zero_point, low, high, relu, lanes)
    rewritten, count = saturating_requantize(func)
    assert count == 1
    assert "llvm.fptosi.sat" in rewritten.script() and "nearbyint" in rewritten.script()
    acc, scale = _inputs()
    expected = _run(func, acc, scale)
    np.testing.assert_array_equal(_run(rewritten, acc, scale), expected)


def test_a_relu_before_rounding_becomes_an_integer_bound():
    rewritten, _ = saturating_requantize(_requantize_kernel(3.0, None, 127.0, 0.0, 8))
    text = rewritten.script()
    assert "T.float32(0.0)" not in text  # max(v, 0) is gone from the float side ...
    assert "T.int8(3)" in text           # ... and is max(q, zero point) on the int8 side


def test_other_forms_are_left_alone():
    # a zero point that is not an integer is not a requantization this rewrite knows
    func = _requantize_kernel(0.5, -128.0, 127.0, None, 4)
    assert saturating_requantize(func) == (func, 0)
