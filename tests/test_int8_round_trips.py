"""mnv3compile/relax/int8_round_trips.py: an int8 rounding read back (int8 -> int32 - zero -> float32) is
taken as the float it came from only where that is the same value, bit for bit."""

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import ir as I, relax as R

from mnv3compile.quant import QuantizeSettings, quantize
from mnv3compile.quant.calibration import load_samples
from mnv3compile.relax.int8_round_trips import skip_int8_round_trips
from mnv3compile.targets.presets import preset
from mnv3compile.tvm.build import quantize_node_names, tvm_target
from mnv3compile.tvm.frontend import import_onnx
from mnv3compile.relax.int8_lowering import lower_to_integer
from mnv3compile.relax.pipeline import kernel_names, relax_passes
from mnv3compile.zoo import build_model, build_spec

from relax_structural import assert_rewrites_to


def _requantized_then_read_back(clipped: bool, int8_is_an_output: bool):
    """v -> int8(clip(round(v) - 5)) -> (int32(q) + 5) as float32 * 0.25: the integer lowering's
    rounding and the next group's readback (a residual add's), as one kernel would hold them."""
    from tvm.relax import op

    bb = relax.BlockBuilder()
    v = relax.Var("v", relax.TensorType((1, 4, 4, 8), "float32"))
    with bb.function("main", [v]):
        with bb.dataflow():
            steps = bb.emit(op.add(op.round(v), relax.const(-5.0, "float32")))
            if clipped:
                steps = bb.emit(op.clip(steps, -128, 127))
            q = bb.emit(op.astype(steps, "int8"))
            back = bb.emit(op.subtract(op.astype(q, "int32"), relax.const(-5, "int32")))
            scaled = bb.emit(op.multiply(op.astype(back, "float32"), relax.const(0.25, "float32")))
            out = bb.emit_output(relax.Tuple([scaled, q]) if int8_is_an_output else scaled)
        bb.emit_func_output(out)
    return bb.get()


def _run(module, v: np.ndarray):
    result = relax.VirtualMachine(tvm.compile(module, tvm_target(preset("host"))), tvm.cpu())["main"](
        tvm.runtime.tensor(v))
    return [result.numpy()] if hasattr(result, "numpy") else [r.numpy() for r in result]


@pytest.mark.parametrize("clipped, int8_is_an_output, skipped", [
    (True, False, True),    # in int8's range by the clip, read once: the float is taken
    (True, True, False),    # the int8 tensor has another reader: kept
    (False, False, False),  # no clip: the cast to int8 may saturate, so the readback may differ
])
def test_a_readback_is_skipped_only_where_it_is_the_same_value(clipped, int8_is_an_output, skipped):
    module = _requantized_then_read_back(clipped, int8_is_an_output)
    rewritten = skip_int8_round_trips(module)
    text = rewritten["main"].script()
    assert ('dtype="int8"' not in text) == skipped
    rng = np.random.default_rng(0)
    v = (rng.standard_normal((1, 4, 4, 8)) * 60).astype(np.float32)
    v.flat[:4] = [1e4, -1e4, 2.5, -3.5]  # saturated both ways; ties to even
    if not clipped:
        v = np.clip(v, -100, 100)  # an unclipped cast to int8 is defined only within its range
    for got, expected in zip(_run(rewritten, v), _run(module, v)):
        assert np.array_equal(got, expected)


@pytest.mark.slow
def test_small_int8_keeps_its_kernels_with_the_readbacks_taken():
    """In an int8 MobileNetV3-Small the rewrite fires (its residual kernels lose their readbacks)
    and FuseOps still makes the same kernels: the float bound to a second name where a readback
    was had cut a residual block in two (84 kernels instead of 83 at 224)."""
    spec = build_spec("small", 1.0, 224)
    samples = load_samples("synthetic:16", spec.input_shape, None)  # as 'build' calibrates by default
    int8_model = quantize(build_model(spec), samples, QuantizeSettings(weight_bits=7)).model
    module, _ = lower_to_integer(import_onnx(int8_model)[0], quantize_node_names(int8_model))

    def kernels(skip: str = ""):
        passes = [make() for name, make in relax_passes() if name != skip]
        with tvm_target(preset("host")), tvm.transform.PassContext(opt_level=3):
            return kernel_names(tvm.transform.Sequential(passes)(module))

    taken, kept = kernels(), kernels(skip="Int8RoundTrips")
    assert len(taken) == len(kept)
    assert sum(name.count("cast") for name in taken) < sum(name.count("cast") for name in kept)


# Structural: the rewrite of a small Before module is exactly Expected (tests/relax_structural.py).



def test_structure_a_readback_to_float_is_the_float_before_the_cast():
    """int8(clip(round(v) - 5)) read back as float32(int32(q) + 5): the same integers, computed in
    float32 (the int32 constant becomes a float32 one), and the casts go."""

    @I.ir_module
    class Before:
        @R.function
        def main(v: R.Tensor((1, 4, 4, 8), "float32")) -> R.Tensor((1, 4, 4, 8), "float32"):
            with R.dataflow():
                steps = R.add(R.round(v), R.const(-5.0, "float32"))
                clipped = R.clip(steps, -128, 127)
                q = R.astype(clipped, "int8")
                back = R.subtract(R.astype(q, "int32"), R.const(-5, "int32"))
                gv = R.multiply(R.astype(back, "float32"), R.const(0.25, "float32"))
                R.output(gv)
            return gv

    @I.ir_module
    class Expected:
        @R.function
        def main(v: R.Tensor((1, 4, 4, 8), "float32")) -> R.Tensor((1, 4, 4, 8), "float32"):
            with R.dataflow():
                steps = R.add(R.round(v), R.const(-5.0, "float32"))
                clipped = R.clip(steps, -128, 127)
                back = R.subtract(clipped, R.const(-5.0, "float32"))
                gv = R.multiply(back, R.const(0.25, "float32"))
                R.output(gv)
            return gv

    assert_rewrites_to(skip_int8_round_trips, Before, Expected)


def test_structure_a_readback_to_int32_casts_the_float_once():
    """astype(astype(w, int8), int32) is astype(w, int32) where w is an integer in int8's range."""

    @I.ir_module
    class Before:
        @R.function
        def main(v: R.Tensor((1, 4, 4, 8), "float32")) -> R.Tensor((1, 4, 4, 8), "int32"):
            with R.dataflow():
                clipped = R.clip(R.round(v), -128, 127)
                q = R.astype(clipped, "int8")
                gv = R.multiply(R.astype(q, "int32"), R.const(3, "int32"))
                R.output(gv)
            return gv

    @I.ir_module
    class Expected:
        @R.function
        def main(v: R.Tensor((1, 4, 4, 8), "float32")) -> R.Tensor((1, 4, 4, 8), "int32"):
            with R.dataflow():
                clipped = R.clip(R.round(v), -128, 127)
                gv = R.multiply(R.astype(clipped, "int32"), R.const(3, "int32"))
                R.output(gv)
            return gv

    assert_rewrites_to(skip_int8_round_trips, Before, Expected)


def _round_trip_left_alone(case: str):
    @I.ir_module
    class Unclipped:  # the cast to int8 may saturate: int8 and back is not the identity
        @R.function
        def main(v: R.Tensor((1, 4, 4, 8), "float32")) -> R.Tensor((1, 4, 4, 8), "float32"):
            with R.dataflow():
                q = R.astype(R.round(v), "int8")
                gv = R.multiply(R.astype(R.astype(q, "int32"), "float32"), R.const(0.25, "float32"))
                R.output(gv)
            return gv

    @I.ir_module
    class NotIntegral:  # no round(): the cast to int8 truncates
        @R.function
        def main(v: R.Tensor((1, 4, 4, 8), "float32")) -> R.Tensor((1, 4, 4, 8), "float32"):
            with R.dataflow():
                q = R.astype(R.clip(v, -128, 127), "int8")
                gv = R.multiply(R.astype(R.astype(q, "int32"), "float32"), R.const(0.25, "float32"))
                R.output(gv)
            return gv

    @I.ir_module
    class Int8AnOutput:  # the int8 tensor has a second reader (an output): kept, with its readback
        @R.function
        def main(v: R.Tensor((1, 4, 4, 8), "float32")):
            with R.dataflow():
                q = R.astype(R.clip(R.round(v), -128, 127), "int8")
                scaled = R.multiply(R.astype(R.astype(q, "int32"), "float32"), R.const(0.25, "float32"))
                gv = (scaled, q)
                R.output(gv)
            return gv

    return {"unclipped": Unclipped, "not_integral": NotIntegral, "int8_an_output": Int8AnOutput}[case]


@pytest.mark.parametrize("case", ["unclipped", "not_integral", "int8_an_output"])
def test_structure_round_trips_that_may_change_a_value_are_kept(case):
    before = _round_trip_left_alone(case)
    assert_rewrites_to(skip_int8_round_trips, before, before)
