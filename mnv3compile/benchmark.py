"""``mnv3compile bench``: latency of bundles, and of onnxruntime on the same models, measured
interleaved (one call of each in turn, round after round), so that a noisy machine slows every
contender alike and the ratios stay fair; and what each takes to start (time to first result,
resident memory) from a cold process.

Each contender runs in a process of its own (mnv3compile/bench_worker.py), stopped (SIGSTOP) while
the others run: thread pools wait for the next task spinning a while, and two pools in one process
took each other's cores (Small int8 at 2 threads measured 16 ms beside onnxruntime's sessions, 0.6
ms alone; onnxruntime's own times doubled). A stopped process's threads spin on no core."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mnv3compile.bench_worker import WorkerSpec

WARMUP_CALLS = 5
# Timed calls a worker makes a turn, after one untimed: a process resumed after the others ran finds
# its caches and TLB cold (Small int8 took 1.6 ms a call when every call was a turn, 0.96 ms alone).
TURN_CALLS = 10


@dataclass
class Contender:
    """Something to time: ``call`` in this process (benchmarks/ use it to compare two ways of
    building one model), or a worker process (``WorkerContender``)."""

    name: str
    kind: str  # "bundle", "onnxruntime", or what a benchmark script names
    detail: str
    call: Callable[[], object]
    times_ms: list[float] = field(default_factory=list)

    def timed_calls(self) -> list[float]:
        """One turn: a call here, its milliseconds."""
        began = time.perf_counter()
        self.call()
        return [(time.perf_counter() - began) * 1000]


@dataclass(frozen=True)
class Startup:
    """A cold process's start (medians over the cold starts measured)."""

    import_ms: float  # its runtime's Python import (TVM's is the whole compiler; an app links a runtime)
    open_ms: float  # our library loaded and its VM made; onnxruntime's session created
    first_run_ms: float  # the first inference after that
    resident_after_import_mib: float
    peak_mib: float  # the process's peak resident memory by the end of the first inference
    samples: int

    @property
    def first_result_ms(self) -> float:
        """Open + first inference: what an app waits for once its runtime is loaded."""
        return self.open_ms + self.first_run_ms

    @property
    def model_mib(self) -> float:
        """Peak resident memory the model added to the process (peak minus after the import)."""
        return self.peak_mib - self.resident_after_import_mib


@dataclass
class BenchRow:
    name: str
    kind: str
    detail: str
    runs: int
    median_ms: float
    p10_ms: float
    p90_ms: float
    ratio: float | None  # median / the reference's median
    # From a cold process (medians over the cold starts); None for a contender timed in-process.
    first_result_ms: float | None = None  # open + first inference
    open_ms: float | None = None
    first_run_ms: float | None = None
    import_ms: float | None = None
    peak_mib: float | None = None  # the process's peak resident memory, runtime included
    model_mib: float | None = None  # what the model added to it (peak minus after the import)
    cold_starts: int = 0


class WorkerContender(Contender):
    """A contender in a process of its own, stopped between its calls."""

    def __init__(self, name: str, kind: str, detail: str, spec: WorkerSpec):
        super().__init__(name, kind, detail, self.timed_calls)
        self.spec = spec
        self.starts: list[dict] = []
        self._process = self._connection = None

    def start(self) -> None:
        """Start the worker and take its start-up report; it is left stopped."""
        self._process, self._connection, report = _spawn(self.spec)
        self.starts.append(report)
        os.kill(self._process.pid, signal.SIGSTOP)

    def cold_start(self) -> None:
        """One more start-up measurement, in a process that exits right after it."""
        process, connection, report = _spawn(self.spec)
        self.starts.append(report)
        _finish(process, connection)

    def timed_calls(self) -> list[float]:
        """One turn: the worker resumed, a call to warm it up again, then TURN_CALLS calls, each
        timed by the worker itself (no pipe or signal in them)."""
        from mnv3compile.errors import UserError

        os.kill(self._process.pid, signal.SIGCONT)
        try:
            self._connection.send(("run", TURN_CALLS))
            return [float(t) for t in self._connection.recv()]
        except (EOFError, OSError) as error:
            self._process.join(timeout=5)
            raise UserError(f"bench: {self.spec.path}: its process ended mid-run "
                            f"(exit code {self._process.exitcode})") from error
        finally:
            if self._process.is_alive():
                os.kill(self._process.pid, signal.SIGSTOP)

    def stop(self) -> None:
        if self._process is not None:
            _finish(self._process, self._connection)
            self._process = None

    @property
    def startup(self) -> Startup:
        def median(key: str) -> float:
            return float(np.median([s[key] for s in self.starts]))

        return Startup(median("import_ms"), median("open_ms"), median("first_run_ms"),
                       median("resident_after_import_mib"), median("peak_mib"), len(self.starts))


def _spawn(spec: WorkerSpec):
    """A fresh interpreter (spawned: a fork would copy this process's TVM and threads) running the
    worker; (process, connection, its start-up report)."""
    import multiprocessing

    from mnv3compile.bench_worker import serve
    from mnv3compile.errors import UserError

    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=serve, args=(spec, theirs), daemon=True)
    process.start()
    theirs.close()
    try:
        report = ours.recv()
    except EOFError:
        report = {"error": f"the worker exited with code {process.exitcode}"}
    if "error" in report:
        _finish(process, ours)
        raise UserError(f"bench: {spec.path}: {report['error']}")
    return process, ours, report


def _finish(process, connection) -> None:
    try:
        os.kill(process.pid, signal.SIGCONT)
        connection.send("exit")
    except (OSError, ValueError):
        pass
    process.join(timeout=10)
    if process.is_alive():
        process.kill()
        process.join()
    connection.close()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def contenders(bundles: list[Path], vs_onnxruntime: bool, threads: int, affinity: str = "big") -> list[WorkerContender]:
    """A contender per bundle (on ``threads`` workers placed as ``affinity`` says) and, with
    ``vs_onnxruntime``, onnxruntime on each distinct source model (fp32) and each distinct QDQ
    model of the bundles (``threads`` intra-op threads). Nothing is started yet."""
    from mnv3compile import threads as pool
    from mnv3compile.bundle import read_manifest
    from mnv3compile.errors import UserError

    pool.check(threads, affinity)
    found: list[WorkerContender] = []
    onnx_seen: set[str] = set()
    for path in bundles:
        manifest = read_manifest(path)
        folder = Path(manifest["_folder"])
        if manifest["target"]["preset"] != "host":
            raise UserError(f"{path} was built for {manifest['target']['preset']!r}, not this machine; "
                            "bench runs host bundles")
        quant = "int8" if manifest.get("quantization") else "fp32"
        lowering = (manifest.get("quantization") or {}).get("lowering", "")
        detail = " ".join(part for part in (quant, lowering, manifest["target"]["preset"]) if part)
        found.append(WorkerContender(folder.name, "bundle", detail,
                                     WorkerSpec("bundle", str(folder), threads, affinity)))
        if not vs_onnxruntime:
            continue
        tensor = manifest["inputs"][0]
        float_model = manifest.get("float_model") or (None if manifest.get("quantization") else manifest["model"])
        models = [("fp32", folder / float_model)] if float_model else []
        if manifest.get("quantization"):
            models.append(("int8 QDQ", folder / manifest["model"]))
        for label, model_path in models:
            if not model_path.is_file():
                continue
            digest = _digest(model_path)
            if digest in onnx_seen:
                continue
            onnx_seen.add(digest)
            found.append(WorkerContender(f"onnxruntime ({folder.name})", "onnxruntime", label,
                                         WorkerSpec("onnxruntime", str(model_path), threads,
                                                    input_name=tensor["name"], input_shape=tuple(tensor["shape"]))))
    return found


def measure(entries: list[Contender], runs: int, budget_s: float,
            progress: Callable[[int, int], None] = lambda done, total: None) -> None:
    """Warm each up, then give each a turn per round (a call; a worker's turn is TURN_CALLS calls),
    until each has ``runs`` timed calls or ``budget_s`` seconds have passed (at least 10 calls
    each), each round in a new random order (seeded), so every
    contender follows every other about equally often. What runs just before a call matters: in a
    fixed order the one called after onnxruntime's int8 model (whose working set evicts the
    others' from the caches) measured slower, whichever bundle it was; rotating the order kept each one's predecessor and
    favoured the first-named of two bundles (docs/experiments.md, "Benchmarking method")."""
    for entry in entries:
        warmed = 0
        while warmed < WARMUP_CALLS:
            warmed += len(entry.timed_calls())
    orders = np.random.default_rng(0)
    start = time.perf_counter()
    done = 0
    while min(len(entry.times_ms) for entry in entries) < runs:
        for index in orders.permutation(len(entries)):
            entry = entries[index]
            entry.times_ms.extend(entry.timed_calls()[:runs - len(entry.times_ms)])
        done = min(len(entry.times_ms) for entry in entries)
        progress(done, runs)
        if done >= 10 and time.perf_counter() - start > budget_s:
            break


def reference(entries: list[Contender]) -> Contender:
    """What ratios are against: onnxruntime fp32 (the first one) when measured, else the first bundle."""
    return next((e for e in entries if e.kind == "onnxruntime" and e.detail == "fp32"), entries[0])


def rows(entries: list[Contender]) -> list[BenchRow]:
    base = float(np.median(reference(entries).times_ms))
    out = []
    for entry in entries:
        times = np.array(entry.times_ms)
        median = float(np.median(times))
        start = {}
        if isinstance(entry, WorkerContender) and entry.starts:
            s = entry.startup
            start = {"first_result_ms": round(s.first_result_ms, 2), "open_ms": round(s.open_ms, 2),
                     "first_run_ms": round(s.first_run_ms, 2), "import_ms": round(s.import_ms, 1),
                     "peak_mib": round(s.peak_mib, 1), "model_mib": round(s.model_mib, 1), "cold_starts": s.samples}
        out.append(BenchRow(entry.name, entry.kind, entry.detail, len(times), round(median, 4),
                            round(float(np.percentile(times, 10)), 4), round(float(np.percentile(times, 90)), 4),
                            round(median / base, 3), **start))
    return out


def reference_label(entries: list[Contender]) -> str:
    ref = reference(entries)
    return f"{ref.name} ({ref.detail})"


@dataclass(frozen=True)
class BenchResult:
    """One interleaved measurement: a row per contender, ratios against ``reference``."""

    rows: list[BenchRow]
    threads: int
    reference: str  # what the ratios are against
    cpu: str

    def row(self, name: str, detail: str | None = None) -> BenchRow:
        """The row of contender ``name`` (and ``detail``: "fp32", "int8 QDQ", ... when several share it)."""
        for row in self.rows:
            if row.name == name and (detail is None or row.detail == detail):
                return row
        raise KeyError(f"no contender {name!r}" + (f" ({detail})" if detail else ""))

    def to_json(self) -> dict:
        return {"threads": self.threads, "cpu": self.cpu, "ratio_reference": self.reference,
                "rows": [asdict(r) for r in self.rows]}


def run(bundles: list[Path], vs_onnxruntime: bool, threads: int, runs: int = 100, budget_s: float = 120,
        progress: Callable[[int, int], None] | None = None, affinity: str = "big", cold_starts: int = 1,
        on_status: Callable[[str], None] = lambda text: None) -> BenchResult:
    """``contenders``, each started in a process of its own (its cold start measured while the
    others are stopped; ``cold_starts`` - 1 more starts each in processes that exit at once), then
    measured interleaved (``measure``), as a table. The workers are stopped whatever happens."""
    from mnv3compile.errors import UserError

    if cold_starts < 1:
        raise UserError(f"cold starts {cold_starts}: give 1 or more (the measuring process is the first)")
    entries = contenders(bundles, vs_onnxruntime, threads, affinity)
    try:
        for entry in entries:
            on_status(f"starting {entry.name} ({entry.detail})")
            entry.start()
        for extra in range(cold_starts - 1):
            for entry in entries:
                on_status(f"cold start {extra + 2} of {cold_starts}: {entry.name} ({entry.detail})")
                entry.cold_start()
        measure(entries, runs, budget_s, progress or (lambda done, total: None))
    finally:
        for entry in entries:
            entry.stop()
    return BenchResult(rows(entries), threads, reference_label(entries), cpu_name())


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()
