"""arm64 cost without a phone: guest instructions executed under qemu-aarch64, counted by a TCG
plugin (schedules/tuning/qemu/count_insns.c) between two marker syscalls the measured program makes.

Deterministic (the same count run to run), unlike emulated time, which says nothing about a
phone. What it sees: every instruction a kernel executes, so more work, loop overhead, register
spills and scalar fallbacks all count. What it cannot see: cache misses and memory stalls,
instruction latencies and how many issue per cycle (a core's width), thermal throttling. A
proxy for choosing between schedules of the same kernel, not a latency.

``InstructionMeasurer`` is 'tune --measure instructions': each candidate kernel is compiled for the
target's CPU, linked for arm64 Linux, and run by schedules/tuning/qemu/kernel_count.cc under qemu; both
helpers are built once into the user's cache (benchmarks/arm64_instructions.py counts whole
bundles the same way).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from mnv3compile.errors import UserError

SOURCES = Path(__file__).resolve().parent / "qemu"
COUNT_LINE = re.compile(r"mnv3-insns (\d+) marks (\d+)")
THREAD_LINE = re.compile(r"mnv3-thread (\d+) (\d+)")
RUNS = 2  # calls between the markers: the count is exact, more only repeats it


def helpers_folder() -> Path:
    """Where the plugin, its header and kernel_count are built (once) in the user's cache."""
    from mnv3compile.cache import cache_root

    return cache_root() / "qemu-plugin"


def _require(tool: str, install: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise UserError(f"counting arm64 instructions needs {tool}: {install}")
    return path


def _run(command: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise UserError(f"{what} failed: " + " / ".join(tail))
    return result


def plugin_header(cache: Path) -> Path:
    """The folder holding QEMU's qemu-plugin.h, taken once from the Debian source package of this
    machine's release (no Debian binary package ships it); its API must be the installed qemu's."""
    header_dir = cache / "include"
    if (header_dir / "qemu-plugin.h").exists():
        return header_dir
    _require("apt-get", "a Debian or Ubuntu machine (QEMU's plugin header comes from its qemu source package)")
    release = Path("/etc/os-release")
    found = re.search(r"^VERSION_CODENAME=(\w+)", release.read_text(), re.M) if release.exists() else None
    codename = found.group(1) if found else "bookworm"
    work = cache / "apt"
    for sub in ("lists/partial", "cache/archives/partial", "src"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    (work / "sources.list").write_text(f"deb-src http://deb.debian.org/debian {codename} main\n")
    (work / "status").touch()
    apt = ["apt-get", "-q", "-o", f"Dir::Etc::SourceList={work / 'sources.list'}", "-o", "Dir::Etc::SourceParts=/dev/null",
           "-o", f"Dir::State::Lists={work / 'lists'}", "-o", f"Dir::State::status={work / 'status'}",
           "-o", f"Dir::Cache={work / 'cache'}"]
    _run([*apt, "update"], "apt-get update (Debian source lists)")
    _run([*apt, "source", "--download-only", "qemu"], "apt-get source qemu", cwd=work / "src")
    tarball = next((work / "src").glob("qemu_*.orig.tar.xz"))
    _run(["tar", "-xJf", str(tarball), "-C", str(work / "src"), "--wildcards", "*/include/qemu/qemu-plugin.h"],
         "unpacking qemu-plugin.h")
    header_dir.mkdir(parents=True, exist_ok=True)
    (header_dir / "qemu-plugin.h").write_bytes(next((work / "src").glob("qemu-*/include/qemu/qemu-plugin.h")).read_bytes())
    shutil.rmtree(work)  # the source package (~25 MB) was only needed for this header
    return header_dir


def _stale(output: Path, source: Path) -> bool:
    return not output.exists() or output.stat().st_mtime < source.stat().st_mtime


def plugin(cache: Path) -> Path:
    """count_insns.so (a host shared object qemu loads), built once into ``cache``."""
    library, source = cache / "count_insns.so", SOURCES / "count_insns.c"
    if _stale(library, source):
        compiler = _require("gcc", "apt-get install gcc")
        cache.mkdir(parents=True, exist_ok=True)
        _run([compiler, "-shared", "-fPIC", "-O2", f"-I{plugin_header(cache)}", str(source), "-o", str(library)],
             "building the qemu plugin")
    return library


def kernel_counter(cache: Path, sysroot: Path) -> Path:
    """kernel_count (an arm64 program on the stand-in phone's aarch64 TVM runtime), built once."""
    program, source = cache / "kernel_count", SOURCES / "kernel_count.cc"
    if _stale(program, source):
        compiler = _require("aarch64-linux-gnu-g++", "apt-get install g++-aarch64-linux-gnu")
        site = sysroot / "opt" / "site"
        _run([compiler, "-O2", "-std=c++17", f"-I{site / 'tvm_ffi' / 'include'}", f"-I{site / 'tvm' / 'include'}",
              str(source), f"-L{site / 'tvm_ffi' / 'lib'}", f"-L{site / 'tvm' / 'lib'}", "-Wl,--no-as-needed",
              "-ltvm_ffi", "-ltvm_runtime", "-o", str(program)], "building kernel_count")
    return program


def qemu_environment(sysroot: Path) -> dict[str, str]:
    site = sysroot / "opt" / "site"
    # One worker: the count is one thread's work (a parallel kernel's idle workers would add their
    # spinning, a different amount each run).
    return {"PATH": "/usr/bin:/bin", "QEMU_LD_PREFIX": str(sysroot), "TVM_NUM_THREADS": "1",
            "LD_LIBRARY_PATH": f"{site / 'tvm' / 'lib'}:{site / 'tvm_ffi' / 'lib'}"}


def counted(output: str) -> int:
    """The plugin's count from a run's output; an error when the markers were not both reached."""
    match = COUNT_LINE.search(output)
    if match is None or int(match.group(2)) != 2:
        raise RuntimeError("the program did not reach both markers: " + (output.strip().splitlines() or ["no output"])[-1])
    return int(match.group(1))


def counted_per_thread(output: str) -> dict[int, int]:
    """{guest thread: instructions} from a run's output (qemu-user: a vCPU per thread, 0 the main);
    together they are ``counted``'s total."""
    per_thread = {int(k): int(n) for k, n in THREAD_LINE.findall(output)}
    if sum(per_thread.values()) != counted(output):
        raise RuntimeError("the plugin's per-thread counts do not add up to its total")
    return per_thread


def measuring_target(target):
    """The TVM target a candidate is compiled with to run here: the target's CPU and features,
    linked for arm64 Linux (an Android target's kernel code is the same; only its loader differs)."""
    import tvm

    spec = dict(target.export())
    if "android" in str(spec.get("mtriple", "")):
        spec["mtriple"] = "aarch64-linux-gnu"
    return tvm.target.Target(spec)


def argument_specs(func) -> list[str]:
    """kernel_count's arguments for a PrimFunc's parameters: "int8:1,56,56,16"."""
    return [f"{param.dtype}:{','.join(str(int(d)) for d in param.shape)}" for param in func.params]


class InstructionMeasurer:
    """Scores a candidate by the arm64 instructions one call of it executes under qemu."""

    unit = "instructions"

    def __init__(self, target, work: Path, name: str = "qemu"):
        from mnv3compile.targets.arm64_sysroot import ensure_sysroot
        from mnv3compile.targets.presets import preset
        from mnv3compile.targets.toolchains import toolchain_for

        _require("qemu-aarch64", "apt-get install qemu-user")
        self.target, self.work, self.name, self.count = measuring_target(target), work, name, 0
        self.toolchain = toolchain_for(preset("arm64-linux"))
        sysroot = ensure_sysroot()
        cache = helpers_folder()
        self.plugin, self.program = plugin(cache), kernel_counter(cache, sysroot)
        self.environment = qemu_environment(sysroot)
        work.mkdir(parents=True, exist_ok=True)

    def __call__(self, scheduled) -> float:
        from mnv3compile.schedules.tuning.measure import export_candidate

        self.count += 1
        path = export_candidate(scheduled, self.target, self.toolchain, self.work / f"candidate{self.count}.so")
        try:
            command = ["qemu-aarch64", "-plugin", str(self.plugin), "-d", "plugin", str(self.program), str(path),
                       str(RUNS), *argument_specs(scheduled)]
            result = subprocess.run(command, capture_output=True, text=True, env=self.environment, timeout=600)
            if result.returncode != 0:
                raise RuntimeError(((result.stderr or result.stdout).strip().splitlines() or ["no output"])[-1])
            return counted(result.stdout + result.stderr) / RUNS
        finally:
            path.unlink(missing_ok=True)
