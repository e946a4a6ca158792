"""The CLI end to end: exit codes, exact error lines, nothing half-written."""

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from mnv3compile import __version__


def test_version(cli):
    code, out, _ = cli("--version")
    assert code == 0 and out.strip() == f"mnv3compile, version {__version__}"


def test_every_command_has_help_with_examples(cli):
    from mnv3compile.cli import cli as group

    commands = [[name] for name in group.commands if name != "phone"]
    commands += [["phone", name] for name in group.commands["phone"].commands]
    assert len(commands) == 17  # tune included
    for command in commands:
        code, out, _ = cli(*command, "--help")
        assert code == 0 and "Examples:" in out and f"mnv3compile {command[0]}" in out, command


def test_export_then_inspect(cli, tmp_path):
    path = tmp_path / "small.onnx"
    code, out, err = cli("export", "--model", "small", "--width", "0.75", "--resolution", "160",
                         "--classes", "10", "-o", str(path))
    assert code == 0, err
    assert "MobileNetV3-small width 0.75 160x160, 10 classes" in out
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    code, out, _ = cli("inspect", str(path), "--json")
    report = json.loads(out)
    assert report["inputs"] == {"input": [1, 3, 160, 160]}
    assert report["outputs"] == {"logits": [1, 10]}
    assert report["totals"]["ops"]["HardSwish"] > 0
    assert report["layers"][0] == {"name": "features.0.0", "op": "Conv", "output_shape": [1, 16, 80, 80],
                                   "madds": 16 * 80 * 80 * 27, "params": 16 * 27}
    code, out, _ = cli("inspect", str(path))
    assert code == 0 and "features.0.0" in out and "total" in out and "M MAdds" in out


def test_export_save_weights_round_trip(cli, tmp_path):
    first, weights, second = tmp_path / "a.onnx", tmp_path / "w.safetensors", tmp_path / "b.onnx"
    assert cli("export", "--model", "small-minimal", "--resolution", "96", "--seed", "4",
               "--save-weights", str(weights), "-o", str(first))[0] == 0
    assert cli("export", "--model", "small-minimal", "--resolution", "96", "--weights", str(weights),
               "-o", str(second))[0] == 0
    assert first.read_bytes() == second.read_bytes()


@pytest.mark.parametrize("args, message", [
    (["export", "--model", "medium", "-o", "{out}"],
     "error: Invalid value for '--model': 'medium' is not one of 'large', 'small', 'large-minimal', "
     "'small-minimal', 'lraspp-large', 'lraspp-small', 'ssdlite-large', 'ssdlite-small'."),
    (["export", "--width", "0", "-o", "{out}"], "error: width multiplier must be > 0, got 0.0"),
    (["export", "--resolution", "200", "-o", "{out}"],
     "error: resolution 200: each side of large must be a multiple of 32 between 32 and 4096"),
    (["export", "--model", "lraspp-small", "--resolution", "512x0", "-o", "{out}"],
     "error: resolution 512x0: each side of lraspp-small must be a multiple of 16 between 32 and 4096"),
    (["export", "--weights", "{tmp}/missing.npz", "-o", "{out}"],
     "error: cannot read weights file {tmp}/missing.npz: no such file"),
    (["export", "--model", "small", "--weights", "{tmp}/big.npz", "-o", "{out}"],
     "error: weights do not fit small width 1.0: key 'features.0.0.weight' has shape (24, 3, 3, 3) "
     "in the file, the model expects (16, 3, 3, 3)"),
])
def test_bad_export_input_is_one_line_exit_2_and_no_file(cli, tmp_path, args, message):
    from mnv3compile.zoo import build_spec, random_state_dict, save_state_dict

    save_state_dict(random_state_dict(build_spec("small", 1.25)), tmp_path / "big.npz")
    out = tmp_path / "out.onnx"
    code, _, err = cli(*[a.format(out=out, tmp=tmp_path) for a in args])
    assert code == 2
    assert err.strip() == message.format(tmp=tmp_path)
    assert not out.exists()


@pytest.mark.parametrize("content, message", [
    (b"hello, I am text\n", "is not an ONNX model ("),
    (b"", "is not an ONNX model (no graph nodes or no opset)"),
])
def test_inspect_non_onnx_is_one_line_exit_2(cli, tmp_path, content, message):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    code, _, err = cli("inspect", str(path))
    assert code == 2
    assert err.startswith(f"error: {path} {message}") and err.count("\n") == 1


def test_inspect_missing_file(cli, tmp_path):
    code, _, err = cli("inspect", str(tmp_path / "nope.onnx"))
    assert (code, err) == (2, f"error: cannot read {tmp_path / 'nope.onnx'}: no such file\n")


def test_console_script_exit_code():
    """The installed entry point, as a user runs it."""
    result = subprocess.run([sys.executable, "-m", "mnv3compile.cli", "export", "--width", "-1", "-o", "x.onnx"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr == "error: width multiplier must be > 0, got -1.0\n"


def test_zoo_lists_variants_with_reference_counts(cli):
    code, out, _ = cli("zoo", "--model", "large", "--model", "small")
    assert code == 0
    assert "5,483,032" in out and "2,542,856" in out and "216.6 M" in out


def _write_model(path, nodes, inputs, outputs, inits=None):
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs.items()],
                              [numpy_helper.from_array(a, n) for n, a in (inits or {}).items()])
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())


def test_optimize_end_to_end_with_report(cli, tmp_path):
    src, out, report = tmp_path / "s.onnx", tmp_path / "s.opt.onnx", tmp_path / "r.json"
    assert cli("export", "--model", "small", "--width", "0.5", "--resolution", "96", "-o", str(src))[0] == 0
    code, stdout, err = cli("optimize", str(src), "-o", str(out), "--verify", "--report", "--report-json", str(report))
    assert code == 0, err
    assert "non-canonical spellings left: none" in stdout and "verified against onnxruntime" in stdout
    payload = json.loads(report.read_text())
    assert payload["ops_before"]["BatchNormalization"] == 34 and "BatchNormalization" not in payload["ops_after"]
    assert [p["name"] for p in payload["passes"]][:7] == ["upgrade_opset", "cleanup", "fuse_layer_norm", "unwrap_softmax",
                                                          "sink_transposes", "cleanup", "fold_pad_into_conv"]
    fold = next(p for p in payload["passes"] if p["name"] == "fold_batchnorm")
    assert fold["rewritten"] == 34 and fold["errors"][0]["max_rel"] < 1e-4
    assert payload["non_canonical"] == {}


def test_optimize_selected_passes(cli, tmp_path):
    src, out = tmp_path / "s.onnx", tmp_path / "o.onnx"
    cli("export", "--model", "small-minimal", "--resolution", "96", "-o", str(src))
    assert cli("optimize", str(src), "-o", str(out), "--passes", "fold_batchnorm")[0] == 0
    assert {n.op_type for n in onnx.load(str(out)).graph.node} == {"Conv", "Relu", "Add", "GlobalAveragePool",
                                                                   "Flatten", "Gemm"}


def test_optimize_bad_inputs_are_one_line_and_leave_no_file(cli, tmp_path):
    from onnx import helper

    out = tmp_path / "out.onnx"
    src = tmp_path / "s.onnx"
    cli("export", "--model", "small-minimal", "--resolution", "96", "-o", str(src))
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    cycle = tmp_path / "cycle.onnx"
    _write_model(cycle, [helper.make_node("Relu", ["b"], ["a"], name="r1"), helper.make_node("Relu", ["a"], ["b"], name="r2")],
                 {"x": [1, 2]}, {"b": [1, 2]})
    missing = tmp_path / "missing.onnx"
    _write_model(missing, [helper.make_node("Conv", ["x"], ["y"], name="conv")], {"x": [1, 3, 4, 4]}, {"y": None})
    dangling = tmp_path / "dangling.onnx"
    _write_model(dangling, [helper.make_node("Add", ["x", "bias"], ["y"], name="add")], {"x": [1, 3]}, {"y": [1, 3]})
    cases = [
        ([str(truncated)], f"error: {truncated} is not an ONNX model ("),
        ([str(cycle)], f"error: {cycle}: the graph has a cycle through 'r1', 'r2'"),
        ([str(missing)], f"error: {missing}: node 'conv' (Conv) has 1 input(s); Conv needs 2 to 3"),
        ([str(dangling)], f"error: {dangling}: node 'add' (Add) reads 'bias', which nothing produces"),
        ([str(src), "--passes", "fold_everything"], "error: unknown pass 'fold_everything'; passes are: "),
        ([str(src), "--input-shape", "image=1,3,96,96"], "error: model has no input named 'image' (inputs: input)"),
    ]
    for args, prefix in cases:
        code, _, err = cli("optimize", *args, "-o", str(out))
        assert code == 2, args
        assert err.startswith(prefix) and err.count("\n") == 1, err
        assert not out.exists()


def test_optimize_dynamic_model_needs_a_shape_to_verify(cli, tmp_path, paddle_cls_path):
    out = tmp_path / "cls.onnx"
    code, _, err = cli("optimize", str(paddle_cls_path), "-o", str(out), "--verify")
    assert (code, err) == (2, "error: input 'x' has a dynamic shape; give --input-shape x=N,C,H,W to verify\n")
    assert not out.exists()
    code, stdout, _ = cli("optimize", str(paddle_cls_path), "-o", str(out), "--verify", "--input-shape", "1,3,48,192")
    assert code == 0 and "non-canonical spellings left: none" in stdout


def test_optimize_explain_traces_a_pass_where_it_runs_and_writes_nothing(cli, tmp_path):
    src, out = tmp_path / "s.onnx", tmp_path / "o.onnx"
    cli("export", "--model", "small", "--resolution", "96", "-o", str(src))
    code, stdout, err = cli("optimize", str(src), "--explain", "hardsigmoid_to_relu6")
    assert code == 0, err
    lines = stdout.splitlines()
    assert lines[0] == "HardSigmoid: 9 x success"  # the zoo Small's 9 squeeze-excite gates
    assert "Clip(x+beta,0,1): no node starts a match" in lines
    code, _, err = cli("optimize", str(src), "--explain", "cleanup", "-o", str(out))
    assert code == 2 and err.startswith("error: --explain cleanup: that pass walks the graph and has no rewrite "
                                        "rules to trace; passes with rules: canonicalize_hswish, ")
    code, _, err = cli("optimize", str(src), "--passes", "cleanup", "--explain", "fold_batchnorm")
    assert (code, err) == (2, "error: --explain fold_batchnorm: not a pass of this run; it runs: cleanup\n")
    assert cli("optimize", str(src))[2] == "error: give -o OUT.onnx (where to write the optimized model)\n"
    assert not out.exists()


def test_the_quantizer_refuses_a_model_without_the_canonical_form(cli, tmp_path):
    """The library raises a typed error (NotCanonicalError); the CLI adds what to do about it."""
    from mnv3compile.errors import NotCanonicalError
    from mnv3compile.quant import quantize
    from mnv3compile.quant.calibration import load_samples

    src = tmp_path / "s.onnx"
    cli("export", "--model", "small-minimal", "--resolution", "96", "-o", str(src))
    model = onnx.load(str(src))
    with pytest.raises(NotCanonicalError, match=r"^the quantizer needs the canonical form: Conv '.*' is in no "
                                                r"fused unit \(and \d+ more\)$"):
        quantize(model, load_samples("synthetic:2", (1, 3, 96, 96), None), optimized=True)
    from mnv3compile.cli import user_message

    assert user_message(NotCanonicalError("x")) == "x; run 'mnv3compile optimize' first"


def test_unsorted_but_acyclic_graph_is_sorted_on_load(tmp_path):
    from onnx import helper

    from mnv3compile.onnx_io import load_onnx

    path = tmp_path / "unsorted.onnx"
    _write_model(path, [helper.make_node("Neg", ["a"], ["y"], name="second"), helper.make_node("Relu", ["x"], ["a"], name="first")],
                 {"x": [1, 2]}, {"y": [1, 2]})
    assert [n.name for n in load_onnx(path).graph.node] == ["first", "second"]


@pytest.mark.parametrize("args, message", [
    (["--labels", "{tmp}/nonexist.txt"], "--labels {tmp}/nonexist.txt: no such file"),
    (["--labels", "{tmp}/empty.txt"], "--labels {tmp}/empty.txt: the file is empty (one class name per line)"),
    (["--calib", "synthetic:abc"],
     "calibration data synthetic:abc: N of synthetic:N must be a positive whole number (e.g. synthetic:16)"),
    (["--calib", "synthetic:0"],
     "calibration data synthetic:0: N of synthetic:N must be a positive whole number (e.g. synthetic:16)"),
    (["--calib", "{tmp}/no-images"], "calibration data {tmp}/no-images: no such folder"),
    (["--calib", "{tmp}/x.npz"], "calibration data {tmp}/x.npz: no such file"),
    (["--db", "{tmp}"], "{tmp} is not a tuning database (needs database_workload.json and database_tuning_record.json)"),
], ids=["labels-missing", "labels-empty", "synthetic-abc", "synthetic-0", "calib-folder", "calib-npz", "db"])
def test_build_checks_its_inputs_before_any_work(cli, tmp_path, args, message):
    """Each was a traceback at the stage that read it (issue 13); now one line, exit 2, no bundle."""
    (tmp_path / "empty.txt").write_text("\n")
    out = tmp_path / "bundle"
    code, _, err = cli("build", "--model", "small", "--resolution", "96", "-o", str(out),
                       *[a.format(tmp=tmp_path) for a in args])
    assert (code, err) == (2, f"error: {message.format(tmp=tmp_path)}\n")
    assert not out.exists() and not list(tmp_path.glob(".bundle.*"))


def test_quantize_checks_calibration_source_first(cli, tmp_path):
    code, _, err = cli("quantize", str(tmp_path / "m.onnx"), "--calib", "synthetic:-3", "-o", str(tmp_path / "q.onnx"))
    assert (code, err) == (2, "error: calibration data synthetic:-3: N of synthetic:N must be a positive whole "
                              "number (e.g. synthetic:16)\n")


def test_missing_bundle_and_folder_model_say_what_they_are(cli, tmp_path):
    code, _, err = cli("run", str(tmp_path / "nonexist_dir"), str(tmp_path / "x.npy"))
    assert (code, err) == (2, f"error: {tmp_path / 'nonexist_dir'}: no such bundle folder\n")
    code, _, err = cli("inspect", str(tmp_path))
    assert (code, err) == (2, f"error: cannot read {tmp_path}: a folder, not an ONNX file\n")


@pytest.mark.parametrize("preset_name, message", [
    ("host", "{b} was built for this machine ('host'), not for a device: run it without --rpc, or build it "
                 "with --target arm64-linux (the stand-in phone) or a phone preset"),
    ("pixel6", "{b} is an Android library ('pixel6', bionic libc) and the stand-in phone is arm64 Linux "
                   "(glibc): build with --target arm64-linux to run it there, or give --rpc HOST:PORT --key KEY "
                   "of a tracker with a real Android device"),
], ids=["host-bundle", "android-on-stand-in"])
def test_run_over_rpc_refuses_a_bundle_the_device_cannot_load(cli, tmp_path, preset_name, message):
    """Both were RPCError tracebacks from the device (issue 13); checked before connecting."""
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "m.json").write_text(json.dumps({
        "mnv3compile_bundle": 1, "library": "libm.so", "inputs": [{"name": "x", "dtype": "float32", "shape": [1, 3, 8, 8]}],
        "outputs": [], "target": {"preset": preset_name}}))
    code, _, err = cli("run", str(bundle), str(tmp_path / "x.npy"), "--rpc")
    assert (code, err) == (2, f"error: {message.format(b=bundle)}\n")


@pytest.mark.parametrize("preset_name, key, why", [
    ("pixel6", "pixel2", "Pixel 2: Snapdragon 835, Cortex-A73 big cores, no dotprod: it needs +dotprod; "
                         "build with --target pixel2"),
    ("arm64-linux", "pixel6", "Pixel 6: Tensor G1, Cortex-X1, dotprod: it links glibc, the device has the other "
                              "libc; build with --target pixel6"),
], ids=["dotprod-on-pixel2", "glibc-on-android"])
def test_run_over_rpc_refuses_a_bundle_the_keys_devices_cannot_run(cli, tmp_path, preset_name, key, why):
    """A key named after a preset says what the devices are: a Pixel 6 library would die of SIGILL
    on a Pixel 2 (no sdot); refused before connecting."""
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "m.json").write_text(json.dumps({
        "mnv3compile_bundle": 1, "library": "libm.so", "inputs": [{"name": "x", "dtype": "float32", "shape": [1, 3, 8, 8]}],
        "outputs": [], "target": {"preset": preset_name}}))
    code, _, err = cli("run", str(bundle), str(tmp_path / "x.npy"), "--rpc", "127.0.0.1:9", "--key", key)
    assert (code, err) == (2, f"error: {bundle} was built for {preset_name} and the devices under key {key!r} are "
                              f"{why}\n")


@pytest.mark.slow
def test_the_readme_run_example_works_on_the_shipped_image(cli, tmp_path):
    """README's 'run' example: a bundle built with --preprocess, run on examples/sample.png (a scene
    drawn for the repository), prints the top-5 classes."""
    image = Path(__file__).resolve().parents[1] / "examples" / "sample.png"
    bundle = tmp_path / "small-int8-host"
    code, _, err = cli("build", "--model", "small-minimal", "--width", "0.35", "--resolution", "96",
                       "--preprocess", "torchvision", "-o", str(bundle))
    assert code == 0, err
    code, stdout, err = cli("run", str(bundle), str(image))
    assert code == 0, err
    ranks = [line for line in stdout.splitlines() if line[:2] in ("1.", "2.", "3.", "4.", "5.")]
    assert len(ranks) == 5 and all(" class " in line for line in ranks), stdout
