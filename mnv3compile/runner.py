"""Run a bundle's library on this machine with the TVM runtime (host bundles)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnv3compile.bundle import read_manifest
from mnv3compile.errors import UserError


class BundleRunner:
    """A bundle's manifest and inputs; runs the library here when it was built for this machine."""

    def __init__(self, bundle: Path, remote: bool = False, threads: int = 0, affinity: str = "big"):
        """``threads`` workers (0: one per big core) placed as ``affinity`` says (mnv3compile/threads.py)
        run the kernels of calls made from any thread."""
        from mnv3compile import threads as pool

        pool.check(threads, affinity)
        self.threads, self.affinity = threads, affinity
        self.manifest = read_manifest(bundle)
        self.folder = Path(self.manifest["_folder"])
        self.library_path = self.folder / self.manifest["library"]
        self.input = self.manifest["inputs"][0]
        self.vm = None
        if remote:
            return
        if self.manifest["target"]["preset"] != "host":
            raise UserError(f"{bundle} was built for {self.manifest['target']['preset']!r}, not this machine; "
                            "run it there (or on the stand-in phone with --rpc)")
        import tvm
        from tvm import relax

        pool.configure(threads, affinity)  # before the library loads: TVM sizes the pool once
        self.device = tvm.cpu()
        self.vm = relax.VirtualMachine(tvm.runtime.load_module(str(self.library_path)), self.device)
        self._main = self.vm["main"]
        # One input tensor for every call, as an app reuses its input buffer: a new tensor per call
        # (allocate, convert, copy) cost several percent of Small's inference.
        self._input = tvm.runtime.empty(self.input_shape, self.input.get("dtype", "float32"), self.device)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.input["shape"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.outputs(x)[0]

    def outputs(self, x: np.ndarray) -> list[np.ndarray]:
        """Every output, in manifest order (a model returns one tensor or a tuple)."""
        from mnv3compile import threads as pool

        pool.configure(self.threads, self.affinity)  # this thread's pool (a no-op once it is so)
        self._input.copyfrom(np.ascontiguousarray(x, dtype=self._input.dtype))
        result = self._main(self._input)
        return [result.numpy()] if hasattr(result, "numpy") else [r.numpy() for r in result]

    def latency_ms(self, repeat: int = 10) -> float:
        """Median wall time of one inference (on the runner's threads)."""
        import time

        x = np.zeros(self.input_shape, np.float32)
        self(x)  # warm up
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            self(x)
            times.append(time.perf_counter() - start)
        return float(np.median(times) * 1000)

    def labels(self) -> list[str] | None:
        if not self.manifest.get("labels"):
            return None
        return (self.folder / self.manifest["labels"]).read_text().splitlines()

    def load_input(self, path: Path) -> np.ndarray:
        from mnv3compile.quant.calibration import load_samples
        from mnv3compile.quant.preprocess import Preprocess

        path = Path(path)
        if path.suffix.lower() in (".npy", ".npz"):
            return load_samples(path, self.input_shape, None)[0].tensor
        spec = self.manifest.get("preprocess")
        if spec is None:
            raise UserError(f"{self.folder} has no preprocessing in its manifest; give a .npy tensor "
                            "(or rebuild with --preprocess)")
        from mnv3compile.quant.preprocess import load_image

        prep = Preprocess(**{**spec, "mean": tuple(spec["mean"]), "std": tuple(spec["std"])})
        _, _, height, width = self.input_shape
        if not path.is_file():
            raise UserError(f"cannot read {path}: no such file")
        return load_image(path, prep, height, width)[None]
