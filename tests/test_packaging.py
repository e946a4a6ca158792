"""What a fresh 'pip install .' pulls in (issue 13: apache-tvm[all] brought xgboost and with it
nvidia-nccl-cu12, 351 MB, into a CPU-only compiler)."""

import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_tvm_comes_with_its_rpc_extra_only():
    """[rpc] (tornado, psutil, cloudpickle) serves the tracker and the stand-in phone; the tuner
    enumerates the templates' knobs, so MetaSchedule's xgboost cost model ([all],
    [meta-schedule]) is not needed."""
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    tvm = [d for d in dependencies if d.startswith("apache-tvm[") or d.startswith("apache-tvm=")]
    assert tvm == ["apache-tvm[rpc]==0.27.0.post1"]
    assert not any(d.startswith("xgboost") for d in dependencies)


def test_the_wheel_carries_the_qemu_helpers_the_shipped_databases_and_the_ndk_symbol_lists(tmp_path):
    """'tune --measure instructions' builds its plugin and runner from sources in the package, arm64
    builds take the databases shipped in it, and Android builds are checked against the NDK's symbol
    lists: all must be in the wheel, not only in a checkout."""
    import subprocess
    import sys
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(PYPROJECT.parent)], check=True, capture_output=True)
    names = set(zipfile.ZipFile(next(tmp_path.glob("mnv3compile-*.whl"))).namelist())
    assert {"mnv3compile/cli/__init__.py", "mnv3compile/cli/__main__.py"} <= names  # the console script's package
    assert {"mnv3compile/schedules/tuning/qemu/count_insns.c", "mnv3compile/schedules/tuning/qemu/kernel_count.cc"} <= names
    shipped = sorted(p.relative_to(PYPROJECT.parent / "schedules").as_posix()
                     for p in (PYPROJECT.parent / "schedules" / "tuning" / "databases").glob("*/*.json.gz"))
    assert shipped and {f"mnv3compile/schedules/{name}" for name in shipped} <= names
    assert {f"mnv3compile/targets/android_symbols/lib{n}.so.txt" for n in ("c", "m", "dl")} <= names
