"""The C runtime (runtime/, CMakeLists.txt), its example, its JNI binding and the files a bundle
carries for apps: built with CMake, run, and compared with the Python runtime (host natively,
arm64 under qemu); every error path of the C API; ASan/UBSan clean over 100 runs."""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from conftest import NEEDS_CMAKE

from mnv3compile.deploy_check import ANDROID_BINDING, TOLERANCE, build_runtime, check_bundle, source_root
from mnv3compile.pipeline import BuildRequest, build
from mnv3compile.quant.preprocess import PRESETS, load_image
from mnv3compile.runner import BundleRunner
from mnv3compile.targets.presets import preset
from mnv3compile.zoo import build_model, build_spec

LABELS = [f"class {i}" for i in range(1000)]
pytestmark = [NEEDS_CMAKE, pytest.mark.slow]  # every test here builds the C runtime with CMake


def _bundle(tmp_path_factory, name: str, model, target: str = "host", quant: str = "none", **extra):
    out = tmp_path_factory.mktemp(name) / "bundle"
    request = BuildRequest(target=preset(target), output=out, name=name, model=model, quant=quant,
                           calib="synthetic:4" if quant == "int8" else None, **extra)
    return build(request).bundle


@pytest.fixture(scope="module")
def small_fp32(tmp_path_factory):
    return _bundle(tmp_path_factory, "small_fp32", build_model(build_spec("small", 1.0, 96)),
                   preprocess="torchvision", labels=LABELS)


@pytest.fixture(scope="module")
def small_int8(tmp_path_factory):
    return _bundle(tmp_path_factory, "small_int8", build_model(build_spec("small", 1.0, 96)), quant="int8",
                   preprocess="torchvision")


@pytest.fixture(scope="module")
def runtime_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("runtime")


@pytest.fixture(scope="module")
def host_runtime(runtime_dir):
    return build_runtime("host", runtime_dir / "host")


def _image(path, width: int, height: int):
    """A PPM with smooth gradients and a noisy patch (resampling sees both)."""
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // (width - 1), y * 255 // (height - 1), (x + y) * 7 % 256], -1).astype(np.uint8)
    pixels[height // 4: height // 2, width // 4: width // 2] = np.random.default_rng(1).integers(
        0, 256, (height // 2 - height // 4, width // 2 - width // 4, 3))
    Image.fromarray(pixels).save(path)
    return path


@pytest.mark.parametrize("which", ["small_fp32", "small_int8"])
@pytest.mark.parametrize("size", [(317, 213), (977, 641)], ids=["upscale", "downscale"])
def test_c_runtime_matches_python_runtime_on_tensors_and_images(request, runtime_dir, tmp_path, which, size):
    """Same logits as the Python runtime, on a tensor and on an image whose resize and normalization
    the C runtime does itself (Pillow's resampling reproduced, so equal to the last bit)."""
    bundle = request.getfixturevalue(which)
    report = check_bundle(bundle, runtime_dir, _image(tmp_path / "image.ppm", *size))
    assert [row.what for row in report.rows] == ["random tensor", "random tensor, runtime loaded RTLD_LOCAL",
                                                 "image image.ppm"]
    for row in report.rows:
        assert row.max_abs_diff <= TOLERANCE and row.top5_c == row.top5_python


def _echo_model(height: int, width: int):
    """y = x * 1: its output is the preprocessed input, exposed."""
    from onnx import TensorProto, helper, numpy_helper

    one = numpy_helper.from_array(np.ones((1,), np.float32), "one")
    graph = helper.make_graph([helper.make_node("Mul", ["x", "one"], ["y"])], "echo",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, height, width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, height, width])], [one])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("name, input_size, image_size", [
    ("paddle", (48, 192), (160, 37)),    # BGR, height to 48 keeping the aspect ratio, zeros on the right
    ("paddle", (48, 192), (900, 40)),    # wider than 192 after scaling: capped, no padding
    ("tf", (64, 80), (317, 213)),        # center crop of a non-square input
], ids=["pad-right", "pad-right-capped", "center-crop-non-square"])
def test_c_preprocessing_equals_python_for_every_resize_mode(tmp_path_factory, host_runtime, tmp_path, name,
                                                             input_size, image_size):
    bundle = _bundle(tmp_path_factory, "echo", _echo_model(*input_size), preprocess=name)
    image = _image(tmp_path / "image.ppm", *image_size)
    host_runtime.run("classify", str(bundle), str(image), "--top", "0", "--save-output", str(tmp_path / "c.f32"))
    expected = load_image(image, PRESETS[name], *input_size)
    np.testing.assert_array_equal(np.fromfile(tmp_path / "c.f32", np.float32).reshape(expected.shape), expected)


def test_lraspp_segmentation_output(tmp_path_factory, runtime_dir):
    bundle = _bundle(tmp_path_factory, "lraspp", build_model(build_spec("lraspp-small", 1.0, 96)))
    report = check_bundle(bundle, runtime_dir)
    assert report.ok and report.rows[0].max_abs_diff <= TOLERANCE


def test_several_outputs_come_back_in_manifest_order(tmp_path_factory, host_runtime, tmp_path):
    """A model with two outputs (features and pooled): both, concatenated in manifest order."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w"),
               numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["features"]),
             helper.make_node("GlobalAveragePool", ["features"], ["g"]),
             helper.make_node("Flatten", ["g"], ["pooled"])]
    graph = helper.make_graph(nodes, "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 8, 32, 32]),
                               helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [1, 8])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    bundle = _bundle(tmp_path_factory, "two", model)
    x = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
    x.tofile(tmp_path / "x.f32")
    host_runtime.run("classify", str(bundle), "--tensor", str(tmp_path / "x.f32"), "--save-output", str(tmp_path / "y.f32"))
    features, pooled = BundleRunner(bundle).outputs(x)
    np.testing.assert_array_equal(np.fromfile(tmp_path / "y.f32", np.float32),
                                  np.concatenate([features.ravel(), pooled.ravel()]))


@pytest.mark.skipif(not shutil.which("qemu-aarch64") or not shutil.which("aarch64-linux-gnu-g++"),
                    reason="needs qemu-user and g++-aarch64-linux-gnu (apt-get install qemu-user g++-aarch64-linux-gnu)")
@pytest.mark.parametrize("quant", ["none", "int8"])
def test_arm64_runtime_under_qemu_matches_python_runtime_there(tmp_path_factory, runtime_dir, tmp_path, quant):
    """Cross-compiled with the toolchain file, linked against the aarch64 wheels of the stand-in
    phone's sysroot, run under qemu-aarch64; the reference is TVM's Python runtime in the same
    emulated sysroot."""
    bundle = _bundle(tmp_path_factory, "small_arm64", build_model(build_spec("small", 1.0, 96)), "arm64-linux",
                     quant, preprocess="torchvision")
    image = _image(tmp_path / "image.ppm", 317, 213) if quant == "int8" else None  # qemu time: one image
    report = check_bundle(bundle, runtime_dir, image)
    assert report.arch == "arm64" and report.ok and len(report.rows) == (3 if image else 2), report.rows
    assert report.rows[1].what == "random tensor, runtime loaded RTLD_LOCAL"  # under LD_BIND_NOW=1, as all rows
    host = build_runtime("host", runtime_dir / "host")  # the arm64 library on this x86-64 host: refused
    library = bundle / json.loads((bundle / "small_arm64.json").read_text())["library"]
    assert _api(host, "open", str(bundle)) == [
        f"open: MNV3_ERR_LOAD: {library} was built for another CPU (ELF machine 183); this program runs on x86-64: "
        "rebuild the bundle for this target"]


def test_qemu_counts_each_threads_instructions(tmp_path_factory, runtime_dir, tmp_path):
    """The arm64 multi-core proxy: under qemu-user each guest thread is a vCPU of its own and the
    plugin counts each apart (they add up to the total); on 4 workers the workers run a share of
    the kernels and the main thread less than the whole 1-worker count. Waiting workers sleep at
    once here (spin count 0): a spinning one would add instructions that are not work."""
    from mnv3compile.schedules.tuning.instructions import counted, counted_per_thread, helpers_folder, plugin

    bundle = _bundle(tmp_path_factory, "small_rpi5", build_model(build_spec("small", 1.0, 96)), "rpi5", "int8")
    np.random.default_rng(0).standard_normal((1, 3, 96, 96)).astype(np.float32).tofile(tmp_path / "x.f32")
    runtime = build_runtime("arm64", runtime_dir / "arm64")
    counter = plugin(helpers_folder())
    per_thread = {}
    for threads in (1, 4):
        result = subprocess.run(["qemu-aarch64", "-plugin", str(counter), "-d", "plugin",
                                 str(runtime.folder / "mnv3_api_test"), "bench", str(bundle), str(tmp_path / "x.f32"),
                                 "2", str(threads)], capture_output=True, text=True,
                                env={**runtime.environment(), "TVM_THREAD_POOL_SPIN_COUNT": "0"})
        assert result.returncode == 0, result.stdout + result.stderr
        per_thread[threads] = counted_per_thread(result.stdout + result.stderr)
        assert sum(per_thread[threads].values()) == counted(result.stdout + result.stderr)
    one = per_thread[1][0]
    assert list(per_thread[1]) == [0] and len(per_thread[4]) == 4
    assert per_thread[4][0] < 0.9 * one
    assert sum(n for k, n in per_thread[4].items() if k) > 0.2 * one


def test_a_library_without_the_tvm_ffi_in_dt_needed_fails_as_it_would_on_android(tmp_path_factory, host_runtime,
                                                                                  monkeypatch):
    """What every library was before the libtvm_ffi.so stub: it ran only where the process had put
    libtvm_ffi.so in the global scope (classify links it), and not once the runtime is loaded
    RTLD_LOCAL with immediate binding, as an Android app loads it."""
    from mnv3compile.targets import toolchains

    monkeypatch.setattr(toolchains, "_link_tvm_ffi", lambda stubs: (f"-L{stubs}",))
    bundle = _bundle(tmp_path_factory, "unlinked", build_model(build_spec("small-minimal", 0.5, 96)))
    x = tmp_path_factory.mktemp("unlinked-input") / "x.f32"
    np.zeros((1, 3, 96, 96), np.float32).tofile(x)
    assert host_runtime.run("classify", str(bundle), "--tensor", str(x), "--top", "1").returncode == 0
    result = host_runtime.run("mnv3_load_local", str(host_runtime.runtime_library), str(bundle), str(x),
                              str(x.with_suffix(".out")), check=False)
    assert result.returncode == 1 and result.stderr.endswith("undefined symbol: TVMFFIErrorSetRaisedFromCStrParts\n")


def _api(host_runtime, *args) -> list[str]:
    return host_runtime.run("mnv3_api_test", *args, check=False).stdout.splitlines()


def test_every_argument_error_is_a_status_and_a_message(host_runtime, small_fp32):
    assert _api(host_runtime, "errors", str(small_fp32)) == [
        "open NULL: MNV3_ERR_ARGUMENT: bundle_dir is NULL",
        "run NULL model: MNV3_ERR_ARGUMENT: model, input and output must not be NULL",
        "run NULL input: MNV3_ERR_ARGUMENT: model, input and output must not be NULL",
        "run NULL output: MNV3_ERR_ARGUMENT: model, input and output must not be NULL",
        "run short input: MNV3_ERR_ARGUMENT: input has 27647 floats; input takes 27648",
        "run long input: MNV3_ERR_ARGUMENT: input has 27649 floats; input takes 27648",
        "run short output: MNV3_ERR_ARGUMENT: output has room for 999 floats; the model writes 1000",
        "run NULL err: MNV3_ERR_ARGUMENT",
        "rgb NULL image: MNV3_ERR_ARGUMENT: model, rgb and input must not be NULL",
        "rgb zero width: MNV3_ERR_ARGUMENT: image 0x4 with stride 12: width and height must be positive and stride >= 3 * width",
        "rgb short stride: MNV3_ERR_ARGUMENT: image 4x4 with stride 11: width and height must be positive and stride >= 3 * width",
        "input info index: MNV3_ERR_ARGUMENT: index 1: the model has 1",
        "output info NULL: MNV3_ERR_ARGUMENT: model and info must not be NULL",
        "run ok: MNV3_OK: ",
        "label out of range: NULL",
        "NULL model counts: 0 0 0",
    ]


def _copy(bundle, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    return copy


def _manifest(bundle):
    path = next(p for p in bundle.glob("*.json") if '"mnv3compile_bundle"' in p.read_text())
    return path, json.loads(path.read_text())


def test_broken_bundles_are_refused_with_a_reason(host_runtime, small_fp32, tmp_path):
    assert _api(host_runtime, "open", str(tmp_path / "missing")) == [
        f"open: MNV3_ERR_NOT_FOUND: {tmp_path / 'missing'}: no such bundle folder"]
    assert _api(host_runtime, "open", str(tmp_path)) == [
        f"open: MNV3_ERR_NOT_FOUND: {tmp_path}: no mnv3compile manifest (*.json) in this folder"]

    copy = _copy(small_fp32, tmp_path)
    path, manifest = _manifest(copy)
    library = copy / manifest["library"]
    library.write_bytes(library.read_bytes()[:4096])  # truncated on the way to the device
    line, = _api(host_runtime, "open", str(copy))
    assert line.startswith(f"open: MNV3_ERR_INTEGRITY: {library}: sha256 ") and "differs from the manifest's" in line

    import hashlib

    manifest["sha256"][manifest["library"]] = hashlib.sha256(library.read_bytes()).hexdigest()
    path.write_text(json.dumps(manifest))  # the hash agrees, the file is still no library
    line, = _api(host_runtime, "open", str(copy))  # dlopen would fault on it (SIGBUS): checked first
    assert line.startswith(f"open: MNV3_ERR_LOAD: {library} is truncated: 4096 bytes, a segment ends at ")

    import struct

    header = bytearray(library.read_bytes())
    struct.pack_into("<Q", header, 0x20, 2**64 - 16)  # e_phoff: an offset that overflows when added to
    library.write_bytes(bytes(header))
    manifest["sha256"][manifest["library"]] = hashlib.sha256(library.read_bytes()).hexdigest()
    path.write_text(json.dumps(manifest))
    assert _api(host_runtime, "open", str(copy)) == [
        f"open: MNV3_ERR_LOAD: {library} is truncated or corrupt (program headers)"]

    library.write_bytes(b"\x7fELF" + bytes(4092))  # ELF magic, garbage after it
    manifest["sha256"][manifest["library"]] = hashlib.sha256(library.read_bytes()).hexdigest()
    path.write_text(json.dumps(manifest))
    assert _api(host_runtime, "open", str(copy)) == [f"open: MNV3_ERR_LOAD: {library} is not a 64-bit shared library"]

    shutil.copy(host_runtime.folder / "libmnv3.so", library)  # a real shared library, not a model
    manifest["sha256"][manifest["library"]] = hashlib.sha256(library.read_bytes()).hexdigest()
    path.write_text(json.dumps(manifest))
    assert _api(host_runtime, "open", str(copy)) == [f"open: MNV3_ERR_LOAD: {library} is not a Relax VM executable"]

    library.unlink()
    assert _api(host_runtime, "open", str(copy)) == [f"open: MNV3_ERR_NOT_FOUND: {library}: cannot open"]

    del manifest["outputs"]
    path.write_text(json.dumps(manifest))
    assert _api(host_runtime, "open", str(copy)) == [f'open: MNV3_ERR_MANIFEST: {path.name}: no "outputs"']
    path.write_text(json.dumps(manifest)[:100])
    line, = _api(host_runtime, "open", str(copy))
    assert line.startswith(f"open: MNV3_ERR_MANIFEST: {path}: not valid JSON (")


def test_rgb_input_of_a_bundle_without_preprocessing_is_refused(tmp_path_factory, host_runtime, tmp_path):
    bundle = _bundle(tmp_path_factory, "bare", build_model(build_spec("small", 0.5, 96)))
    image = _image(tmp_path / "image.ppm", 64, 64)
    result = host_runtime.run("classify", str(bundle), str(image), check=False)
    assert result.returncode == 1
    assert result.stderr == "error: this bundle has no preprocessing in its manifest (build it with --preprocess)\n"


@pytest.mark.parametrize("content, message", [
    (b"P6\n4 4\n255\n" + bytes(20), "truncated PPM (4x4 needs 48 bytes of pixels)"),
    (b"P6\n4 4\n65535\n" + bytes(96), "bad PPM header (need width, height and maxval 255)"),
    (b"P3\n1 1\n255\n0 0 0\n", "not a binary PPM (P6)"),
])
def test_bad_images_end_with_a_message(host_runtime, small_fp32, tmp_path, content, message):
    image = tmp_path / "bad.ppm"
    image.write_bytes(content)
    result = host_runtime.run("classify", str(small_fp32), str(image), check=False)
    assert (result.returncode, result.stderr) == (1, f"error: {image}: {message}\n")


def test_top5_with_labels(host_runtime, small_fp32, tmp_path):
    x = np.random.default_rng(0).standard_normal((1, 3, 96, 96)).astype(np.float32)
    x.tofile(tmp_path / "x.f32")
    lines = host_runtime.run("classify", str(small_fp32), "--tensor", str(tmp_path / "x.f32")).stdout.splitlines()
    logits = BundleRunner(small_fp32)(x).ravel()
    best = [int(i) for i in np.argsort(-logits, kind="stable")[:5]]
    assert [line.split("\t")[1] for line in lines] == [str(i) for i in best]
    assert [line.split("\t")[3] for line in lines] == [LABELS[i] for i in best]


def test_the_c_example_benches_a_cold_start(host_runtime, small_int8, tmp_path):
    """classify --bench: open, first result, the median of the runs, peak memory, as an app sees
    them; the image path and the tensor path both."""
    import re

    np.zeros((1, 3, 96, 96), np.float32).tofile(tmp_path / "x.f32")
    for source in (["--tensor", str(tmp_path / "x.f32")], [str(_image(tmp_path / "image.ppm", 317, 213))]):
        lines = host_runtime.run("classify", str(small_int8), *source, "--bench", "7", "--threads", "2").stdout
        numbers = re.fullmatch(r"open: ([\d.]+) ms\n"
                               r"first result: ([\d.]+) ms \(open \+ first inference\)\n"
                               r"inference: median ([\d.]+) ms, p10 ([\d.]+), p90 ([\d.]+) over 7 runs on 2 threads\n"
                               r"peak resident memory: ([\d.]+) MiB\n", lines)
        assert numbers, lines
        open_ms, first, median, p10, p90, peak = (float(n) for n in numbers.groups())
        assert 0 < open_ms < first and 0 < p10 <= median <= p90 and peak > 1
    result = host_runtime.run("classify", str(small_int8), "--tensor", str(tmp_path / "x.f32"), "--bench", "0",
                              check=False)
    assert (result.returncode, result.stderr) == (1, "error: --bench takes a number of runs, 1 or more\n")


def test_two_models_in_two_threads(host_runtime, small_fp32, small_int8, tmp_path):
    x = np.random.default_rng(0).standard_normal((1, 3, 96, 96)).astype(np.float32)
    x.tofile(tmp_path / "x.f32")
    lines = _api(host_runtime, "threads", str(small_fp32), str(tmp_path / "x.f32"), str(small_int8),
                 str(tmp_path / "x.f32"), "20")
    assert lines == [f"thread {k} ({k + 1} workers): 20 runs, 0 differ from the single-threaded result" for k in (0, 1)]


@pytest.mark.parametrize("affinity", [0, 1, 2, 3])  # big, little, all, unpinned
def test_outputs_are_bit_identical_on_1_to_4_workers_from_c(host_runtime, small_int8, tmp_path, affinity):
    """The count asked for is the pool's, whatever the affinity, and the outputs do not move."""
    np.random.default_rng(0).standard_normal((1, 3, 96, 96)).astype(np.float32).tofile(tmp_path / "x.f32")
    assert _api(host_runtime, "workers", str(small_int8), str(tmp_path / "x.f32"), str(affinity)) == [
        "threads 1: 1 workers, identical", "threads 2: 2 workers, identical", "threads 3: 3 workers, identical",
        "threads 4: 4 workers, identical"]


@pytest.mark.parametrize(("inherited", "used"), [
    ({"TVM_NUM_THREADS": "2", "MNV3COMPILE_TVM_NUM_THREADS": "2"}, [1, 2, 3, 4]),  # set by a parent's mnv3 runtime
    ({"TVM_NUM_THREADS": "2"}, [1, 2, 2, 2]),  # the app's own: the cap
])
def test_a_pool_size_inherited_from_a_parent_process_is_not_taken_for_the_apps(host_runtime, small_int8, tmp_path,
                                                                                inherited, used):
    np.zeros((1, 3, 96, 96), np.float32).tofile(tmp_path / "x.f32")
    environment = {**host_runtime.environment(), **inherited}
    for name in ("TVM_NUM_THREADS", "MNV3COMPILE_TVM_NUM_THREADS"):
        if name not in inherited:
            environment.pop(name, None)
    result = subprocess.run(host_runtime.command("mnv3_api_test", "workers", str(small_int8), str(tmp_path / "x.f32"),
                                                 "0"), capture_output=True, text=True, env=environment)
    assert result.stdout.splitlines() == [f"threads {k}: {n} workers, identical" for k, n in zip((1, 2, 3, 4), used)]


def test_out_of_range_options_are_argument_errors(host_runtime, small_int8):
    assert _api(host_runtime, "options", str(small_int8)) == [
        "open_with: MNV3_ERR_ARGUMENT: threads -1: give 1 to 256 (0: one per big core)",
        "open_with: MNV3_ERR_ARGUMENT: threads 257: give 1 to 256 (0: one per big core)",
        "open_with: MNV3_ERR_ARGUMENT: affinity 7: give MNV3_AFFINITY_BIG, _LITTLE, _ALL or _UNPINNED",
        "threads of NULL: 0"]


def test_sanitizers_find_nothing_over_100_runs_and_the_error_paths(small_fp32, runtime_dir, tmp_path):
    """AddressSanitizer (leaks included) and UndefinedBehaviorSanitizer over 5 x (open, 20 runs,
    close) and every argument error."""
    sanitized = build_runtime("host", runtime_dir / "asan", sanitize=True)
    np.random.default_rng(0).standard_normal((1, 3, 96, 96)).astype(np.float32).tofile(tmp_path / "x.f32")
    for args in (("repeat", str(small_fp32), str(tmp_path / "x.f32"), "5", "20"), ("errors", str(small_fp32)),
                 ("open", str(tmp_path / "missing"))):
        result = sanitized.run("mnv3_api_test", *args, check=False)
        assert result.returncode == 0 and "Sanitizer" not in result.stderr, result.stderr[-2000:]
    assert "5 opens, 100 runs, identical outputs" in sanitized.run(
        "mnv3_api_test", "repeat", str(small_fp32), str(tmp_path / "x.f32"), "5", "20").stdout


def test_bundle_carries_a_header_and_a_cmake_snippet_an_app_builds_with(small_int8, tmp_path):
    """The README's app recipe, verbatim: add_subdirectory(the runtime), include(the snippet),
    mnv3_use_bundle(app); the app uses the generated header's constants and runs the bundle."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.c").write_text("""
#include <stdio.h>
#include "mnv3.h"
#include "mnv3_bundle.h"
int main(void) {
  static float input[MNV3_INPUT_COUNT], output[MNV3_OUTPUT_COUNT];
  const int64_t shape[] = MNV3_INPUT_SHAPE;
  const float mean[] = MNV3_PREPROCESS_MEAN;
  mnv3_error err;
  mnv3_model *model = mnv3_open(MNV3_APP_BUNDLE, &err);
  if (!model) { printf("%s\\n", err.message); return 1; }
  int status = mnv3_run_f32(model, input, MNV3_INPUT_COUNT, output, MNV3_OUTPUT_COUNT, &err);
  printf("%s %lld %s %.3f %d\\n", MNV3_BUNDLE_NAME, (long long)shape[2], MNV3_PREPROCESS_RESIZE, mean[0], status);
  mnv3_close(model);
  return status;
}
""")
    (app / "CMakeLists.txt").write_text(f"""
cmake_minimum_required(VERSION 3.18)
project(app C CXX)
add_subdirectory("{source_root()}" mnv3)
include("{small_int8}/mnv3_bundle.cmake")
add_executable(app main.c)
mnv3_use_bundle(app)
target_compile_definitions(app PRIVATE MNV3_APP_BUNDLE="${{MNV3_BUNDLE_DIR}}")
""")
    import sys

    for step in (["cmake", "-S", str(app), "-B", str(app / "build"), f"-DPython3_EXECUTABLE={sys.executable}"],
                 ["cmake", "--build", str(app / "build")]):
        subprocess.run(step, check=True, capture_output=True)
    result = subprocess.run([str(app / "build" / "app")], capture_output=True, text=True)
    assert (result.returncode, result.stdout) == (0, "small_int8 96 center-crop 0.485 0\n")


class Mnv3Affinity:  # Mnv3Model.BIG, .ALL: mnv3.h's mnv3_affinity
    BIG, ALL = 0, 2


@pytest.mark.skipif(not shutil.which("javac") or not shutil.which("java"), reason="needs a JDK (javac, java)")
def test_java_binding_runs_tensors_and_argb_pixels(host_runtime, small_fp32, small_int8, tmp_path):
    root = source_root()
    classes = tmp_path / "classes"
    sources = [*(root / "runtime/jni/java/com/mnv3compile").glob("*.java"), root / "runtime/tests/RunBundle.java"]
    subprocess.run(["javac", "-d", str(classes), *map(str, sources)], check=True, capture_output=True)

    def java(*args, binding=ANDROID_BINDING):
        return subprocess.run(["java", f"-Djava.library.path={host_runtime.folder}", "-cp", str(classes), "RunBundle",
                               *args], capture_output=True, text=True, check=True, env={**os.environ, **binding}).stdout

    x = np.random.default_rng(0).standard_normal((1, 3, 96, 96)).astype(np.float32)
    x.tofile(tmp_path / "x.f32")
    for bundle in (small_fp32, small_int8):  # bound at load as on Android, and lazily as glibc does by default
        for binding in (ANDROID_BINDING, {}):
            assert java(str(bundle), str(tmp_path / "x.f32"), str(tmp_path / "y.f32"),
                        binding=binding) == "outputs: 1000 of 1000\n"
            np.testing.assert_array_equal(np.fromfile(tmp_path / "y.f32", np.float32), BundleRunner(bundle)(x).ravel())
    runner = BundleRunner(small_fp32)

    # ARGB pixels (Bitmap.getPixels) through the C preprocessing: the pattern RunBundle draws.
    from PIL import Image

    y, x_ = np.mgrid[0:150, 0:200]
    pixels = np.stack([x_ % 256, y % 256, (x_ + y) * 7 % 256], -1).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "argb.png")
    java(str(small_fp32), "--argb", "200", "150", str(tmp_path / "argb.f32"))
    expected = runner(runner.load_input(tmp_path / "argb.png")).ravel()
    np.testing.assert_array_equal(np.fromfile(tmp_path / "argb.f32", np.float32), expected)

    assert java(str(small_fp32), "--errors").splitlines() == [
        f"open missing: {small_fp32}/does-not-exist: no such bundle folder",
        "run wrong size: input has 3 floats; input takes 27648",
        "run null: input is null",
        "argb wrong count: argb must hold width * height pixels",
        "run after close: the model is closed",
        "open with 0 threads, affinity 9: affinity 9: give MNV3_AFFINITY_BIG, _LITTLE, _ALL or _UNPINNED",
    ]
    for threads, affinity in ((1, Mnv3Affinity.BIG), (3, Mnv3Affinity.ALL)):  # open(path, threads, affinity)
        java(str(small_int8), "--threads", str(threads), str(affinity), str(tmp_path / "x.f32"), str(tmp_path / "t.f32"))
        np.testing.assert_array_equal(np.fromfile(tmp_path / "t.f32", np.float32),
                                      BundleRunner(small_int8)(np.fromfile(tmp_path / "x.f32", np.float32)
                                                               .reshape(1, 3, 96, 96)).ravel())


def test_paddleocr_classifier_runs_from_c_with_its_declared_dynamic_output(tmp_path_factory, runtime_dir, tmp_path,
                                                                            paddle_cls_path):
    """A real MobileNetV3-family model whose ONNX output says [-1, 2]: the manifest (and the C header)
    carry the library's own [1, 2], and the C runtime, with PaddleOCR's BGR right-padded
    preprocessing, equals the Python runtime on a text-line image."""
    import onnx
    from assets import PADDLE_CLS_SHAPE

    from mnv3compile.analysis import with_static_inputs

    model, _ = with_static_inputs(onnx.load(str(paddle_cls_path)), {"x": PADDLE_CLS_SHAPE})
    assert [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] == [-1, 2]
    bundle = _bundle(tmp_path_factory, "cls", model, quant="int8", preprocess="paddle")
    _, manifest = _manifest(bundle)
    assert manifest["outputs"][0]["shape"] == [1, 2]
    assert "#define MNV3_OUTPUT_COUNT 2 " in (bundle / "mnv3_bundle.h").read_text()
    report = check_bundle(bundle, runtime_dir, _image(tmp_path / "line.ppm", 160, 37))
    assert report.ok and [row.max_abs_diff for row in report.rows] == [0.0, 0.0, 0.0]  # tensor, RTLD_LOCAL, image


def test_c_detections_equal_pythons_on_a_detector_bundle(tmp_path_factory, host_runtime, tmp_path):
    """mnv3_detect (runtime/src/detect.cc) on an SSDLite bundle's outputs from the C runtime: the
    detections mnv3compile/detection.py finds, bit for bit; and on crowded synthetic boxes (many
    overlaps, ties) too. NULL pointers and a one-class model are refused."""
    from mnv3compile.detection import detect

    bundle = _bundle(tmp_path_factory, "ssd", build_model(build_spec("ssdlite-small", 0.5, 160)))
    x = np.random.default_rng(2).standard_normal((1, 3, 160, 160)).astype(np.float32)
    boxes, scores = BundleRunner(bundle).outputs(x)
    rng = np.random.default_rng(5)
    corners = rng.uniform(0, 0.6, (500, 2)).astype(np.float32)
    crowded = np.concatenate([corners, corners + rng.uniform(0.05, 0.4, (500, 2)).astype(np.float32)], axis=1)
    crowded_scores = np.round(rng.uniform(0, 1, (500, 4)), 2).astype(np.float32)  # ties on purpose
    for name, (b, s, score, overlap) in {"bundle": (boxes, scores, 0.25, 0.5),
                                         "crowded": (crowded, crowded_scores, 0.5, 0.375)}.items():
        b, s = b.reshape(-1, 4), s.reshape(len(b.reshape(-1, 4)), -1)
        b.tofile(tmp_path / f"{name}.boxes.f32")
        s.tofile(tmp_path / f"{name}.scores.f32")
        lines = host_runtime.run("mnv3_api_test", "detect", str(tmp_path / f"{name}.boxes.f32"),
                                 str(tmp_path / f"{name}.scores.f32"), str(len(b)), str(s.shape[1]), str(score),
                                 str(overlap), "100").stdout.splitlines()
        assert lines[0] == "detect: MNV3_OK: "
        expected = detect(b, s, score, overlap, max_detections=100)
        assert len(expected) > (3 if name == "bundle" else 20)
        got = [line.split() for line in lines[1:1 + len(expected)]]
        assert [(int(g[0]), *map(np.float32, g[1:])) for g in got] == [
            (d.class_id, np.float32(d.score), *map(np.float32, d.box)) for d in expected]
        assert lines[1 + len(expected):] == [
            "detect NULL boxes: MNV3_ERR_ARGUMENT: boxes, scores, detections and count must not be NULL",
            "detect 1 class: MNV3_ERR_ARGUMENT: a detector has at least 2 classes (class 0 is the background), got 1"]
