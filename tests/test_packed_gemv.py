"""schedules/packed_gemv.py: the float32 classifier reads weights packed per output vector, the
gemv template schedules it, and the result is the matmul's; the pass takes only batch-1 float32
matmuls with a constant weight."""

import numpy as np
import pytest
import tvm
from tvm import relax, te
from tvm.script import relax as R

from mnv3compile.schedules.isa import isa_of
from mnv3compile.schedules.packed_gemv import pack_columns, packed_matmul, to_packed_gemv
from mnv3compile.schedules.templates import apply_template
from mnv3compile.targets.presets import preset
from mnv3compile.tvm.build import tvm_target


def test_packed_columns_hold_each_output_vector_contiguously():
    weight = np.arange(6 * 8, dtype=np.float32).reshape(6, 8)
    packed = pack_columns(weight, 4)
    assert packed.shape == (2, 6, 4)
    assert np.array_equal(packed[1, 5], weight[5, 4:8])  # vector 1, input 5: outputs 4..7
    assert packed.flags["C_CONTIGUOUS"]


@pytest.mark.parametrize("depth, outputs", [(576, 1024), (1024, 1000), (96, 40)])
def test_packed_gemv_equals_the_matmul(depth, outputs):
    target = tvm_target(preset("host"))
    lanes = 8 if outputs % 16 else 16
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, depth)).astype(np.float32)
    w = rng.standard_normal((depth, outputs)).astype(np.float32)
    xs = te.placeholder(x.shape, "float32", "x")
    ws = te.placeholder((outputs // lanes, depth, lanes), "float32", "w")
    acc = packed_matmul(xs, ws)
    out = te.compute(acc.shape, lambda *i: acc(*i) + 1.0, name="bias")  # an epilogue, as in a network
    scheduled, template = apply_template(te.create_prim_func([xs, ws, out]), isa_of(target))
    assert template.startswith("gemv_float32_")
    library = tvm.compile(tvm.IRModule({"main": scheduled.with_attr("global_symbol", "main")}), target)
    got = tvm.runtime.tensor(np.zeros((1, outputs), np.float32))
    library["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(pack_columns(w, lanes)), got)
    np.testing.assert_allclose(got.numpy(), x.astype(np.float64) @ w + 1, rtol=1e-4, atol=1e-4)


def _module(rows: int, dtype: str, constant: bool):
    w = relax.const(np.ones((64, 32), dtype), dtype)
    x = relax.Var("x", relax.TensorType((rows, 64), dtype))
    v = relax.Var("v", relax.TensorType((64, 32), dtype))
    bb = relax.BlockBuilder()
    with bb.function("main", [x] + ([] if constant else [v])):
        with bb.dataflow():
            out = bb.emit_output(relax.op.matmul(x, w if constant else v))
        bb.emit_func_output(out)
    return bb.get()


@pytest.mark.parametrize("rows, dtype, constant, packed", [
    (1, "float32", True, True),     # the classifier
    (4, "float32", True, False),    # a GEMM: the template covers batch 1 only
    (1, "float32", False, False),   # weights not known at build time
    (1, "int32", True, False),      # integer matmuls are the dot products' or the int8 templates'
])
def test_the_pass_packs_only_batch_one_float_matmuls_with_constant_weights(rows, dtype, constant, packed):
    with tvm_target(preset("host")):
        module = to_packed_gemv(_module(rows, dtype, constant))
    text = module.script()
    assert ("matmul_packed" in text) == packed and ("R.matmul" in text) == (not packed)
