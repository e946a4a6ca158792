"""'mnv3compile tune' (schedules/tuning/tune.py) and the database 'build' finds: a few real trials over
the templates' knobs, a resumed run that skips what was measured and what died being measured,
build applying the records by itself and matching onnxruntime, and the refusals."""

import json

import numpy as np
import onnxruntime as ort
import pytest

from mnv3compile.runner import BundleRunner
from mnv3compile.schedules.tuning.tune import PENDING, PROGRESS_FILE

pytestmark = pytest.mark.slow  # the whole module is slow: see the README's test section

SMALL = ("--model", "small-minimal", "--width", "0.35", "--resolution", "96", "--quant", "none")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MNV3COMPILE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "tuning" / "host" / "small-minimal-w0.35-r96-none"


def _progress(folder):
    tasks = json.loads((folder / PROGRESS_FILE).read_text())["tasks"]
    return [c for task in tasks for c in task["candidates"]]


def _records(folder) -> list[str]:
    return (folder / "database_tuning_record.json").read_text().splitlines()


def test_tune_resume_and_build_finds_the_database(cli, cache, tmp_path):
    code, stdout, err = cli("tune", *SMALL, "--trials", "4", "--repeat", "2", "--min-repeat-ms", "5")
    assert code == 0, err
    assert f"database: {cache} (4 candidates measured in this run" in stdout
    assert (cache / "tuning_report.json").is_file() and (cache / "tuning_report.png").is_file()
    candidates = _progress(cache)
    assert sum(c["cost"] is not None for c in candidates) == 4 and len(_records(cache)) == 4
    # every record is a template's trace: fixed knob decisions, vectorized, no MetaSchedule tiling
    assert all('"SampleCategorical"' in line and '"Vectorize"' in line and '"SamplePerfectTile"' not in line
               for line in _records(cache))

    # The process died while measuring the next candidate: a resumed run counts it failed, skips it.
    progress = json.loads((cache / PROGRESS_FILE).read_text())
    died = next(c for task in progress["tasks"] for c in task["candidates"] if c["cost"] is None)
    died["error"] = PENDING
    (cache / PROGRESS_FILE).write_text(json.dumps(progress))
    code, stdout, err = cli("tune", *SMALL, "--trials", "3", "--repeat", "2", "--min-repeat-ms", "5")
    assert (code, err) == (2, f"error: {cache} already holds a tuning run; add --resume to continue it, or "
                              "give another --db\n")
    code, stdout, err = cli("tune", *SMALL, "--trials", "3", "--resume", "--repeat", "2", "--min-repeat-ms", "5")
    assert code == 0, err
    candidates = _progress(cache)
    assert sum(c["cost"] is not None for c in candidates) == 7 and len(_records(cache)) == 7
    assert [c["error"] for c in candidates if c["error"]] == [PENDING]
    # timings on another thread count are not comparable: resume on the count the run measured on
    assert json.loads((cache / "mnv3compile_tuning.json").read_text())["threads"] == 1
    code, _, err = cli("tune", *SMALL, "--trials", "1", "--resume", "--threads", "2")
    assert (code, err) == (2, f"error: {cache} was tuned on --threads 1; resume it with --threads 1, or give "
                              "another --db\n")

    out = tmp_path / "bundle"
    code, stdout, err = cli("build", *SMALL, "-o", str(out))
    assert code == 0, err
    assert f"tuning database: {cache} (from 'mnv3compile tune'; --no-db ignores it)" in stdout
    tuning = json.loads((out / "build_report.json").read_text())["tuning"]
    assert tuning["applied"] == 7 and f"tuning database: tuned schedules for 7 of {tuning['kernels']} kernels" in stdout
    runner = BundleRunner(out)
    x = np.random.default_rng(0).standard_normal((1, 3, 96, 96)).astype(np.float32)
    session = ort.InferenceSession(str(out / runner.manifest["model"]))
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(runner(x), expected, rtol=1e-4, atol=1e-4)

    code, stdout, err = cli("build", *SMALL, "--no-db", "-o", str(tmp_path / "untuned"))
    assert code == 0, err
    assert json.loads((tmp_path / "untuned" / "build_report.json").read_text())["tuning"] is None


def test_int8_records_with_tensor_intrinsics_load_in_a_fresh_build(cli, tmp_path):
    """int8 kernels' records tensorize with our intrinsics (vpdpbusd, vpmaddwd pairs, sdot), which
    a database can only parse once they are registered."""
    folder = tmp_path / "db"
    int8 = [a if a != "none" else "int8" for a in SMALL]
    tasks = 0
    while not any('"Tensorize"' in line for line in (_records(folder) if folder.exists() else [])):
        tasks += 8  # each task's default tile first, in name order: until a tensorized kernel's
        code, _, err = cli("tune", *int8, "--trials", "8", "--db", str(folder), "--repeat", "1",
                           "--min-repeat-ms", "1", *(["--resume"] if tasks > 8 else []))
        assert code == 0 and tasks < 80, err
    code, stdout, err = cli("build", *int8, "--db", str(folder), "-o", str(tmp_path / "b"))
    assert code == 0, err
    assert f"tuning database: tuned schedules for {len(_records(folder))} of " in stdout


def test_constant_free_hash_ignores_float_constants_and_names_only():
    from tvm import te

    from mnv3compile.schedules.tuning.database import constant_free_hash

    def kernel(n, scale, offset, name):
        x = te.placeholder((n, 16), "float32", name=name)
        return te.create_prim_func([x, te.compute((n, 16), lambda i, j: x[i, j] * scale + offset, name="y")])

    assert constant_free_hash(kernel(8, 0.5, 1.0, "a")) == constant_free_hash(kernel(8, 0.037, -116.0, "b"))
    assert constant_free_hash(kernel(8, 0.5, 1.0, "a")) != constant_free_hash(kernel(16, 0.5, 1.0, "a"))
    int8 = te.placeholder((8, 16), "int8", name="x")
    pad_value = [te.create_prim_func([int8, te.compute((8, 18), lambda i, j: te.if_then_else(
        j < 16, int8[i, te.min(j, 15)], te.const(value, "int8")), name="y")]) for value in (-1, 5)]
    assert constant_free_hash(pad_value[0]) == constant_free_hash(pad_value[1])


def test_a_database_applies_to_the_model_calibrated_otherwise(cli, tmp_path):
    """int8 scales and zero points are constants in the kernels: a database tuned on one calibration
    applies to the same model calibrated on other data (matched up to constants, the record's trace
    replayed), and the tuned bundle computes exactly what the untuned one does."""
    folder = tmp_path / "db"
    int8 = [a if a != "none" else "int8" for a in SMALL]
    code, _, err = cli("tune", *int8, "--calib", "synthetic:2", "--trials", "30", "--db", str(folder), "--repeat",
                       "1", "--min-repeat-ms", "1")
    assert code == 0, err
    code, stdout, err = cli("build", *int8, "--calib", "synthetic:3", "--db", str(folder), "-o", str(tmp_path / "b"))
    assert code == 0, err
    tuning = json.loads((tmp_path / "b" / "build_report.json").read_text())["tuning"]
    assert tuning["matched_up_to_constants"] >= 5 and tuning["applied"] >= 20, tuning
    assert (f"tuned schedules for {tuning['applied']} of {tuning['kernels']} kernels ("
            f"{tuning['matched_up_to_constants']} from kernels recorded with other constants") in stdout
    code, _, err = cli("build", *int8, "--calib", "synthetic:3", "--no-db", "-o", str(tmp_path / "untuned"))
    assert code == 0, err
    x = np.random.default_rng(0).standard_normal((1, 3, 96, 96)).astype(np.float32)
    np.testing.assert_array_equal(BundleRunner(tmp_path / "b")(x), BundleRunner(tmp_path / "untuned")(x))


def test_build_refuses_a_database_tuned_for_another_target(cli, cache, tmp_path):
    code, _, err = cli("tune", *SMALL, "--trials", "1", "--repeat", "1", "--min-repeat-ms", "1")
    assert code == 0, err
    identity = json.loads((cache / "mnv3compile_tuning.json").read_text())
    identity["target"] = "pixel6"
    (cache / "mnv3compile_tuning.json").write_text(json.dumps(identity))
    code, _, err = cli("build", *SMALL, "--db", str(cache), "-o", str(tmp_path / "b"))
    assert (code, err) == (2, f"error: the tuning database {cache} was tuned for pixel6, not for host: tune for "
                              "host or leave --db out\n")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("args, message", [
    (("--time-budget", "soon"), "--time-budget soon: expected a duration like 90s, 30m, 2h or 1h30m"),
    (("--target", "pixel6"), "tuning for pixel6 measures on the device: give --tracker HOST:PORT (and --key) of a "
                             "TVM RPC tracker it is registered with ('mnv3compile phone start' runs a stand-in), "
                             "or --measure instructions to count instructions under qemu here"),
    (("--measure", "instructions"), "--measure instructions counts arm64 instructions under qemu: give an arm64 "
                                    "--target (arm64-android, pixel6, rpi5, ...); --target host measures time here"),
    (("--target", "rpi5", "--measure", "instructions", "--tracker", "127.0.0.1:9190"),
     "--measure instructions runs the candidates under qemu here; leave out --tracker (or measure time on the "
     "tracker's devices without --measure)"),
    (("--tracker", "127.0.0.1:9190"), "--tracker measures on a device: give its --target (a phone preset); "
                                      "--target host measures here"),
    (("--target", "arm64-linux", "--tracker", "nowhere", "--key", "k"),
     "--tracker takes HOST:PORT of a TVM RPC tracker, got 'nowhere'"),
    (("--db", "/dev/null"), "--db /dev/null: exists and is not a folder"),
    (("--target", "rpi5", "--measure", "instructions", "--threads", "2"),
     "--measure instructions counts one thread's instructions; leave out --threads (or measure time on a device "
     "with --tracker)"),
])
def test_tune_refuses_bad_options_in_one_line(cli, cache, args, message):
    code, _, err = cli("tune", *SMALL, *args)
    assert (code, err) == (2, f"error: {message}\n")


INTERRUPTED_CHILD = r"""
import os, signal, sys, threading
signum = int(sys.argv.pop(1))
from mnv3compile.schedules.tuning import measure as measuring
original = measuring.LocalMeasurer.__call__
calls = []

def measure(self, scheduled):
    calls.append(1)
    if len(calls) == 3:  # Ctrl-C while the third candidate is measured
        threading.Timer(0.01, os.kill, (os.getpid(), signum)).start()
        import time; time.sleep(1)
    return original(self, scheduled)

measuring.LocalMeasurer.__call__ = measure
from mnv3compile.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("signum", [2, 15], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_keeps_every_measured_record_and_resume_continues(tmp_path, signum):
    import signal
    import subprocess
    import sys

    folder = tmp_path / "db"
    args = ["tune", *SMALL, "--db", str(folder), "--repeat", "1", "--min-repeat-ms", "1"]
    result = subprocess.run([sys.executable, "-c", INTERRUPTED_CHILD, str(signum), *args], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 128 + signum, result.stderr[-3000:]
    assert result.stderr.splitlines()[-1] == f"error: aborted ({signal.Signals(signum).name})"
    assert f"continue with: mnv3compile {' '.join(args)} --resume" in result.stdout
    candidates = _progress(folder)
    assert sum(c["cost"] is not None for c in candidates) == 2 and len(_records(folder)) == 2
    assert not any(c["error"] for c in candidates)  # the interrupted one is measured again, not failed
    result = subprocess.run([sys.executable, "-m", "mnv3compile.cli", *args, "--resume", "--trials", "3"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sum(c["cost"] is not None for c in _progress(folder)) == 5 and len(_records(folder)) == 5


def test_instruction_counts_tune_without_a_phone_into_a_shipped_database(cli, tmp_path, monkeypatch):
    """--measure instructions: candidates compiled for the target's CPU, run under qemu-aarch64 and
    scored by the instructions one call executes (the same count every time); a run measured the
    other way does not resume it. Packed as a shipped database (tools/ship_databases.py), it keeps
    only the records that beat the default tile, and a build for another preset of the same ISA
    takes it by itself; one for another ISA, or with another TVM, does not."""
    import gzip

    from tvm import s_tir

    from mnv3compile.pipeline import BuildRequest, deployable_model
    from mnv3compile.schedules.tuning import shipped
    from mnv3compile.schedules.tuning.instructions import InstructionMeasurer
    from mnv3compile.schedules.kernels.isa import isa_of
    from mnv3compile.schedules.kernels.dispatch import schedule_kernel
    from mnv3compile.schedules.tuning.tune import fixed_knobs, tasks_of
    from mnv3compile.targets.presets import preset
    from mnv3compile.tvm.build import fused_module, tvm_target
    from mnv3compile.zoo import build_model, build_spec

    monkeypatch.setenv("MNV3COMPILE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(shipped, "SHIPPED", tmp_path / "shipped")
    folder, trials = tmp_path / "db", 60  # every task's default tile, then some other tiles
    tune = ["tune", *SMALL, "--target", "arm64-android", "--db", str(folder)]
    code, stdout, err = cli(*tune, "--measure", "instructions", "--trials", str(trials))
    assert code == 0, err
    report = json.loads((folder / "tuning_report.json").read_text())
    measured = [row for row in report["tasks"] if row["measured"]]
    assert report["unit"] == "instructions" and len(_records(folder)) == trials
    assert all(row["default"] == int(row["default"]) > 100 for row in measured)  # whole instructions per call
    assert "default k instr." in stdout
    identity = json.loads((folder / "mnv3compile_tuning.json").read_text())
    assert identity["measure"] == "instructions"

    # deterministic: the first task's default tile counted again gives the recorded count
    target = tvm_target(preset("arm64-android"))
    request = BuildRequest(target=preset("arm64-android"), output=tmp_path / "unused", name="small-minimal",
                           model=build_model(build_spec("small-minimal", 0.35, 96)), quant="none")
    module, *_ = fused_module(deployable_model(request, [])[1], target)
    tasks, funcs = tasks_of(module, isa_of(target))
    first = next(task for task in tasks if task.name == measured[0]["task"])
    sch = s_tir.Schedule(funcs[first.name])
    schedule_kernel(sch, isa_of(target), fixed_knobs(sch, first.candidates[0].knobs))
    assert InstructionMeasurer(target, tmp_path / "work")(sch.mod["main"]) == measured[0]["default"]

    (folder / "mnv3compile_tuning.json").write_text(json.dumps({**identity, "measure": "time"}))
    code, _, err = cli(*tune, "--measure", "instructions", "--resume", "--trials", "1")
    assert (code, err) == (2, f"error: {folder} was tuned with --measure time; resume it with --measure time, or "
                              "give another --db\n")
    (folder / "mnv3compile_tuning.json").write_text(json.dumps(identity))

    key = "small-minimal-w0.35-r96-none"
    packed = shipped.pack(folder, "neon-dotprod", key)
    kept = len(json.loads(gzip.decompress(packed.read_bytes()))["records"])
    better = sum(1 for row in report["tasks"] if row["best"] is not None and row["best"] < row["default"])
    assert kept == better >= 1
    code, stdout, err = cli("build", *SMALL, "--target", "pixel4", "-o", str(tmp_path / "b"))
    assert code == 0, err
    assert (f"tuning database: shipped for neon-dotprod {key} (tuned on arm64-android by arm64 instruction counts "
            "under qemu; 'mnv3compile tune' on your device replaces it, --no-db ignores it)") in stdout
    tuning = json.loads((tmp_path / "b" / "build_report.json").read_text())["tuning"]
    assert tuning["applied"] >= kept, tuning
    code, stdout, err = cli("build", *SMALL, "--target", "pixel2", "-o", str(tmp_path / "b2"))  # neon, no dotprod
    assert code == 0 and "tuning database" not in stdout, err
    content = json.loads(gzip.decompress(packed.read_bytes()))
    content["identity"]["tvm"] = "0.26.0"
    packed.write_bytes(gzip.compress(json.dumps(content).encode()))
    assert shipped.shipped_database("neon-dotprod", key) is None


def test_every_shipped_database_loads_with_this_tvm(tmp_path, monkeypatch):
    """What tools/ship_databases.py packed: tuned with the pinned TVM, records that parse, one best
    record per workload."""
    import tvm_ffi

    from mnv3compile.schedules.tuning.database import open_database
    from mnv3compile.schedules.tuning.shipped import SHIPPED, shipped_database

    monkeypatch.setenv("MNV3COMPILE_CACHE", str(tmp_path))
    packed = sorted(SHIPPED.glob("*/*.json.gz"))
    assert packed, "no shipped databases"
    for path in packed:
        found = shipped_database(path.parent.name, path.name.removesuffix(".json.gz"))
        assert found is not None, f"{path} was tuned with another TVM"
        records = open_database(found[0]).get_all_tuning_records()
        assert len({tvm_ffi.structural_hash(r.workload.mod) for r in records}) == len(records) >= 1, path


def test_tune_on_the_stand_in_phone_then_build_and_run_there(stand_in_phone, cli, tmp_path):
    """RPC: candidates cross-compiled here, timed on the emulated arm64 device through its tracker;
    build applies the records, and the bundle run on the device matches onnxruntime."""
    from mnv3compile import phone

    folder = tmp_path / "db"
    code, stdout, err = cli("tune", *SMALL, "--target", "arm64-linux", "--tracker", stand_in_phone.tracker(),
                            "--key", stand_in_phone.key, "--trials", "3", "--db", str(folder), "--repeat", "1",
                            "--min-repeat-ms", "1", "--cooldown", "0")
    assert code == 0, err
    # 1 thread on the big cores, as an app runs; the emulated device has no big.LITTLE to tell
    assert "measuring on 1 thread of its big cores" in stdout, stdout
    assert sum(c["cost"] is not None for c in _progress(folder)) == 3 and len(_records(folder)) == 3
    assert json.loads((folder / "mnv3compile_tuning.json").read_text())["target"] == "arm64-linux"
    out = tmp_path / "bundle"
    code, stdout, err = cli("build", *SMALL, "--target", "arm64-linux", "--db", str(folder), "-o", str(out))
    assert code == 0, err
    assert "tuning database: tuned schedules for 3 of " in stdout
    manifest = json.loads((out / "mobilenetv3_small_minimal.json").read_text())
    x = np.random.default_rng(0).standard_normal((1, 3, 96, 96)).astype(np.float32)
    (y,) = phone.run_remote(out / manifest["library"], [x])
    session = ort.InferenceSession(str(out / manifest["model"]))
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


def test_two_devices_under_one_key_measure_in_parallel(stand_in_phone, cli, tmp_path):
    """A second emulated device behind the same tracker: tune finds both, each takes candidates as
    it gets free, and every candidate is recorded once."""
    import re

    from mnv3compile import phone

    state = phone.start(devices=2)
    assert state.tracker() == stand_in_phone.tracker() and len(state.server_pids) == 2
    folder = tmp_path / "db"
    code, stdout, err = cli("tune", *SMALL, "--target", "arm64-linux", "--tracker", state.tracker(), "--key",
                            state.key, "--trials", "6", "--db", str(folder), "--repeat", "1", "--min-repeat-ms", "1",
                            "--cooldown", "0")
    assert code == 0, err
    assert f"2 devices with key {state.key!r} at {state.tracker()}" in stdout, stdout
    counts = re.search(r"timed per device: device 1 (\d+), device 2 (\d+)", stdout)
    assert counts and int(counts[1]) >= 1 and int(counts[2]) >= 1, stdout
    assert int(counts[1]) + int(counts[2]) == 6 == _measured(folder) == len(_records(folder))


def _measured(folder) -> int:
    try:
        return sum(c["cost"] is not None for c in _progress(folder))
    except (FileNotFoundError, json.JSONDecodeError):  # not written yet, or being replaced
        return 0


def test_a_phone_that_dies_mid_tune_keeps_its_records_and_resume_completes(stand_in_phone, tmp_path):
    """The devices' RPC servers are killed (SIGKILL, as a phone that crashes or drops off the network)
    after two candidates: the run waits --device-timeout for it, ends in one line, and the database
    holds exactly the candidates measured before; a new device behind the same tracker, then
    --resume, completes the budget."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from mnv3compile import phone

    folder, budget = tmp_path / "db", 6
    args = ["tune", *SMALL, "--target", "arm64-linux", "--tracker", stand_in_phone.tracker(), "--key",
            stand_in_phone.key, "--db", str(folder), "--repeat", "1", "--min-repeat-ms", "1", "--cooldown", "0",
            "--device-timeout", "5"]
    child = subprocess.Popen([sys.executable, "-m", "mnv3compile.cli", *args, "--trials", str(budget)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while _measured(folder) < 2:
        assert child.poll() is None and time.monotonic() < deadline, child.communicate()
        time.sleep(0.2)
    for server in phone.read_state().server_pids:  # every device under the key
        os.killpg(server, signal.SIGKILL)
    stdout, stderr = child.communicate(timeout=600)
    assert child.returncode == 2, stderr[-3000:]
    last = stderr.splitlines()[-1]
    assert last.startswith(f"error: no device with key '{stand_in_phone.key}' at the tracker "
                           f"{stand_in_phone.tracker()} for 5 s") and last.endswith(
        f"every candidate measured before is in {folder}"), last
    assert "lost device 1 (key 'mnv3-phone'); requesting a device again" in stdout
    before = _measured(folder)
    assert 2 <= before < budget and len(_records(folder)) == before
    assert phone.start().tracker() == stand_in_phone.tracker()  # a new device, the same tracker
    result = subprocess.run([sys.executable, "-m", "mnv3compile.cli", *args, "--resume", "--trials",
                             str(budget - before)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _measured(folder) == budget and len(_records(folder)) == budget


def test_each_candidate_waits_the_cooldown_first(monkeypatch, tmp_path):
    """--cooldown: a pause before every candidate (a phone that heats up throttles and times the
    later candidates slower)."""
    from tvm import te

    from mnv3compile.schedules.tuning import measure as measuring
    from mnv3compile.targets.presets import preset
    from mnv3compile.tvm.build import tvm_target

    pauses = []
    monkeypatch.setattr(measuring.time, "sleep", pauses.append)
    x = te.placeholder((64,), "float32", "x")
    func = te.create_prim_func([x, te.compute((64,), lambda i: x[i] * 2, name="twice")])
    measurer = measuring.LocalMeasurer(tvm_target(preset("host")), tmp_path, measuring.Measurement(1, 1, 0.25))
    assert measurer(func.with_attr("global_symbol", "main")) > 0
    assert measurer(func.with_attr("global_symbol", "main")) > 0
    assert pauses == [0.25, 0.25]


def test_candidates_are_timed_on_the_threads_tuned_for(tmp_path):
    """tune --threads N: each candidate runs on N workers of the measuring thread's pool (a parallel
    kernel's loops then split as they will in the app)."""
    import threading

    from tvm import te

    from mnv3compile import threads as pool
    from mnv3compile.schedules.tuning import measure as measuring
    from mnv3compile.targets.presets import preset
    from mnv3compile.tvm.build import tvm_target

    x = te.placeholder((64,), "float32", "x")
    func = te.create_prim_func([x, te.compute((64,), lambda i: x[i] * 2, name="twice")]).with_attr("global_symbol",
                                                                                                  "main")
    seen = {}

    def measure(threads):  # a thread of its own: its pool starts with room for the count
        measurer = measuring.LocalMeasurer(tvm_target(preset("host")), tmp_path / str(threads),
                                           measuring.Measurement(1, 1), threads)
        (tmp_path / str(threads)).mkdir()
        seen[threads] = (measurer(func) > 0, pool.current_threads())

    for threads in (1, 2):
        worker = threading.Thread(target=measure, args=(threads,))
        worker.start()
        worker.join()
    assert seen == {1: (True, 1), 2: (True, 2)}
