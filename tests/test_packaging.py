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
