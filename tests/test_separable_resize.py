"""mnv3compile/relax/separable_resize.py: a bilinear resize as a row pass then a column pass gives TVM's
resize2d bit for bit, for each coordinate mode it takes; the pass takes exactly the resizes of a
channel count no vector divides, and the kernel's row pass stays in memory (not inlined back)."""

import numpy as np
import pytest
import tvm
from tvm import relax, te, topi
from tvm.script import ir as I, relax as R

from mnv3compile.schedules.kernels.inline import inline_elementwise
from mnv3compile.relax.separable_resize import KEEP, separable_bilinear, to_separable_resize
from mnv3compile.targets.presets import preset
from mnv3compile.tvm.build import tvm_target

from relax_structural import assert_rewrites_to, expected_module


def _run(func, inputs, out_shape):
    target = tvm_target(preset("host"))
    library = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target)
    out = tvm.runtime.tensor(np.zeros(out_shape, np.float32))
    library["main"](*(tvm.runtime.tensor(a) for a in inputs), out)
    return out.numpy()


@pytest.mark.parametrize("mode", ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"])
@pytest.mark.parametrize("in_hw, out_hw", [((7, 9), (56, 72)), ((32, 32), (256, 256)), ((5, 6), (3, 4))],
                         ids=["x8", "lraspp", "down"])
def test_two_passes_equal_tvms_resize2d(mode, in_hw, out_hw):
    x = np.random.default_rng(0).standard_normal((1, 19, *in_hw)).astype(np.float32)
    data = te.placeholder(x.shape, "float32", "x")
    ours = separable_bilinear(data, *out_hw, mode)
    theirs = topi.image.resize2d(data, [0.0] * 4, out_hw, layout="NCHW", method="linear",
                                 coordinate_transformation_mode=mode)
    out_shape = (1, 19, *out_hw)
    got = _run(inline_elementwise(te.create_prim_func([data, ours])), [x], out_shape)
    expected = _run(te.create_prim_func([data, theirs]), [x], out_shape)
    assert np.array_equal(got, expected)  # the same formula in the same order


def test_the_row_pass_stays_in_memory():
    data = te.placeholder((1, 19, 32, 32), "float32", "x")
    func = inline_elementwise(te.create_prim_func([data, separable_bilinear(data, 256, 256, "half_pixel")]))
    assert "resize_rows" in func.script() and KEEP in func.script()


def _module(channels: int, layout: str, method: str):
    shape = (1, channels, 8, 8) if layout == "NCHW" else (1, 8, 8, channels)
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.image.resize2d(x, (64, 64), layout=layout, method=method,
                                                         coordinate_transformation_mode="half_pixel"))
        bb.emit_func_output(out)
    return bb.get()


@pytest.mark.parametrize("channels, layout, method, taken", [
    (19, "NCHW", "linear", True),           # LR-ASPP's class map
    (128, "NCHW", "linear", False),         # NHWC vectorizes over these channels already
    (19, "NCHW", "nearest_neighbor", False),
    (19, "NHWC", "linear", False),
])
def test_the_pass_takes_bilinear_resizes_of_few_channels(channels, layout, method, taken):
    text = to_separable_resize(_module(channels, layout, method)).script()
    assert ("resize_bilinear" in text) == taken and ("resize2d" in text) == (not taken)


# Structural: the rewrite of a small Before module is exactly Expected (tests/relax_structural.py).
# The kernel is a PrimFunc made from TE: Expected makes it with the call_te the pass should make.



def _resize(mode: str, method: str = "linear"):
    """A resize of LR-ASPP's class map (19 channels, NCHW) to 4x its height and width."""

    @I.ir_module
    class Module:
        @R.function
        def main(x: R.Tensor((1, 19, 4, 6), "float32")) -> R.Tensor((1, 19, 16, 24), "float32"):
            with R.dataflow():
                gv = R.image.resize2d(x, (16, 24), layout="NCHW", method=method, coordinate_transformation_mode=mode)
                R.output(gv)
            return gv

    return Module


@I.ir_module
class VectorChannels:  # a multiple of the vector: the layout pass's NHWC resize is faster
    @R.function
    def main(x: R.Tensor((1, 128, 4, 6), "float32")) -> R.Tensor((1, 128, 16, 24), "float32"):
        with R.dataflow():
            gv = R.image.resize2d(x, (16, 24), layout="NCHW", method="linear",
                                  coordinate_transformation_mode="half_pixel")
            R.output(gv)
        return gv


@I.ir_module
class Nhwc:  # after the layout pass: not this kernel's layout
    @R.function
    def main(x: R.Tensor((1, 4, 6, 19), "float32")) -> R.Tensor((1, 16, 24, 19), "float32"):
        with R.dataflow():
            gv = R.image.resize2d(x, (16, 24), layout="NHWC", method="linear",
                                  coordinate_transformation_mode="half_pixel")
            R.output(gv)
        return gv


@pytest.mark.parametrize("mode", ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"])
def test_structure_a_bilinear_resize_of_19_channels_is_the_two_pass_kernel(mode):
    """The resize becomes one call of the rows-then-columns kernel at the resize's output size
    (16 x 24) and coordinate mode."""
    expected = expected_module({"x": R.Tensor((1, 19, 4, 6), "float32")}, lambda bb, x: bb.call_te(
        separable_bilinear, x, 16, 24, mode, primfunc_name_hint="resize_bilinear"))
    assert_rewrites_to(to_separable_resize, _resize(mode), expected)


@pytest.mark.parametrize("case", ["vector_channels", "nhwc", "nearest", "other_mode"])
def test_structure_resizes_it_does_not_take_are_unchanged(case):
    before = {"vector_channels": VectorChannels, "nhwc": Nhwc, "nearest": _resize("half_pixel", "nearest_neighbor"),
              "other_mode": _resize("tf_half_pixel_for_nn")}[case]  # a coordinate mode the kernel lacks
    assert_rewrites_to(to_separable_resize, before, before)
