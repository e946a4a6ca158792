"""The user's cache folder for mnv3compile: the stand-in phone, tuning databases."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$MNV3COMPILE_CACHE, else $XDG_CACHE_HOME/mnv3compile, else ~/.cache/mnv3compile."""
    return Path(os.environ.get("MNV3COMPILE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "mnv3compile"))
