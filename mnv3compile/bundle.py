"""A build's output folder: library, manifest, models and report, written all at once or not at all."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from mnv3compile import signals

MANIFEST_VERSION = 1


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class BundleWriter:
    """Collects files in a hidden temporary folder beside the destination; ``commit`` swaps it in.

    A build that fails before ``commit`` leaves nothing behind (and an older bundle untouched)."""

    def __init__(self, destination: Path):
        self.destination = Path(destination)
        self.destination.parent.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix=f".{self.destination.name}.", dir=self.destination.parent))

    def path(self, name: str) -> Path:
        return self.folder / name

    def write_json(self, name: str, payload: dict) -> Path:
        path = self.path(name)
        path.write_text(json.dumps(payload, indent=2) + "\n")
        return path

    def checksums(self) -> dict[str, str]:
        return {p.name: sha256(p) for p in sorted(self.folder.iterdir()) if p.is_file()}

    def commit(self) -> Path:
        signals.check()  # a signal swallowed inside TVM's C++ code: publish nothing
        os.chmod(self.folder, 0o755)
        backup = None
        if self.destination.exists():
            backup = self.destination.with_name(f".{self.destination.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(self.destination, backup)
        os.replace(self.folder, self.destination)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
        return self.destination

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "BundleWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.discard()


def read_manifest(bundle: Path) -> dict:
    from mnv3compile.errors import UserError

    bundle = Path(bundle)
    if not bundle.exists():
        raise UserError(f"{bundle}: no such bundle folder")
    manifests = sorted(bundle.glob("*.json")) if bundle.is_dir() else []
    for path in manifests:
        payload = json.loads(path.read_text())
        if payload.get("mnv3compile_bundle") == MANIFEST_VERSION:
            return payload | {"_folder": str(bundle)}
    raise UserError(f"{bundle} is not an mnv3compile bundle (no manifest); make one with 'mnv3compile build'")
