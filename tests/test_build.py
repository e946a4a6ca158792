"""mnv3compile build: bundles for host (run and compared with onnxruntime), arm64 Linux and Android
(checked with readelf), int8 end to end, and clean failures that leave no bundle behind."""

import json
import re
import subprocess

import numpy as np
import onnx
import pytest

from conftest import NEEDS_ANDROID_LINKER, NEEDS_ARM64_GCC, cpu_flags

from mnv3compile.analysis import with_static_inputs
from mnv3compile.passes import verify
from mnv3compile.pipeline import BuildRequest, build
from mnv3compile.runner import BundleRunner
from mnv3compile.targets.presets import preset
from mnv3compile.zoo import build_model, build_spec


def _build(tmp_path_factory, model: onnx.ModelProto, target: str, quant: str = "none", name: str = "m",
           int8_lowering: str = "integer"):
    out = tmp_path_factory.mktemp(f"{name}-{target}-{quant}") / "bundle"
    return build(BuildRequest(target=preset(target), output=out, name=name, model=model, quant=quant,
                              int8_lowering=int8_lowering))


def _assert_matches_onnxruntime(result, samples: int = 2, rtol: float = 1e-4):
    manifest = result.manifest
    model = onnx.load(str(result.bundle / manifest["model"]))
    runner = BundleRunner(result.bundle)
    for seed in range(samples):
        x = np.random.default_rng(seed).standard_normal(runner.input_shape).astype(np.float32)
        expected = verify.run(model, {manifest["inputs"][0]["name"]: x})[manifest["outputs"][0]["name"]]
        actual = runner(x)
        assert np.abs(actual - expected).max() <= rtol * np.abs(expected).max()


@pytest.fixture(scope="module")
def small_host(tmp_path_factory):
    return _build(tmp_path_factory, build_model(build_spec("small", 1.0, 224)), "host", name="small")


def test_small_host_matches_onnxruntime_and_fuses_conv_bias_activation(small_host):
    _assert_matches_onnxruntime(small_host)
    report = json.loads((small_host.bundle / "build_report.json").read_text())
    kernels = report["kernels"]  # distinct kernels: convs of equal shape share one
    convs = [k for k in kernels if "conv2d" in k]
    assert convs and all(k.startswith("fused_conv2d") and "_add" in k for k in convs)  # bias always inside
    assert any(re.search(r"conv2d.*_add.*_relu", k) for k in convs)                    # conv + bias + ReLU
    assert any(re.search(r"conv2d.*_add.*clip.*multiply.*multiply", k) for k in convs)  # + h-swish (its / 6 a * 1/6)
    # the SE gate (h-sigmoid as the importer's maximum/minimum kernels, relabelled for NHWC) is one
    # kernel with the SE scaling it feeds
    assert any(re.search(r"maximum.*minimum.*multiply", k) for k in kernels)
    assert not [k for k in kernels if re.match(r"(fused_)?(relu|tir_clip|clip|maximum)", k)]  # none alone


def test_bundle_manifest_lists_everything_with_checksums(small_host):
    manifest = small_host.manifest
    files = {p.name for p in small_host.bundle.iterdir()}
    assert files == {"libsmall.so", "small.opt.onnx", "small.json", "build_report.json",
                     "mnv3_bundle.h", "mnv3_bundle.cmake"}  # the last two for apps (test_deploy.py)
    assert set(manifest["sha256"]) == files - {"small.json"}
    assert manifest["inputs"] == [{"name": "input", "dtype": "float32", "shape": [1, 3, 224, 224]}]
    assert manifest["target"]["preset"] == "host" and "apache-tvm" in manifest["versions"]


@pytest.mark.slow
@pytest.mark.parametrize("model, resolution", [("large", 224), ("lraspp-small", 128), ("lraspp-small", "96x160")])
def test_zoo_models_on_host_match_onnxruntime(tmp_path_factory, model, resolution):
    result = _build(tmp_path_factory, build_model(build_spec(model, 1.0, resolution)), "host", name=model.replace("-", "_"))
    _assert_matches_onnxruntime(result, samples=1)


@pytest.mark.slow
def test_paddleocr_classifier_on_host_matches_onnxruntime(tmp_path_factory, paddle_cls_path):
    from assets import PADDLE_CLS_SHAPE

    model, _ = with_static_inputs(onnx.load(str(paddle_cls_path)), {"x": PADDLE_CLS_SHAPE})
    _assert_matches_onnxruntime(_build(tmp_path_factory, model, "host", name="cls"))


@pytest.mark.slow
def test_int8_fake_lowering_agrees_with_onnxruntime_qdq(tmp_path_factory):
    """--int8-lowering fake (kept for comparison) vs onnxruntime on the same QDQ model (onnxruntime's
    optimizations off, so it too dequantizes -> float op -> quantizes). Float accumulation order flips
    a rounding now and then and the flips compound: the bounds are what was measured, not 1 step
    (4 steps until BatchNorm folding moved to onnxscript's float32 rule, 5 since: other weights,
    other flips). The integer lowering has its own tests (test_int8_lowering.py)."""
    result = _build(tmp_path_factory, build_model(build_spec("small", 0.75, 160)), "host", "int8", name="small8",
                    int8_lowering="fake")
    model = onnx.load(str(result.bundle / result.manifest["model"]))
    step = json.loads((result.bundle / "small8.quant.json").read_text())["activations"]["logits"]["scale"]
    runner = BundleRunner(result.bundle)
    for seed in range(3):
        x = np.random.default_rng(seed).standard_normal(runner.input_shape).astype(np.float32)
        steps = np.abs(runner(x) - verify.run(model, {"input": x})["logits"]) / step
        assert steps.max() <= 5.01 and np.argmax(runner(x)) == np.argmax(verify.run(model, {"input": x})["logits"])


@pytest.fixture(scope="module", params=["none", "int8"])
def small_android(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"small-android-{request.param}") / "bundle"
    return build(BuildRequest(target=preset("arm64-android"), output=out, name="small",
                              model=build_model(build_spec("small", 1.0, 96)), quant=request.param,
                              calib="synthetic:2" if request.param == "int8" else None))


def _readelf(args, path):
    return subprocess.run(["readelf", *args, str(path)], capture_output=True, text=True, check=True).stdout


def _provided(soname: str) -> set[str]:
    """What a DT_NEEDED library gives, by what the check does not itself read: readelf's view of the
    installed TVM FFI (the same version the app's runtime is built from), the shipped bionic lists."""
    if soname == "libtvm_ffi.so":
        from mnv3compile.targets.tvm_ffi_stub import installed_tvm_ffi

        return set(re.findall(r" (TVMFFI\w+)$", _readelf(["--dyn-syms", "-W"], installed_tvm_ffi()), re.M))
    from mnv3compile.targets.android_loader import SYMBOL_LISTS

    lines = (SYMBOL_LISTS / f"{soname}.txt").read_text().splitlines()
    return {line.split()[0] for line in lines if not line.startswith("#") and int(line.split()[1]) <= 24}


@NEEDS_ANDROID_LINKER
def test_android_library_loads_under_androids_rules(small_android):
    """Bionic binds every symbol at load and looks only in the library's own DT_NEEDED tree: each
    undefined symbol (readelf) must come from libtvm_ffi.so or an NDK system library at API 24."""
    library = small_android.library
    header = _readelf(["-h"], library)
    assert "ELF64" in header and "AArch64" in header and "DYN (Shared object file)" in header
    dynamic = _readelf(["-d"], library)
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", dynamic)
    assert needed == ["libtvm_ffi.so", "libc.so", "libm.so", "libdl.so"]
    assert "RPATH" not in dynamic and "RUNPATH" not in dynamic  # found by soname where the app ships it
    aligns = re.findall(r"LOAD\s+\S+\s+\S+\s+\S+\s+\S+\s+\S+\s+\S+\s+(0x[0-9a-f]+)", _readelf(["-lW"], library))
    assert aligns and all(int(a, 16) == 16384 for a in aligns)
    undefined = set(re.findall(r"UND (\S+)", _readelf(["--dyn-syms", "-W"], library)))
    assert "TVMFFIErrorSetRaisedFromCStrParts" in undefined
    assert undefined - set().union(*map(_provided, needed)) == set()


@NEEDS_ANDROID_LINKER
def test_deploy_test_checks_an_android_bundle_as_androids_loader_would(cli, small_android):
    code, out, _ = cli("deploy-test", str(small_android.bundle))
    assert code == 0, out
    assert "TVMFFIErrorSetRaisedFromCStrParts" in out and "libtvm_ffi.so" in out
    assert "DT_NEEDED: libtvm_ffi.so, libc.so, libm.so, libdl.so; segment alignment: 16384" in " ".join(out.split())
    assert "ok: it loads under Android's rules" in " ".join(out.split())


@pytest.mark.slow
@NEEDS_ARM64_GCC
def test_arm64_linux_library(tmp_path_factory):
    result = _build(tmp_path_factory, build_model(build_spec("small-minimal", 0.5, 96)), "arm64-linux", name="s")
    header = _readelf(["-h"], result.library)
    assert "AArch64" in header and "ELF64" in header


def test_cli_build_errors_leave_no_bundle(cli, tmp_path, monkeypatch):
    out = tmp_path / "bundle"
    code, _, err = cli("build", "--model", "small", "--target", "iphone", "-o", str(out))
    assert (code, err) == (2, "error: unknown target 'iphone'; choose one of: host, arm64-linux, arm64-android, "
                              "pixel2, pixel3, pixel4, pixel6, pixel7, pixel8, rpi4, rpi5 (see 'mnv3compile targets')\n")
    import shutil

    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if "aarch64" in name else real_which(name))
    code, _, err = cli("build", "--model", "small-minimal", "--resolution", "96", "--quant", "none",
                       "--target", "rpi4", "-o", str(out))
    assert (code, err) == (2, "error: no toolchain for target 'rpi4' (aarch64-linux-gnu); install it: "
                              "apt-get install gcc-aarch64-linux-gnu g++-aarch64-linux-gnu\n")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle")]


@NEEDS_ANDROID_LINKER
def test_cli_build_refuses_an_android_library_androids_loader_would_refuse(cli, tmp_path, monkeypatch):
    """Linked as every library was before the libtvm_ffi.so stub: the build fails, saying why."""
    from mnv3compile.targets import toolchains

    monkeypatch.setattr(toolchains, "_link_tvm_ffi", lambda stubs: (f"-L{stubs}",))
    out = tmp_path / "bundle"
    code, _, err = cli("build", "--model", "small-minimal", "--resolution", "96", "--quant", "none",
                       "--target", "arm64-android", "-o", str(out))
    assert code == 2 and err.startswith("error: ") and err.endswith(
        "libmobilenetv3_small_minimal.so would not load on Android (API 24): no library it names in DT_NEEDED "
        "(libc.so, libm.so, libdl.so) defines TVMFFIErrorSetRaisedFromCStrParts\n")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle")]


def test_cli_build_unsupported_op_is_named(cli, tmp_path):
    from onnx import TensorProto, helper

    path = tmp_path / "odd.onnx"
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["r"], name="ok"),
                               helper.make_node("Celu", ["r"], ["y"], name="odd_activation")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 8, 8])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    out = tmp_path / "bundle"
    code, _, err = cli("build", "--onnx", str(path), "--quant", "none", "-o", str(out))
    assert (code, err) == (2, "error: TVM's ONNX importer does not support op 'Celu' (node 'odd_activation', "
                              "domain 'ai.onnx')\n")
    assert not out.exists() and not list(tmp_path.glob(".bundle*"))


@pytest.mark.slow
def test_cli_build_fixes_a_dynamic_batch_and_says_so(cli, tmp_path, paddle_cls_path):
    out = tmp_path / "cls"
    code, stdout, err = cli("build", "--onnx", str(paddle_cls_path), "--input-shape", "x=-1,3,48,192",
                            "--quant", "none", "-o", str(out))
    assert code == 0, err
    assert "note: input 'x' axis 0 is dynamic (?); counted as 1" in stdout
    assert "latency:" in stdout and (out / "libch_ppocr_mobile_v2_0_cls_infer.so").exists()


def test_build_db_that_is_not_a_database(tmp_path, cli):
    code, _, err = cli("build", "--model", "small-minimal", "--quant", "none", "--db", str(tmp_path), "-o",
                       str(tmp_path / "b"))
    assert (code, err) == (2, f"error: {tmp_path} is not a tuning database (needs database_workload.json and "
                              "database_tuning_record.json)\n")
    assert not (tmp_path / "b").exists()


def test_host_cpu_can_be_named_to_build_another_code_path(monkeypatch):
    """MNV3COMPILE_HOST_CPU=znver3 builds the AVX2 path on an AVX-512 machine (benchmarks/avx2_path.sh)."""
    from mnv3compile.schedules.kernels.isa import isa_of
    from mnv3compile.targets.presets import preset
    from mnv3compile.tvm.build import HOST_CPU_VARIABLE, tvm_target

    monkeypatch.setenv(HOST_CPU_VARIABLE, "znver3")
    target = tvm_target(preset("host"))
    assert (str(target.attrs["mcpu"]), isa_of(target).name) == ("znver3", "avx2")
    monkeypatch.delenv(HOST_CPU_VARIABLE)
    from tvm.target import codegen

    assert str(tvm_target(preset("host")).attrs["mcpu"]) == codegen.llvm_get_system_cpu()


@pytest.mark.slow
@pytest.mark.parametrize("weight_bits", [8, 7])
def test_the_avx2_path_computes_the_same_integers_as_this_cpus(monkeypatch, tmp_path, weight_bits):
    """int8 bundles for AVX2 (znver3: vpmaddwd pairs for 8-bit weights, vpmaddubsw dot products for
    7-bit ones) and for this CPU (VNNI here) give the same outputs bit for bit: integer kernels
    compute the same integers on every ISA. Run where this CPU has AVX2 (every x86-64 machine here)."""
    import numpy as np

    from mnv3compile.pipeline import BuildRequest, build
    from mnv3compile.quant import QuantizeSettings
    from mnv3compile.runner import BundleRunner
    from mnv3compile.targets.presets import preset
    from mnv3compile.tvm.build import HOST_CPU_VARIABLE
    from mnv3compile.zoo import build_model, build_spec

    if "avx2" not in cpu_flags():
        pytest.skip("this CPU has no AVX2 to run the znver3 build")
    spec = build_spec("small", 0.5, 96)
    outputs = []
    for cpu in ("znver3", ""):
        monkeypatch.setenv(HOST_CPU_VARIABLE, cpu)
        result = build(BuildRequest(target=preset("host"), output=tmp_path / (cpu or "native"), name="m",
                                    model=build_model(spec), quant="int8",
                                    quant_settings=QuantizeSettings(weight_bits=weight_bits)))
        templates = json.loads((result.bundle / "build_report.json").read_text())["templates"]["templates"]
        if cpu:
            technique = "vpmaddubsw" if weight_bits == 7 else "vpmaddwd"
            assert any(f"_{technique}_avx2_" in name for name in templates.values()), templates
        x = np.random.default_rng(0).standard_normal(spec.input_shape).astype(np.float32)
        outputs.append(BundleRunner(result.bundle)(x))
    assert np.array_equal(*outputs)


@pytest.mark.slow
def test_paddleocr_detector_int8_bundle_is_integer_and_equals_its_qdq_model(tmp_path, paddle_det_path):
    """PP-OCRv4's detector at 160x160, int8 for the host: no group left fake-quantized (its
    ConvTransposes as 1x1 Conv + DepthToSpace, Resize, Concat, Sigmoid, the learnable affine
    blocks all lowered) and its probability map
    within one step (1/256) of onnxruntime running the bundle's own QDQ model."""
    model, _ = with_static_inputs(onnx.load(str(paddle_det_path)), {"x": [1, 3, 160, 160]})
    build(BuildRequest(target=preset("host"), output=tmp_path / "det", name="det", model=model, quant="int8",
                       calib="synthetic:4"))
    report = json.loads((tmp_path / "det" / "build_report.json").read_text())["int8"]
    assert report["fallback_groups"] == 0 and report["by_kind"]["layout"] == 2  # the DepthToSpaces
    runner = BundleRunner(tmp_path / "det")
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 160, 160)).astype(np.float32)
    (expected,) = verify.run(onnx.load(str(tmp_path / "det" / runner.manifest["model"])), {"x": x}).values()
    assert np.abs(runner(x) - expected).max() <= 1 / 256 + 1e-6
