"""Kernel templates (schedules/kernels/, dispatch.py and one module per family): every kernel of fp32 and int8 MobileNetV3s gets one,
each scheduled kernel computes exactly what the unscheduled kernel computes (same arithmetic, so
bit for bit, int8 and fp32 alike on x86; arm64 in test_kernel_specs.py), the ISA is read from the target, and the generated code uses
the vector instructions the template is written for (checked in the assembly, compile-only for
ISAs this machine lacks)."""

import re

import numpy as np
import pytest
import tvm
from tvm import relax, te, tirx

from conftest import cpu_flags

from mnv3compile.quant import QuantizeSettings, quantize
from mnv3compile.quant.calibration import load_samples
from mnv3compile.schedules.kernels.inline import inline_elementwise
from mnv3compile.schedules.kernels.isa import isa_of
from mnv3compile.schedules.tuning.measure import random_arguments
from mnv3compile.schedules.kernels.dispatch import NoTemplate, apply_template, apply_templates, schedule_kernel
from mnv3compile.schedules.kernels.knobs import SampledKnobs
from mnv3compile.targets.presets import preset
from mnv3compile.tvm.build import quantize_node_names, tvm_target
from mnv3compile.tvm.frontend import import_onnx
from mnv3compile.relax.int8_lowering import lower_to_integer
from mnv3compile.relax.pipeline import run_pipeline
from mnv3compile.zoo import build_model, build_spec


def _fused(model, target) -> tvm.IRModule:
    module, _ = import_onnx(model)
    if any(n.op_type == "QuantizeLinear" for n in model.graph.node):
        module, _ = lower_to_integer(module, quantize_node_names(model))
    return run_pipeline(module, target)


@pytest.fixture(scope="module")
def small_models():
    spec = build_spec("small", 0.5, 96)
    float_model = build_model(spec)
    samples = load_samples("synthetic:4", spec.input_shape, None)
    int8_model = quantize(float_model, samples).model
    int8_7bit_model = quantize(float_model, samples, QuantizeSettings(weight_bits=7)).model
    return {"float32": float_model, "int8": int8_model, "int8-w7": int8_7bit_model}



def _run_kernel(func, target, inputs, llvm_ir: list | None = None) -> np.ndarray:
    library = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target)
    outputs = [tvm.runtime.tensor(np.zeros(a.shape, a.dtype)) for a in inputs[-1:]]
    library["main"](*inputs[:-1], *outputs)
    if llvm_ir is not None:
        llvm_ir.append((library.mod.imports[0] if library.mod.imports else library.mod).inspect_source("ll"))
    return outputs[0].numpy()


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_every_kernel_of_small_gets_a_template_that_changes_no_result(small_models, dtype):
    target = tvm_target(preset("host"))
    module = _fused(small_models[dtype], target)
    kinds = set()
    for global_var, func in module.functions.items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        try:
            scheduled, name = apply_template(func, isa_of(target))
            name = name.name
        except NoTemplate as exc:  # only the fp32 input's bare transpose keeps the default
            assert (str(exc), global_var.name_hint) == ("a layout change (transpose)", "transpose"), global_var
            continue
        kinds.add(re.sub(r"_p\d+x\d+|_n\d+|_c\d+", "", name))
        assert scheduled.script() != func.script(), name  # a template that is reported is applied
        inputs = random_arguments(func)
        expected, llvm_ir = _run_kernel(func, target, inputs), []
        assert np.array_equal(_run_kernel(scheduled, target, inputs, llvm_ir), expected), (global_var.name_hint, name)
        # The epilogue's round half to even stays a vector op (mnv3compile/tvm/vectorizable.py). Not
        # in the network input's quantize + layout change + pad: it gathers element by element, and
        # in parallel (its rows in a closure) LLVM leaves the loop scalar; it measured 30.0 us at 1
        # thread against 30.5 serial (docs/experiments.md, "Threads").
        if not name.startswith("pad_transpose"):
            assert "@llvm.nearbyint.f32(" not in llvm_ir[0], (global_var.name_hint, name)
    isa = isa_of(target).name
    kinds_wanted = ["conv1x1_nhwc", "dwconv3x3_nhwc", "dwconv5x5_nhwc", "conv3x3_nhwc", "gemv", "pool_nhwc"]
    if dtype == "int8":  # the depthwise convs' pads, and the input's quantize + NCHW -> NHWC + pad in one kernel
        kinds_wanted += ["pad_int8", "pad_transpose_int8"]
    for kind in kinds_wanted:
        assert any(k.startswith(kind) and k.endswith(isa) for k in kinds), (kind, kinds)


@pytest.mark.slow
def test_build_report_counts_templated_kernels(small_models):
    target = tvm_target(preset("host"))
    module = _fused(small_models["float32"], target)
    tuned = sorted(gv.name_hint for gv, f in module.functions.items() if isinstance(f, tirx.PrimFunc))[0]
    scheduled, report = apply_templates(module, isa_of(target), skip={tuned})  # as if a database had it
    counts = report.to_json()
    assert counts["tuned"] == [tuned] and tuned not in counts["templates"]
    # every kernel but the skipped one and the input's layout change (NCHW -> NHWC)
    assert [name for name in counts["default_schedule"] if "transpose" not in name] == []
    assert counts["templated"] == counts["kernels"] - 1 - len(counts["default_schedule"]) > 0
    # and the whole network still runs, with the same output as TVM's default schedules
    x = tvm.runtime.tensor(np.random.default_rng(1).standard_normal((1, 3, 96, 96)).astype("float32"))
    outputs = [relax.VirtualMachine(tvm.compile(m, target), tvm.cpu())["main"](x) for m in (module, scheduled)]
    assert np.array_equal(outputs[0].numpy(), outputs[1].numpy())


def test_a_kernel_no_template_covers_is_refused():
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def two_reductions(a: T.Buffer((8, 8), "float32"), b: T.Buffer((8,), "float32"), c: T.Buffer((8,), "float32")):
        for i, k in T.grid(8, 8):
            with T.sblock("first"):
                vi, vk = T.axis.remap("SR", [i, k])
                with T.init():
                    b[vi] = T.float32(0)
                b[vi] = b[vi] + a[vi, vk]
        for i, k in T.grid(8, 8):
            with T.sblock("second"):
                vi, vk = T.axis.remap("SR", [i, k])
                with T.init():
                    c[vi] = T.float32(0)
                c[vi] = c[vi] + a[vk, vi]

    with pytest.raises(NoTemplate):
        apply_template(two_reductions, isa_of(tvm_target(preset("host"))))


def test_isa_is_read_from_the_target():
    host = isa_of(tvm_target(preset("host"))).name
    flags = cpu_flags()
    expected = "avx512-vnni" if "avx512_vnni" in flags else "avx512" if "avx512f" in flags else "avx2"
    assert host == expected
    assert isa_of(tvm.target.Target({"kind": "llvm", "mcpu": "cascadelake"})).name == "avx512-vnni"
    assert isa_of(tvm.target.Target({"kind": "llvm", "mcpu": "znver3"})).name == "avx2"
    assert isa_of(tvm.target.Target(preset("pixel6").tvm_target())).name == "neon-dotprod"
    assert isa_of(tvm.target.Target(preset("arm64-linux").tvm_target())).name in ("neon", "neon-dotprod")


def _output_channels(func) -> int:
    return int(func.params[-1].shape[-1]) if isinstance(func, tirx.PrimFunc) else 0


def _pointwise_assembly(small_models, target, dtype: str = "float32") -> str:
    module = _fused(small_models[dtype], target)
    # The widest first: its channels fill whole vectors of every ISA (24 channels take 8 lanes).
    functions = sorted(module.functions.items(), key=lambda item: -_output_channels(item[1]))
    for global_var, func in functions:
        if isinstance(func, tirx.PrimFunc) and global_var.name_hint.startswith(("fused_conv2d", "fused_dot4")):
            try:
                scheduled, name = apply_template(func, isa_of(target))
                name = name.name
            except NoTemplate:
                continue
            output_shape = [int(d) for d in func.params[-1].shape]
            if name.startswith("conv1x1") and output_shape[1] * output_shape[2] > 1:  # not an SE FC
                library = tvm.compile(tvm.IRModule({"main": scheduled.with_attr("global_symbol", "main")}), target)
                code = library.mod.imports[0] if library.mod.imports else library.mod
                return code.inspect_source("asm")
    raise AssertionError("no pointwise kernel")


@pytest.mark.parametrize("target_spec, pattern", [
    ({"mtriple": "x86_64-linux-gnu", "mcpu": "znver3"}, r"vfmadd\d+ps\s+[^\n]*ymm"),          # AVX2 + FMA
    ({"mtriple": "x86_64-linux-gnu", "mcpu": "cascadelake"}, r"vfmadd\d+ps\s+[^\n]*zmm"),     # AVX-512
    ({"mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a76", "mattr": ["+neon", "+dotprod"]},
     r"fmla\s+v\d+\.4s"),                                                                     # NEON
], ids=["avx2", "avx512", "neon"])
@pytest.mark.slow
def test_fp32_pointwise_template_uses_vector_fma(small_models, target_spec, pattern):
    """Compile-only: the assembly is read, nothing runs, so ISAs this machine lacks are checked too."""
    assembly = _pointwise_assembly(small_models, tvm.target.Target({"kind": "llvm", **target_spec}))
    assert len(re.findall(pattern, assembly)) >= 4


@pytest.mark.slow
def test_int8_pointwise_template_uses_vpmaddwd_on_avx2(small_models):
    """AVX2 has no int8 dot product: input channels go two at a time through vpmaddwd (16 int16
    multiply-adds per instruction; schedules/kernels/intrinsics.py). Exactness is the every-kernel test's."""
    target = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver3"})
    assembly = _pointwise_assembly(small_models, target, "int8")
    assert len(re.findall(r"vpmaddwd\s+[^\n]*ymm", assembly)) >= 4
    assert "vpmaddubsw" not in assembly  # 8-bit weights would saturate its int16 pair sums


@pytest.mark.slow
def test_int8_pointwise_template_uses_vpmaddubsw_on_avx2_for_7bit_weights(small_models):
    """With weights in -63..63 (--weight-bits 7), AVX2 takes 4 input channels per step: vpmaddubsw
    (unsigned x signed bytes, pairs summed to int16, exact for such weights) then vpmaddwd by ones."""
    target = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver3"})
    assembly = _pointwise_assembly(small_models, target, "int8-w7")
    assert len(re.findall(r"vpmaddubsw\s+[^\n]*ymm", assembly)) >= 4


@pytest.mark.parametrize("target_spec, pattern", [
    ({"mtriple": "x86_64-linux-gnu", "mcpu": "cascadelake"}, r"vpdpbusd\s+[^\n]*[yz]mm"),     # AVX-512 VNNI
    ({"mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a76", "mattr": ["+neon", "+dotprod"]},
     r"sdot\s+v\d+\.4s"),                                                                       # arm64 dotprod
    ({"mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a53", "mattr": ["+neon"]},
     r"smlal2?\s+v\d+\.4s, v\d+\.[48]h, v\d+\.h\[\d\]"),                                        # by element
], ids=["vnni", "sdot", "smlal"])
@pytest.mark.slow
def test_int8_pointwise_template_uses_the_dot_product_instruction(small_models, target_spec, pattern):
    """Where the ISA has a 4-deep int8 dot product, pointwise convs are dot4 kernels on packed
    weights (mnv3compile/relax/dot_products.py); arm64 without one (Cortex-A53) runs them 8 input channels
    at a time on smlal by element. Compile-only; exactness is the every-kernel tests' (on a VNNI
    host) and the stand-in phone's (sdot and smlal, test_phone.py)."""
    target = tvm.target.Target({"kind": "llvm", **target_spec})
    assembly = _pointwise_assembly(small_models, target, "int8")
    assert len(re.findall(pattern, assembly)) >= 4


# (CPU flag needed to run it, LLVM CPU, lanes, instruction in the template name, weight range)
DOT4_HOSTS = {
    "vnni": ("avx512_vnni", "znver4", 16, "vpdpbusd_avx512-vnni", (-128, 127)),
    "avx2": ("avx2", "znver3", 8, "vpmaddubsw_avx2", (-64, 63)),
}


@pytest.mark.parametrize("kernel, stride, channels", [(1, 1, 32), (3, 2, 3)], ids=["pointwise", "stem"])
@pytest.mark.parametrize("host", DOT4_HOSTS)
def test_dot4_kernel_equals_the_integer_conv_it_replaces(kernel, stride, channels, host):
    """The packed kernel (with the +128 that makes the input unsigned, and its compensation)
    computes the conv exactly, for every int8 input including -128 and every weight the
    instruction takes (VNNI all of int8; AVX2's vpmaddubsw -64..63, where its int16 pair sums
    peak at 255 x -64 x 2), pointwise and the stem's 3x3 stride 2 over 3 channels (padded to 4,
    the 4th weighing 0); run where this CPU has the instruction."""
    flag, mcpu, lanes, instruction, (low, high) = DOT4_HOSTS[host]
    if flag not in cpu_flags():
        pytest.skip(f"this CPU has no {flag} to run {instruction} (its assembly is checked above)")
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (1, 15, 29, channels)).astype(np.int8)
    x[0, :, 0], x[0, :, 1] = 127, -128
    w = rng.integers(low, high + 1, (kernel, kernel, channels, 80)).astype(np.int8)
    w[..., :16], w[..., 16:24] = low, high
    _, name, run = _dot4_kernel(x, w, stride, mcpu, lanes)
    assert name.startswith(f"conv{kernel}x{kernel}_nhwc_int8_{instruction}_p")
    run()


def _dot4_kernel(x: np.ndarray, w: np.ndarray, stride: int, mcpu: str, lanes: int):
    """The dot4 kernel of an int8 NHWC conv (HWIO ``w``, no padding) times 3, templated for
    ``mcpu``: (scheduled, template name, a check that runs it here and compares it with the conv
    in int64)."""
    from tvm import te

    from mnv3compile.schedules.kernels.dot4 import compensation, dot4_compute, pack_weights

    kernel, channels, outputs = w.shape[0], x.shape[-1], w.shape[-1]
    x4 = np.zeros((*x.shape[:3], -(-channels // 4) * 4), np.int8)  # what the pass's pad does
    x4[..., :channels] = x
    out_h, out_w = (x.shape[1] - kernel) // stride + 1, (x.shape[2] - kernel) // stride + 1
    xs = te.placeholder(x4.shape, "int8", "x")
    packed = te.placeholder(pack_weights(w, lanes).shape, "int8", "packed")
    offsets = te.placeholder((outputs,), "int32", "offsets")
    acc = dot4_compute(xs, packed, offsets, (stride, stride))
    out = te.compute(acc.shape, lambda *i: acc(*i) * 3, name="epilogue")  # something to consume the tile
    target = tvm.target.Target({"kind": "llvm", "mcpu": mcpu})
    func = te.create_prim_func([xs, packed, offsets, out])
    scheduled, name = apply_template(inline_elementwise(func), isa_of(target))
    name = name.name

    def run() -> None:
        got = _run_kernel(scheduled, target, [tvm.runtime.tensor(a) for a in (
            x4, pack_weights(w, lanes), compensation(w), np.zeros((1, out_h, out_w, outputs), np.int32))])
        expected = np.zeros((1, out_h, out_w, outputs), np.int64)
        for ry in range(kernel):
            for rx in range(kernel):
                window = x[:, ry:ry + stride * (out_h - 1) + 1:stride, rx:rx + stride * (out_w - 1) + 1:stride]
                expected += window.astype(np.int64) @ w[ry, rx].astype(np.int64)
        assert np.array_equal(got, expected * 3)

    return scheduled, name, run


@pytest.mark.parametrize("width, outputs, tile", [
    (28, 40, "p1x40"),    # 5 vectors of 8 outputs: all in one tile
    (14, 672, "p1x56"),   # 84 vectors: 7 a tile
    (56, 72, "p1x24"),    # 9 vectors: 3 a tile
    (14, 184, "p7x8"),    # 23 vectors: no divisor but 1, so 7 pixels share each weight vector
])
def test_avx2_dot4_tile_is_one_pixel_by_up_to_8_vectors_or_a_row_of_pixels(width, outputs, tile):
    """AVX2's vpmaddubsw tile: one pixel's broadcast feeds the largest divisor of the output vectors
    up to 8; a channel count with no divisor but 1 gives the tile's accumulators to pixels instead
    of a 1x1 tile that shares nothing. Exact against the conv where this CPU has AVX2."""
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, (1, 2, width, 24)).astype(np.int8)
    w = rng.integers(-64, 64, (1, 1, 24, outputs)).astype(np.int8)
    _, name, run = _dot4_kernel(x, w, 1, "znver3", 8)
    assert name == f"conv1x1_nhwc_int8_vpmaddubsw_avx2_{tile}"
    if "avx2" not in cpu_flags():
        pytest.skip("this CPU cannot run AVX2 code (the tile was checked)")
    run()


def _template_name(func, target) -> str:
    try:
        return apply_template(func, isa_of(target))[1].name
    except NoTemplate:
        return ""


@pytest.mark.slow
def test_template_knobs_are_metaschedule_decisions(small_models):
    """Tuning's search space (schedules/tuning/tune.py): a template run on a traced schedule reads its
    tile knobs as sample_categorical decisions; different seeds give different tiles, each one
    computing exactly what the unscheduled kernel does; a replayed trace gives the same kernel."""
    from tvm import s_tir

    target = tvm_target(preset("host"))
    module = _fused(small_models["float32"], target)
    func = next(f for gv, f in module.functions.items()
                if isinstance(f, tirx.PrimFunc) and _template_name(f, target).startswith("conv1x1"))
    inputs = random_arguments(func)
    expected = _run_kernel(func, target, inputs)
    names = set()
    for seed in range(1, 7):
        sch = s_tir.Schedule(func, seed=seed)
        names.add(schedule_kernel(sch, isa_of(target), lambda knobs: SampledKnobs(knobs, sch)).name)
        decisions = [inst for inst in sch.trace.insts if inst.kind.name == "SampleCategorical"]
        assert len(decisions) == 2  # pixels, channel registers
        assert np.array_equal(_run_kernel(sch.mod["main"], target, inputs), expected)
        replayed = s_tir.Schedule(func)
        sch.trace.apply_to_schedule(replayed, remove_postproc=False)
        tvm.ir.assert_structural_equal(replayed.mod["main"], sch.mod["main"])
    assert len(names) > 1, names


@pytest.mark.parametrize("dtype, channels", [("float32", 120), ("float32", 72), ("int8", 120)])
def test_elementwise_vectors_stay_within_a_channel_row(dtype, channels):
    """A per-channel operand (the SE gate) broadcast over pixels: vectors wider than what divides
    the channel count crossed rows and read the gate lane by lane (c % 120 is no vector index), an
    insertelement per lane; Large fp32's SE scale at 28x28x120 took 180 us that way, 12 us without."""
    target = tvm_target(preset("host"))
    gate = te.placeholder((1, 1, 1, channels), dtype, "gate")
    x = te.placeholder((1, 28, 28, channels), dtype, "x")
    out = te.compute(x.shape, lambda n, h, w, c: gate[0, 0, 0, c] * x[n, h, w, c], name="scale")
    scheduled, name = apply_template(te.create_prim_func([gate, x, out]), isa_of(target))
    name = name.name
    assert name.startswith(f"elementwise_{dtype}_")
    library = tvm.compile(tvm.IRModule({"main": scheduled.with_attr("global_symbol", "main")}), target)
    llvm_ir = (library.mod.imports[0] if library.mod.imports else library.mod).inspect_source("ll")
    assert llvm_ir.count("insertelement") == 0
    rng = np.random.default_rng(0)
    arrays = [rng.integers(-8, 8, s).astype(dtype) for s in ((1, 1, 1, channels), (1, 28, 28, channels))]
    got = tvm.runtime.tensor(np.zeros((1, 28, 28, channels), dtype))
    library["main"](*(tvm.runtime.tensor(a) for a in arrays), got)
    assert np.array_equal(got.numpy(), arrays[0] * arrays[1])


@pytest.mark.parametrize("pad_hw, template", [((1, 2), "pad_int8_"), ((0, 0), None)], ids=["spatial", "channels-only"])
def test_padding_template_partitions_padded_rows_and_columns(pad_hw, template):
    """A pad's border and interior loops are split (the interior then has no guard); the result is
    the pad's. A pad of the channel axis alone has nothing to split and keeps the default."""
    target = tvm_target(preset("host"))
    top, left = pad_hw
    x = te.placeholder((1, 9, 11, 6), "int8", "x")
    shape = (1, 9 + 2 * top, 11 + 2 * left, 8)

    def padded(n, h, w, c):
        inside = tvm.tirx.all(h >= top, h < 9 + top, w >= left, w < 11 + left, c < 6)
        return tvm.tirx.if_then_else(inside, x[n, h - top, w - left, c], tvm.tirx.const(-7, "int8"))

    out = te.compute(shape, padded, name="PadInput")
    func = te.create_prim_func([x, out])
    if template is None:
        with pytest.raises(NoTemplate, match="innermost axis only"):
            apply_template(func, isa_of(target))
        return
    scheduled, name = apply_template(func, isa_of(target))
    name = name.name
    assert name.startswith(template) and "_partition" in scheduled.script()
    data = np.random.default_rng(0).integers(-128, 128, (1, 9, 11, 6)).astype(np.int8)
    expected = np.full(shape, -7, np.int8)
    expected[:, top:top + 9, left:left + 11, :6] = data
    assert np.array_equal(_run_kernel(scheduled, target, [tvm.runtime.tensor(data), tvm.runtime.tensor(expected)]),
                          expected)


def test_a_concat_is_not_taken_for_a_pad():
    """TOPI writes an NCHW concat as nested if_then_else over the channel axis, like a pad's guard,
    but its other branch is another tensor, not a fill constant (PaddleOCR's detector: four maps
    joined; the pad template failed on it): no template, TVM's default schedule."""
    target = tvm_target(preset("host"))
    parts = [te.placeholder((1, 4, 5, 5), "int8", f"x{i}") for i in range(3)]
    out = te.compute((1, 12, 5, 5), lambda n, c, h, w: tvm.tirx.if_then_else(
        c >= 8, parts[2][n, c - 8, h, w], tvm.tirx.if_then_else(c >= 4, parts[1][n, c - 4, h, w], parts[0][n, c, h, w])),
        name="T_concat")
    with pytest.raises(NoTemplate, match="not a pad"):
        apply_template(te.create_prim_func([*parts, out]), isa_of(target))


def test_a_bare_conv_gets_its_template(tmp_path):
    """A conv with no bias and no activation (PaddleOCR's FPN convs) writes the kernel's output
    itself: its accumulator tile goes through a local buffer whose copy is the epilogue. It fell
    to TVM's default schedule before (the detector's largest one: 540 ms of 930 at 640x640)."""
    from onnx import TensorProto, helper, numpy_helper

    from mnv3compile.passes import verify
    from mnv3compile.tvm.build import compile_onnx

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1], name="bare3x3"),
             helper.make_node("Conv", ["a", "w2"], ["y"], name="bare1x1")]
    inits = [numpy_helper.from_array(rng.standard_normal((16, 8, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal((32, 16, 1, 1)).astype(np.float32), "w2")]
    graph = helper.make_graph(nodes, "bare", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 12, 20])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 12, 20])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    library = compile_onnx(model, preset("host"), tmp_path / "bare.so")
    convs = {k: v for k, v in library.templates["templates"].items() if k.startswith("conv2d")}
    assert len(convs) == 2 and all(v.startswith(("conv3x3_nhwc_float32", "conv1x1_nhwc_float32")) for v in convs.values())
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(library.path)), tvm.cpu())
    x = rng.standard_normal((1, 8, 12, 20)).astype(np.float32)
    (expected,) = verify.run(model, {"x": x}).values()
    np.testing.assert_allclose(vm["main"](tvm.runtime.tensor(x)).numpy(), expected, rtol=1e-4, atol=1e-4)


def _conv_relu_kernel(shape, weight: np.ndarray, target, groups: int = 1):
    """The one fused kernel of an NHWC conv (HWIO ``weight``, "same" padding) + ReLU, as the
    pipeline makes it for ``target``."""
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            conv = bb.emit(relax.op.nn.conv2d(x, relax.const(weight), padding=weight.shape[0] // 2, groups=groups,
                                              data_layout="NHWC", kernel_layout="HWIO"))
            out = bb.emit_output(relax.op.nn.relu(conv))
        bb.emit_func_output(out)
    (func,) = [f for f in run_pipeline(bb.get(), target).functions.values() if isinstance(f, tirx.PrimFunc)]
    return func


@pytest.mark.parametrize("groups, channels, outputs, pixel_major", [
    (64, 64, 64, True),    # depthwise 3x3 (2.3 KB of weights): rows outermost
    (1, 256, 256, False),  # pointwise 256 -> 256 (256 KB): channel blocks outermost
    (1, 16, 64, True),     # pointwise 16 -> 64 (4 KB): rows outermost
])
def test_conv_template_keeps_channel_blocks_outermost_only_for_weights_beyond_l1(groups, channels, outputs,
                                                                                 pixel_major):
    kernel = 3 if groups > 1 else 1
    w = np.ones((kernel, kernel, channels // groups, outputs), np.float32)
    from mnv3compile.schedules.kernels.parallel import serial_kernels

    target = tvm_target(preset("host"))
    with serial_kernels():  # the loop order before the outer loops are fused for the thread pool
        scheduled, _ = apply_template(_conv_relu_kernel((1, 28, 28, channels), w, target, groups), isa_of(target))
    sch = tvm.s_tir.Schedule(scheduled)
    block = next(b for b in sch.get_child_blocks(sch.get_sblock("root"))
                 if sch.get(b).name_hint.startswith(("conv2d_nhwc", "group_conv2d_nhwc")))
    second = int(sch.get(sch.get_loops(block)[1]).extent)  # the loop under the batch
    assert (second == 28) == pixel_major, second  # rows (28) or channel blocks


@pytest.mark.parametrize("width, channels, outputs, tile", [
    (14, 112, 672, "p2x32"),  # 2 pixels x 4 vectors: 8 accumulators where 7x1 keeps 7 (and 8 loads per 7 FMAs)
    (56, 16, 64, "p2x32"),    # 2 x 4 and 4 x 2 rank equal: the first found
    (112, 64, 16, "p4x16"),   # 2 vectors of outputs: 4 x 2
    (7, 160, 960, "p7x8"),    # 7-pixel rows: nothing the model ranks clearly above 7x1 fits 14 registers
    (14, 80, 184, "p7x8"),    # 23 vectors of channels: the same
])
def test_avx2_float_pointwise_tile_follows_the_fma_model_and_computes_the_conv(width, channels, outputs, tile):
    target = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver3"})
    rng = np.random.default_rng(0)
    w = rng.standard_normal((1, 1, channels, outputs)).astype(np.float32)
    scheduled, name = apply_template(_conv_relu_kernel((1, width, width, channels), w, target), isa_of(target))
    name = name.name
    assert name == f"conv1x1_nhwc_float32_avx2_{tile}"
    if "avx2" not in cpu_flags():
        pytest.skip("this CPU cannot run AVX2 code (the tile was checked)")
    data = rng.standard_normal((1, width, width, channels)).astype(np.float32)
    got = _run_kernel(scheduled, target, [tvm.runtime.tensor(data), tvm.runtime.tensor(w),
                                          tvm.runtime.tensor(np.zeros((1, width, width, outputs), np.float32))])
    expected = np.maximum(np.einsum("nhwc,cf->nhwf", data.astype(np.float64), w[0, 0].astype(np.float64)), 0)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_a_parallel_kernels_accumulator_tile_is_on_the_stack():
    """The accumulator tile (and anything else the template keeps in "local" buffers) must not go
    through TVM's workspace allocator: inside a parallel closure that is a TVMBackendAllocWorkspace
    call per task (kernels/parallel.py, ``tiles_on_stack``)."""
    from mnv3compile.schedules.kernels.specs import ARM64_TARGETS, SPECS, kernels_of

    target = tvm.target.Target({"kind": "llvm", **ARM64_TARGETS["neon-dotprod"]})
    spec = next(s for s in SPECS if s.label == "pointwise int8 7-bit 15x15x24 -> 72")
    checked = 0
    for kernel in kernels_of(spec, target):
        try:
            scheduled, variant = apply_template(kernel.func, isa_of(target))
        except NoTemplate:
            continue
        library = tvm.compile(tvm.IRModule({"main": scheduled.with_attr("global_symbol", "main")}), target)
        llvm_ir = (library.mod.imports[0] if library.mod.imports else library.mod).inspect_source("ll")
        if variant.family == "dot4":
            assert "TVMBackendParallelLaunch" in llvm_ir  # the case this is about: a parallel closure
            assert "TVMBackendAllocWorkspace" not in llvm_ir
            checked += 1
    assert checked == 1
