"""The README's Python sessions run as written (doctest), in a fresh folder: the API they show builds,
runs, benches and reads bundles as the README says, with no CLI and no subprocess."""

from __future__ import annotations

import doctest
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_python_sessions_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = doctest.testfile(str(README), module_relative=False, optionflags=doctest.NORMALIZE_WHITESPACE,
                              report=True, verbose=False)
    assert result.attempted >= 20  # the sessions are there and were run
    assert result.failed == 0, f"{result.failed} README examples differ (their output is printed above)"


def test_the_api_docstrings_run_as_written():
    import mnv3compile.api

    result = doctest.testmod(mnv3compile.api, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 8
    assert result.failed == 0
