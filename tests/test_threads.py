"""Multi-threaded kernels: every template's outer loops run on TVM's thread pool, the outputs do
not move with the thread count, and the count and affinity asked for reach the pool."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import mnv3compile as m3
from mnv3compile import threads as pool


@pytest.fixture(scope="module")
def small_int8(tmp_path_factory):
    return m3.build("small", resolution=96, quant="int8", output=tmp_path_factory.mktemp("t") / "small-int8",
                    database=None)


def test_the_library_launches_the_thread_pool(small_int8):
    """A library with a parallel loop holds the pointer TVM's runtime fills with its launcher."""
    from elftools.elf.elffile import ELFFile

    with open(small_int8.library, "rb") as handle:
        symbols = {s.name for s in ELFFile(handle).get_section_by_name(".dynsym").iter_symbols()}
    assert "__TVMBackendParallelLaunch" in symbols


def test_kernels_stay_serial_only_when_too_small_for_a_fork_join(small_int8, monkeypatch):
    """The convs, dot products and GEMVs with work enough are parallel; a kernel stays serial
    because it is too small to pay for a fork-join (MIN_PARALLEL_STEPS): with no threshold, all
    but the single-iteration ones (squeeze-excite's pools) go parallel too."""
    import onnx
    from tvm import tirx

    from mnv3compile.schedules.kernels import parallel as threads_of_kernels
    from mnv3compile.schedules.kernels.dispatch import apply_templates
    from mnv3compile.schedules.kernels.isa import isa_of
    from mnv3compile.targets.presets import preset
    from mnv3compile.tvm.build import fused_module, tvm_target

    target = tvm_target(preset("host"))
    module, *_ = fused_module(onnx.load(small_int8.path / small_int8.manifest["model"]), target)

    def parallel_kernels() -> tuple[set[str], set[str]]:
        scheduled, report = apply_templates(module, isa_of(target))
        templated = {a.kernel for a in report.applied}
        return templated, {gv.name_hint for gv, func in scheduled.functions.items()
                           if isinstance(func, tirx.PrimFunc) and "T.parallel" in func.script()}

    templated, parallel = parallel_kernels()
    monkeypatch.setattr(threads_of_kernels, "MIN_PARALLEL_STEPS", 0)
    _, without_threshold = parallel_kernels()
    assert parallel < without_threshold
    assert len(parallel) >= 4  # at 96x96 most kernels take a few microseconds: serial is faster
    assert len(without_threshold) >= 0.75 * len(templated)


@pytest.mark.parametrize("affinity", pool.AFFINITIES)
def test_outputs_are_bit_identical_on_1_to_4_threads(small_int8, affinity):
    x = np.random.default_rng(0).standard_normal((1, 3, 96, 96)).astype(np.float32)
    expected = m3.Bundle.load(small_int8.path, threads=1).run(x)[0]
    seen = {}

    def run(count):  # a thread's pool is sized as it starts: each count in a thread of its own
        bundle = m3.Bundle.load(small_int8.path, threads=count, affinity=affinity)
        seen[count] = (np.array_equal(bundle.run(x)[0], expected), pool.current_threads())

    for count in (2, 3, 4):
        worker = threading.Thread(target=run, args=(count,))
        worker.start()
        worker.join()
    assert seen == {count: (True, count) for count in (2, 3, 4)}


def test_a_thread_pool_cannot_grow_after_it_started(small_int8):
    """TVM sizes a thread's pool once (room for every core, or the count asked first): more
    threads than that later is one clear error, not a silent smaller pool."""
    import os

    cores = os.cpu_count() or 1
    message = {}

    def run():
        x = np.zeros((1, 3, 96, 96), np.float32)
        m3.Bundle.load(small_int8.path, threads=1).run(x)
        try:
            m3.Bundle.load(small_int8.path, threads=cores + 1).run(x)
        except m3.UserError as error:
            message["text"] = str(error)

    if os.environ.get("TVM_NUM_THREADS") not in (None, os.environ.get(pool.OUR_ROOM)):
        pytest.skip("TVM_NUM_THREADS is set outside: it is the pool's size")
    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    assert message.get("text") == (f"this thread's TVM pool has {cores} workers, fewer than the {cores + 1} "
                                   "threads asked (a thread's pool is sized as it starts: ask for threads before "
                                   "its first inference, or set TVM_NUM_THREADS)")


def test_two_models_on_different_thread_counts_run_at_once(small_int8, tmp_path):
    other = m3.build("small", resolution=96, quant="none", output=tmp_path / "small-fp32", database=None)
    x = np.random.default_rng(1).standard_normal((1, 3, 96, 96)).astype(np.float32)
    expected = {1: m3.Bundle.load(small_int8.path, threads=1).run(x)[0],
                3: m3.Bundle.load(other.path, threads=1).run(x)[0]}
    results, seen = {}, {}

    def work(path, count):
        bundle = m3.Bundle.load(path, threads=count)
        outputs = [bundle.run(x)[0] for _ in range(10)]
        seen[count] = pool.current_threads()
        results[count] = all(np.array_equal(o, expected[count]) for o in outputs)

    workers = [threading.Thread(target=work, args=(small_int8.path, 1)),
               threading.Thread(target=work, args=(other.path, 3))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert results == {1: True, 3: True} and seen == {1: 1, 3: 3}


@pytest.mark.parametrize(("threads", "affinity", "message"), [
    (-1, "big", "threads -1: give a whole number from 1 to 256 (0: one per core of the chosen affinity)"),
    (257, "big", "threads 257: give a whole number from 1 to 256 (0: one per core of the chosen affinity)"),
    (2, "fast", "affinity 'fast': choose one of big, little, all, unpinned"),
])
def test_an_invalid_count_or_affinity_is_one_clear_error(small_int8, threads, affinity, message):
    with pytest.raises(m3.UserError) as caught:
        m3.Bundle.load(small_int8.path, threads=threads, affinity=affinity)
    assert str(caught.value) == message


def test_the_cli_takes_threads_and_affinity(small_int8, cli, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 96, 96), np.float32))
    one = cli("run", str(small_int8.path), str(tmp_path / "x.npy"), "--threads", "1")
    two = cli("run", str(small_int8.path), str(tmp_path / "x.npy"), "--threads", "2", "--affinity", "all")
    assert one[0] == two[0] == 0 and one[1] == two[1]
    code, _, err = cli("run", str(small_int8.path), str(tmp_path / "x.npy"), "--affinity", "fast")
    assert code == 2 and "'fast' is not one of 'big', 'little', 'all', 'unpinned'" in err


def test_tune_can_split_channels_instead_of_rows_and_the_outputs_do_not_move(small_int8):
    """The split is a knob (``split``): tune measures a parallel conv's rows-first and its
    channel-blocks-first schedules; both compute every output with the same instructions."""
    import onnx
    import tvm
    from tvm import s_tir

    from mnv3compile.schedules.kernels.dispatch import schedule_kernel
    from mnv3compile.schedules.kernels.isa import isa_of
    from mnv3compile.schedules.kernels.knobs import SPLIT_CHANNELS, SPLIT_ROWS
    from mnv3compile.schedules.tuning.measure import random_arrays
    from mnv3compile.schedules.tuning.tune import fixed_knobs, knob_space
    from mnv3compile.targets.presets import preset
    from mnv3compile.tvm.build import fused_module, tvm_target

    target = tvm_target(preset("host"))
    module, *_ = fused_module(onnx.load(small_int8.path / small_int8.manifest["model"]), target)
    isa = isa_of(target)
    name = next(gv.name_hint for gv, func in module.functions.items()  # a parallel kernel the knob applies to
                if gv.name_hint.startswith("fused_dot4") and
                {s.get("split") for s in knob_space(func, isa)} == {SPLIT_ROWS, SPLIT_CHANNELS})
    arrays = random_arrays(module[name])
    outputs, scripts = [], []
    for split in (SPLIT_ROWS, SPLIT_CHANNELS):
        sch = s_tir.Schedule(module[name])
        schedule_kernel(sch, isa, fixed_knobs(sch, {"split": split}))
        scripts.append(sch.mod["main"].script())
        library = tvm.compile(tvm.IRModule({"main": sch.mod["main"].with_attr("global_symbol", "main")}), target)
        tensors = [tvm.runtime.tensor(a) for a in arrays]
        library["main"](*tensors)
        outputs.append(tensors[-1].numpy())
    assert scripts[0] != scripts[1] and all("T.parallel" in script for script in scripts)
    assert np.array_equal(outputs[0], outputs[1])
