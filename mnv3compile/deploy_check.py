"""``mnv3compile deploy-test``: the C runtime (runtime/, CMakeLists.txt) built with CMake for a
bundle's target, run on the bundle, and compared with the Python runtime on the same input.

Host bundles run natively; arm64-linux bundles run under qemu-aarch64 with the stand-in phone's
sysroot (its aarch64 TVM wheels are both what the C runtime links and the Python reference).
Every program runs under Android's loading rules, as far as glibc can apply them: immediate binding
(LD_BIND_NOW=1; bionic never binds lazily), and once with the runtime itself loaded RTLD_LOCAL
(runtime/tests/load_local.c; System.loadLibrary does that), where a model library finds only what
its own DT_NEEDED entries provide.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnv3compile.bundle import read_manifest
from mnv3compile.errors import UserError
from mnv3compile.targets.android_loader import LoaderCheck, check_android_library
from mnv3compile.targets.presets import preset

ARCH_OF_PRESET = {"host": "host", "arm64-linux": "arm64"}  # bundles whose programs run on this machine
TOLERANCE = 1e-5
# glibc's switch for what bionic always does: bind every symbol of a library when it is opened.
ANDROID_BINDING = {"LD_BIND_NOW": "1"}

# The Python runtime inside the emulated arm64 Python: all outputs, flattened, as raw float32.
_ARM64_REFERENCE = """
import sys
import numpy as np
import tvm
from tvm.runtime.vm import VirtualMachine
library, input_path, shape, output_path = sys.argv[1:5]
vm = VirtualMachine(tvm.runtime.load_module(library), tvm.cpu())
x = np.fromfile(input_path, np.float32).reshape([int(d) for d in shape.split(",")])
result = vm["main"](tvm.runtime.tensor(x))
outputs = [result] if hasattr(result, "numpy") else list(result)
np.concatenate([o.numpy().ravel() for o in outputs]).astype(np.float32).tofile(output_path)
"""


def source_root() -> Path:
    """The checkout holding CMakeLists.txt and runtime/ (deploy-test builds from sources)."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "CMakeLists.txt").is_file() or not (root / "runtime" / "include" / "mnv3.h").is_file():
        raise UserError(f"the C runtime's sources are not next to this mnv3compile ({root}); deploy-test needs "
                        "a source checkout installed with 'pip install -e .'")
    return root


def arch_of(manifest: dict) -> str:
    preset = manifest["target"]["preset"]
    if preset in ARCH_OF_PRESET:
        return ARCH_OF_PRESET[preset]
    raise UserError(f"a bundle for {preset!r} runs only on its device; deploy-test runs host and arm64-linux "
                    "bundles (build the runtime for Android with the NDK: README, 'Deploy')")


def android_loader_check(bundle: Path) -> LoaderCheck | None:
    """For a bundle built for Android, whether its library would load there (no device needed:
    targets/android_loader.py); None for bundles of other targets."""
    manifest = read_manifest(bundle)
    if preset(manifest["target"]["preset"]).toolchain != "android":
        return None
    return check_android_library(bundle / manifest["library"])


@dataclass
class RuntimeBuild:
    """A CMake build of the runtime, its example and its API test, and how to run its programs."""

    folder: Path
    arch: str
    sysroot: Path | None = None

    def command(self, program: str, *args: str) -> list[str]:
        path = str(self.folder / program)
        return ["qemu-aarch64", path, *args] if self.arch == "arm64" else [path, *args]

    @property
    def runtime_library(self) -> Path:
        return self.folder / "libmnv3.so"

    def environment(self) -> dict[str, str]:
        if self.arch != "arm64":
            return {**os.environ, **ANDROID_BINDING}
        site = self.sysroot / "opt" / "site"
        return {"PATH": "/usr/bin:/bin", "QEMU_LD_PREFIX": str(self.sysroot), **ANDROID_BINDING,
                "LD_LIBRARY_PATH": f"{site / 'tvm' / 'lib'}:{site / 'tvm_ffi' / 'lib'}"}

    def run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(self.command(program, *args), capture_output=True, text=True, env=self.environment())
        if check and result.returncode != 0:
            raise UserError(f"{program} failed: {(result.stderr or result.stdout).strip()}")
        return result


def _tool(name: str, install: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise UserError(f"deploy-test needs {name}: {install}")
    return path


def build_runtime(arch: str, folder: Path, sanitize: bool = False) -> RuntimeBuild:
    """Configure and build the runtime into ``folder`` (incremental: a second call is quick)."""
    cmake = _tool("cmake", "apt-get install cmake (or pip install cmake)")
    root = source_root()
    args = [cmake, "-S", str(root), "-B", str(folder), "-DMNV3_EXAMPLES=ON",
            f"-DCMAKE_BUILD_TYPE={'Debug' if sanitize else 'Release'}", f"-DMNV3_SANITIZE={'ON' if sanitize else 'OFF'}"]
    if shutil.which("ninja") and not (folder / "CMakeCache.txt").exists():
        args += ["-G", "Ninja"]
    sysroot = None
    if arch == "arm64":
        from mnv3compile.targets.arm64_sysroot import ensure_sysroot

        _tool("aarch64-linux-gnu-g++", "apt-get install g++-aarch64-linux-gnu")
        _tool("qemu-aarch64", "apt-get install qemu-user")
        sysroot = ensure_sysroot()
        args += [f"-DCMAKE_TOOLCHAIN_FILE={root / 'cmake' / 'aarch64-linux-gnu.cmake'}",
                 f"-DTVM_SITE_PACKAGES={sysroot / 'opt' / 'site'}"]
        if sanitize:
            raise UserError("--sanitize builds run on the host only")
    else:
        args.append(f"-DPython3_EXECUTABLE={sys.executable}")
    env = dict(os.environ)
    javac = shutil.which("javac")
    if javac and "JAVA_HOME" not in env:  # CMake's FindJNI looks for jni.h under JAVA_HOME
        env["JAVA_HOME"] = str(Path(javac).resolve().parents[1])
    for step in (args, [cmake, "--build", str(folder), "-j", str(os.cpu_count() or 1)]):
        result = subprocess.run(step, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            tail = (result.stdout + result.stderr).strip().splitlines()[-8:]
            raise UserError("building the C runtime failed:\n  " + "\n  ".join(tail))
    return RuntimeBuild(folder, arch, sysroot)


def python_outputs(bundle: Path, manifest: dict, x: np.ndarray, build: RuntimeBuild, scratch: Path) -> np.ndarray:
    """Every output of the Python runtime on ``x``, flattened and concatenated in manifest order."""
    if build.arch == "host":
        from mnv3compile.runner import BundleRunner

        return np.concatenate([o.ravel() for o in BundleRunner(bundle).outputs(x)]).astype(np.float32)
    script, x_path, out_path = scratch / "reference.py", scratch / "reference_input.f32", scratch / "reference_output.f32"
    script.write_text(_ARM64_REFERENCE)
    x.astype(np.float32).tofile(x_path)
    env = {**build.environment(), "PYTHONPATH": str(build.sysroot / "opt" / "site"), "TVM_USE_RUNTIME_LIB": "1",
           "HOME": str(scratch)}
    command = ["qemu-aarch64", str(build.sysroot / "usr" / "bin" / "python3"), str(script),
               str(bundle / manifest["library"]), str(x_path), ",".join(str(d) for d in x.shape), str(out_path)]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"the Python runtime under qemu failed: {last}")
    return np.fromfile(out_path, np.float32)


@dataclass
class Comparison:
    what: str  # "random tensor", "image chelsea.png"
    max_abs_diff: float
    top5_c: list[int]
    top5_python: list[int]

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= TOLERANCE


@dataclass
class DeployReport:
    bundle: Path
    arch: str
    runtime: Path
    rows: list[Comparison] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(row.ok for row in self.rows)


def _top5(values: np.ndarray, classes: int) -> list[int]:
    return [int(i) for i in np.argsort(-values[:classes], kind="stable")[:5]]


def check_bundle(bundle: Path, build_dir: Path, image: Path | None = None, seed: int = 0, threads: int = 0,
                 affinity: str = "big") -> DeployReport:
    """Build the runtime for the bundle's target and compare its outputs with the Python runtime's:
    on a random input tensor, and on ``image`` through the C preprocessing when given; the C runtime
    runs on ``threads`` workers placed as ``affinity`` says."""
    pool = ["--threads", str(threads), "--affinity", affinity]
    manifest = read_manifest(bundle)
    arch = arch_of(manifest)
    build = build_runtime(arch, build_dir / arch)
    scratch = build_dir / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    shape = [int(d) for d in manifest["inputs"][0]["shape"]]
    classes = int(np.prod(manifest["outputs"][0]["shape"]))
    report = DeployReport(bundle, arch, build.folder)

    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    x_path, c_path = scratch / "input.f32", scratch / "c_output.f32"
    x.tofile(x_path)
    build.run("classify", str(bundle), "--tensor", str(x_path), "--save-output", str(c_path), *pool)
    c_out, py_out = np.fromfile(c_path, np.float32), python_outputs(bundle, manifest, x, build, scratch)
    report.rows.append(_compare("random tensor", c_out, py_out, classes))
    build.run("mnv3_load_local", str(build.runtime_library), str(bundle), str(x_path), str(c_path))
    report.rows.append(_compare("random tensor, runtime loaded RTLD_LOCAL", np.fromfile(c_path, np.float32), py_out,
                                classes))

    if image is not None:
        if not manifest.get("preprocess"):
            raise UserError(f"{bundle} has no preprocessing in its manifest; --image needs a bundle built with --preprocess")
        from mnv3compile.runner import BundleRunner

        pixels = BundleRunner(bundle, remote=True).load_input(image)  # Python's preprocessing, as 'run' does
        build.run("classify", str(bundle), str(image), "--save-output", str(c_path), *pool)
        report.rows.append(_compare(f"image {image.name}", np.fromfile(c_path, np.float32),
                                    python_outputs(bundle, manifest, pixels, build, scratch), classes))
    return report


def _compare(what: str, c_out: np.ndarray, py_out: np.ndarray, classes: int) -> Comparison:
    if c_out.shape != py_out.shape:
        raise UserError(f"{what}: the C runtime wrote {c_out.size} floats, the Python runtime {py_out.size}")
    return Comparison(what, float(np.abs(c_out - py_out).max()), _top5(c_out, classes), _top5(py_out, classes))
