"""The public API is stable: every name in tests/public_api.json (written by
tools/public_api_snapshot.py) still exists with every parameter it had, and ``import mnv3compile``
stays light. Removing or renaming one fails here: that is a new major version, not a test to fix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import mnv3compile

SNAPSHOT = json.loads((Path(__file__).parent / "public_api.json").read_text())
ROOT = Path(__file__).resolve().parents[1]


def _current() -> dict:
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from public_api_snapshot import snapshot
    finally:
        sys.path.pop(0)
    return snapshot()


CURRENT = _current()


@pytest.mark.parametrize("name", sorted(SNAPSHOT))
def test_a_public_name_keeps_what_it_had(name):
    assert name in CURRENT, f"{name} is no longer public"
    before, now = SNAPSHOT[name], CURRENT[name]
    assert now["kind"] == before["kind"]
    if before["kind"] == "function":  # parameters may be added after the old ones, never removed or moved
        assert now["parameters"][: len(before["parameters"])] == before["parameters"]
    if before["kind"] == "class":
        assert set(before["members"]) <= set(now["members"])


def test_everything_public_is_in_the_snapshot():
    """A new public name is added to the snapshot with the release that adds it (tools/public_api_snapshot.py)."""
    assert set(CURRENT) == set(SNAPSHOT)


def test_every_name_in_all_resolves():
    for name in mnv3compile.__all__:
        assert getattr(mnv3compile, name) is not None
    with pytest.raises(AttributeError, match="module 'mnv3compile' has no attribute 'nothing_here'"):
        mnv3compile.nothing_here  # noqa: B018


def test_importing_the_package_loads_neither_tvm_nor_onnxruntime():
    code = ("import sys, mnv3compile, mnv3compile.passes, mnv3compile.schedules; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'tvm', 'onnxruntime', 'torch', 'onnxscript'}))")
    loaded = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert loaded.stdout.strip() == "[]"


def test_the_version_is_semantic():
    import re

    assert re.fullmatch(r"\d+\.\d+\.\d+([.+-].*)?", mnv3compile.__version__)
