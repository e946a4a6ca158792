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


def test_every_kernel_with_work_enough_runs_in_parallel(small_int8):
    """The convs, dot products and GEMVs are parallel; what stays serial has too little work to pay
    for a fork-join (squeeze-excite's pools and FCs, elementwise rescales); pads keep their own
    loop nest (their work is not counted here)."""
    import onnx
    from tvm import s_tir, tirx

    from mnv3compile.schedules.kernels.dispatch import apply_templates
    from mnv3compile.schedules.kernels.isa import isa_of
    from mnv3compile.schedules.kernels.parallel import MIN_PARALLEL_WORK, kernel_work
    from mnv3compile.targets.presets import preset
    from mnv3compile.tvm.build import fused_module, tvm_target

    target = tvm_target(preset("host"))
    module, *_ = fused_module(onnx.load(small_int8.path / small_int8.manifest["model"]), target)
    scheduled, report = apply_templates(module, isa_of(target))
    templates = {a.kernel: a.variant.family for a in report.applied}
    parallel, serial = 0, {}
    for gv, func in scheduled.functions.items():
        if isinstance(func, tirx.PrimFunc) and gv.name_hint in templates:
            if "T.parallel" in func.script():
                parallel += 1
            else:
                serial[gv.name_hint] = kernel_work(s_tir.Schedule(func))
    assert parallel >= 40
    assert {name: work for name, work in serial.items() if work >= MIN_PARALLEL_WORK} == {}
    assert {templates[name] for name in serial} <= {"pool", "elementwise", "dot4", "conv", "pad"}


@pytest.mark.parametrize("affinity", pool.AFFINITIES)
def test_outputs_are_bit_identical_on_1_to_4_threads(small_int8, affinity):
    x = np.random.default_rng(0).standard_normal((1, 3, 96, 96)).astype(np.float32)
    expected = m3.Bundle.load(small_int8.path, threads=1).run(x)[0]
    for count in (2, 3, 4):
        bundle = m3.Bundle.load(small_int8.path, threads=count, affinity=affinity)
        assert np.array_equal(bundle.run(x)[0], expected)
        assert pool.current_threads() == count


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
