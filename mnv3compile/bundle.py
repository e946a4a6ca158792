"""A build's output folder: library, manifest, models and report, written all at once or not at all."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
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


class Bundle:
    """A bundle on disk: what ``build`` returns and ``Bundle.load`` reads back.

    ``manifest`` (inputs, outputs, preprocessing, labels, quantization, target, versions, sha256
    of every file), ``report`` (build_report.json: kernels, ISA, templates, tuning), ``library``;
    ``run`` it here (a host bundle) or on a device over TVM RPC, ``bench`` it, ``profile`` it.
    """

    path: Path  # the bundle's folder
    threads: int  # workers run() computes on (0: one per big core)
    affinity: str  # where they run: big, little, all, unpinned
    manifest: dict  # its manifest (the <name>.json)
    notes: list[str]  # what the build that made it could not do as asked (empty when loaded)

    def __init__(self, path: str | os.PathLike, notes: list[str] | None = None, timings: dict | None = None,
                 threads: int = 0, affinity: str = "big"):
        from mnv3compile import threads as pool

        pool.check(threads, affinity)
        self.threads, self.affinity = threads, affinity  # what run() computes on (mnv3compile/threads.py)
        self.manifest = read_manifest(Path(path))
        self.path = Path(self.manifest.pop("_folder"))
        self.notes = list(notes or [])  # what the build that made it could not do as asked
        self._timings = timings
        self._runner = None

    @classmethod
    def load(cls, path: str | os.PathLike, threads: int = 0, affinity: str = "big") -> "Bundle":
        """The bundle in folder ``path`` (made by ``build``); refuses a folder that is not one.
        ``run`` computes on ``threads`` workers (0: one per big core) placed as ``affinity`` says:
        big (default), little, all or unpinned (mnv3compile/threads.py)."""
        return cls(path, threads=threads, affinity=affinity)

    def __repr__(self) -> str:
        return f"Bundle({str(self.path)!r}, target={self.target!r})"

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def target(self) -> str:
        """The target preset it was built for ('host', 'pixel6', ...)."""
        return self.manifest["target"]["preset"]

    @property
    def library(self) -> Path:
        return self.path / self.manifest["library"]

    @property
    def inputs(self) -> list[dict]:
        """Each input's name, dtype and shape."""
        return self.manifest["inputs"]

    @property
    def outputs(self) -> list[dict]:
        return self.manifest["outputs"]

    @property
    def report(self):
        """What the build made and how (``pipeline.BuildReport``), from build_report.json."""
        from mnv3compile.pipeline import BuildReport

        return BuildReport.from_json(json.loads((self.path / self.manifest.get("report", "build_report.json"))
                                                .read_text()))

    @property
    def timings(self) -> dict[str, float]:
        """Seconds per build stage."""
        return dict(self._timings if self._timings is not None else self.report.stages_seconds)

    @property
    def labels(self) -> list[str] | None:
        return self._run_here(check=False).labels()

    def _run_here(self, check: bool = True):
        """The runner (mnv3compile/runner.py), loaded once; ``check``: the library too, which needs a
        host bundle."""
        from mnv3compile.runner import BundleRunner

        if self._runner is None or (check and self._runner.vm is None):
            self._runner = BundleRunner(self.path, remote=not check, threads=self.threads, affinity=self.affinity)
        return self._runner

    def load_input(self, path: str | os.PathLike):
        """An image (preprocessed as the manifest says) or a .npy/.npz tensor, as the input."""
        return self._run_here(check=False).load_input(Path(path))

    def run(self, x, *, tracker: str | None = None, key: str | None = None,
            on_threads: Callable[[int], None] = lambda count: None) -> list:
        """Every output (numpy arrays, in manifest order) for input ``x``: an array of the input's
        shape, or an image/.npy path (``load_input``). Here for a host bundle; with ``tracker``
        ("HOST:PORT", or "phone" for the stand-in phone) on a device over TVM RPC, its thread pool
        configured as this bundle was loaded with (``on_threads`` is told how many workers it has)."""
        import numpy as np

        if tracker is None:
            runner = self._run_here()  # refuses a bundle built for another machine, before reading x
        else:
            from mnv3compile.targets.compatibility import require_runs_on_device

            require_runs_on_device(self.path, self.target, stand_in=tracker == "phone", key=key)
        if isinstance(x, (str, os.PathLike)):
            x = self.load_input(x)
        x = np.asarray(x, dtype=self.inputs[0].get("dtype", "float32"))
        expected = tuple(self.inputs[0]["shape"])
        if x.shape != expected:
            from mnv3compile.errors import UserError

            raise UserError(f"input of shape {x.shape}; {self.path} takes {expected}")
        if tracker is None:
            return runner.outputs(x)
        from mnv3compile.phone import run_remote

        (outputs,) = run_remote(self.library, [x], None if tracker == "phone" else tracker, key,
                                outputs_per_call=len(self.outputs), threads=self.threads, affinity=self.affinity,
                                on_threads=on_threads)
        return outputs if isinstance(outputs, list) else [outputs]

    def latency_ms(self, repeat: int = 10) -> float:
        """Median wall time of one inference here (a host bundle, on the bundle's threads)."""
        return self._run_here().latency_ms(repeat)

    def bench(self, *others: "Bundle | str | os.PathLike", vs_onnxruntime: bool = False, threads: int = 1,
              runs: int = 100, max_seconds: float = 120, progress=None, affinity: str = "big"):
        """``mnv3compile.bench`` (the function) of this bundle (and ``others``): interleaved, each in a
        process of its own."""
        from mnv3compile.api import bench

        return bench([self, *others], vs_onnxruntime=vs_onnxruntime, threads=threads, runs=runs,
                     max_seconds=max_seconds, progress=progress, affinity=affinity)

    def profile(self, runs: int = 20):
        """Time per kernel here, on the bundle's threads (``profile.Profile``: kernels slowest
        first, with their templates)."""
        from mnv3compile.profile import profile_runner

        return profile_runner(self._run_here(), runs)

    def deploy_test(self, image: str | os.PathLike | None = None, build_dir: str | os.PathLike | None = None,
                    threads: int | None = None, affinity: str | None = None):
        """What an app would see: for an Android bundle, the library checked as Android's loader
        checks it (``targets.android_loader.LoaderCheck``: ``problems`` empty when it loads);
        otherwise the C runtime built with CMake for the bundle's target, run on it (here, or
        under qemu-aarch64 for arm64-linux) and compared with this runtime's outputs, on random
        inputs and ``image`` (``deploy_check.DeployReport``: ``ok``, ``rows``), the C runtime on
        ``threads`` workers placed as ``affinity`` says [the bundle's]."""
        from mnv3compile import deploy_check, threads as pool
        from mnv3compile.errors import UserError
        from mnv3compile.targets.arm64_sysroot import home

        if image is not None and not Path(image).is_file():
            raise UserError(f"{image}: no such image")
        android = deploy_check.android_loader_check(self.path)
        if android is not None:
            return android
        folder = Path(build_dir) if build_dir is not None else home().parent / "runtime-build"
        threads, affinity = self.threads if threads is None else threads, affinity or self.affinity
        pool.check(threads, affinity)
        return deploy_check.check_bundle(self.path, folder, Path(image) if image is not None else None,
                                         threads=threads, affinity=affinity)
