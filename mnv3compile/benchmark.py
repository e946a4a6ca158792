"""``mnv3compile bench``: latency of bundles, and of onnxruntime on the same models, measured
interleaved in one process (one call of each in turn, round after round), so that a noisy machine
slows every contender alike and the ratios stay fair."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

WARMUP_CALLS = 5


@dataclass
class Contender:
    name: str
    kind: str  # "bundle" or "onnxruntime"
    detail: str
    call: Callable[[], object]
    times_ms: list[float] = field(default_factory=list)


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


def _onnxruntime_call(model_path: Path, feeds: dict, threads: int) -> Callable[[], object]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, feeds)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def contenders(bundles: list[Path], vs_onnxruntime: bool, threads: int, affinity: str = "big") -> list[Contender]:
    """A contender per bundle (on ``threads`` workers placed as ``affinity`` says) and, with
    ``vs_onnxruntime``, onnxruntime on each distinct source model (fp32) and each distinct QDQ
    model of the bundles (``threads`` intra-op threads)."""
    from mnv3compile.runner import BundleRunner

    found: list[Contender] = []
    onnx_seen: set[str] = set()
    for path in bundles:
        runner = BundleRunner(path, threads=threads, affinity=affinity)
        x = np.random.default_rng(0).standard_normal(runner.input_shape).astype(np.float32)
        manifest = runner.manifest
        quant = "int8" if manifest.get("quantization") else "fp32"
        lowering = (manifest.get("quantization") or {}).get("lowering", "")
        detail = " ".join(part for part in (quant, lowering, manifest["target"]["preset"]) if part)
        found.append(Contender(runner.folder.name, "bundle", detail, lambda runner=runner, x=x: runner(x)))
        if not vs_onnxruntime:
            continue
        feeds = {runner.input["name"]: x}
        float_model = manifest.get("float_model") or (None if manifest.get("quantization") else manifest["model"])
        models = [("fp32", runner.folder / float_model)] if float_model else []
        if manifest.get("quantization"):
            models.append(("int8 QDQ", runner.folder / manifest["model"]))
        for label, model_path in models:
            if not model_path.is_file():
                continue
            digest = _digest(model_path)
            if digest in onnx_seen:
                continue
            onnx_seen.add(digest)
            found.append(Contender(f"onnxruntime ({runner.folder.name})", "onnxruntime", label,
                                   _onnxruntime_call(model_path, feeds, threads)))
    return found


def measure(entries: list[Contender], runs: int, budget_s: float,
            progress: Callable[[int, int], None] = lambda done, total: None) -> None:
    """Warm each up, then call each once per round, for ``runs`` rounds or until ``budget_s``
    seconds have passed (at least 10 rounds), each round in a new random order (seeded), so every
    contender follows every other about equally often. What runs just before a call matters: in a
    fixed order the one called after onnxruntime's int8 model (whose working set evicts the
    others' from the caches) measured slower, whichever bundle it was; rotating the order kept each one's predecessor and
    favoured the first-named of two bundles (docs/experiments.md, "Benchmarking method")."""
    for entry in entries:
        for _ in range(WARMUP_CALLS):
            entry.call()
    orders = np.random.default_rng(0)
    start = time.perf_counter()
    for done in range(runs):
        for index in orders.permutation(len(entries)):
            entry = entries[index]
            t0 = time.perf_counter()
            entry.call()
            entry.times_ms.append((time.perf_counter() - t0) * 1000)
        progress(done + 1, runs)
        if done >= 9 and time.perf_counter() - start > budget_s:
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
        out.append(BenchRow(entry.name, entry.kind, entry.detail, len(times), round(median, 4),
                            round(float(np.percentile(times, 10)), 4), round(float(np.percentile(times, 90)), 4),
                            round(median / base, 3)))
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
        progress: Callable[[int, int], None] | None = None, affinity: str = "big") -> BenchResult:
    """``contenders`` measured interleaved (``measure``), as a table."""
    entries = contenders(bundles, vs_onnxruntime, threads, affinity)
    measure(entries, runs, budget_s, progress or (lambda done, total: None))
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
