"""Apply a MetaSchedule tuning database to a fused Relax module, and say how much of it applied.

Stock TVM 0.27 applies nothing from a JSON database in a fresh process: ``extract_tasks`` records
each task's PrimFunc with its ``global_symbol`` renamed to ``main``, while the stock apply pass
queries the function under its own name, and ``compile_relax`` re-fuses an already fused module
(docs/tvm027.md). Here each kernel is queried exactly as it was recorded, and the count of kernels that
found a schedule is returned, so a build can report it and a test can prove it.

A kernel is also matched *up to its constants*: an int8 kernel's requantization scales and zero
points are immediates in its TIR (float32, or int8 for a pad's value), different for every calibration and every set of
weights, while its loops, buffers and blocks (all a schedule's trace refers to) are not. So a
database tuned on one calibration (or on the zoo's random weights) applies to another; the best
record of the equal-up-to-constants workload is replayed on the kernel itself.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from mnv3compile.errors import UserError
from mnv3compile.schedules.kernels.knobs import ADDED_LATER, KnobReader, decide


@dataclass(frozen=True)
class ApplyReport:
    applied: list[str]  # kernels that got a tuned schedule
    untuned: list[str]  # kernels the database has no record for
    by_constants: list[str]  # applied kernels whose record was of a kernel with other constants

    def to_json(self) -> dict:
        return {"applied": len(self.applied), "kernels": len(self.applied) + len(self.untuned),
                "untuned": self.untuned, "matched_up_to_constants": len(self.by_constants)}


IDENTITY_FILE = "mnv3compile_tuning.json"  # what a database was tuned for (written by 'tune')


def identity(target_name: str, tvm_target) -> dict:
    """What a database's schedules are valid for: the target preset, its TVM target and TVM's
    version (a trace replays TVM's schedule primitives, which change between versions)."""
    from importlib.metadata import version

    return {"target": target_name, "tvm_target": str(tvm_target), "tvm": version("apache-tvm")}


def default_folder(target_name: str, model_key: str) -> Path:
    """Where 'tune' writes and 'build' looks for a model's database when --db is not given."""
    from mnv3compile.cache import cache_root

    return cache_root() / "tuning" / target_name / model_key


def write_identity(folder: Path, tuned_for: dict, model_key: str) -> None:
    (folder / IDENTITY_FILE).write_text(json.dumps({**tuned_for, "model": model_key}, indent=1) + "\n")


def check_measure(folder: Path, measure: str, threads: int = 1) -> None:
    """A resumed run must score candidates as the run it continues did (times and instruction
    counts are not comparable, nor times on different thread counts)."""
    written = folder / IDENTITY_FILE
    if written.is_file():
        identity_written = json.loads(written.read_text())
        recorded = identity_written.get("measure", "time")
        if recorded != measure:
            raise UserError(f"{folder} was tuned with --measure {recorded}; resume it with --measure {recorded}, "
                            "or give another --db")
        counted = identity_written.get("threads", 1)
        if counted != threads:
            raise UserError(f"{folder} was tuned on --threads {counted}; resume it with --threads {counted}, "
                            "or give another --db")


def check_database(folder: Path, tuned_for: dict | None = None) -> tuple[Path, Path]:
    """The two files of a MetaSchedule JSON database in ``folder``, or a UserError; with
    ``tuned_for`` (``identity``), also refused when 'tune' wrote it for another target or TVM."""
    folder = Path(folder)
    workloads, records = folder / "database_workload.json", folder / "database_tuning_record.json"
    if not (workloads.is_file() and records.is_file()):
        raise UserError(f"{folder} is not a tuning database (needs database_workload.json and "
                        "database_tuning_record.json)")
    written = folder / IDENTITY_FILE
    if tuned_for is not None and written.is_file():
        recorded = json.loads(written.read_text())
        if recorded.get("target") != tuned_for["target"]:
            raise UserError(f"the tuning database {folder} was tuned for {recorded.get('target')}, not for "
                            f"{tuned_for['target']}: tune for {tuned_for['target']} or leave --db out")
        if recorded.get("tvm") != tuned_for["tvm"]:
            raise UserError(f"the tuning database {folder} was tuned with TVM {recorded.get('tvm')}, this is TVM "
                            f"{tuned_for['tvm']}: its schedules may not replay; tune again")
    return workloads, records


def open_database(folder: Path):
    from tvm.s_tir import meta_schedule as ms

    from mnv3compile.schedules.kernels.intrinsics import register_all

    register_all()  # loading parses each record's trace, tensorize steps name our intrinsics
    workloads, records = check_database(folder)
    return ms.database.JSONDatabase(path_workload=str(workloads), path_tuning_record=str(records))


# Value immediates: floats, and the narrow integers (an int8 pad value is a zero point); int32 and
# int64 ones are printed bare or are shapes and indices, and are kept.
_VALUE_LITERAL = re.compile(r"T\.(float16|float32|float64|int8|uint8|int16)\([^()]*\)")


def _placeholder(match: re.Match) -> str:
    """One value for every immediate of a dtype (not 0 or 1, which the parser would fold away)."""
    return f"T.{match.group(1)}({'0.785' if match.group(1).startswith('float') else '3'})"


def constant_free_hash(func) -> int:
    """A kernel's structural hash with every value immediate set to one value per dtype: equal for
    kernels that differ only in their scales and zero points (parameter names do not count either)."""
    import tvm
    import tvm_ffi

    func = func.with_attr("global_symbol", "main")
    try:
        return tvm_ffi.structural_hash(tvm.script.from_source(_VALUE_LITERAL.sub(_placeholder, func.script())))
    except Exception:  # TVMScript that does not parse back: the kernel matches only itself
        return tvm_ffi.structural_hash(func)


def _best_by_constant_free_hash(database) -> dict:
    """constant_free_hash of each recorded workload -> its fastest record."""
    import tvm_ffi

    best: dict = {}
    keys: dict[int, int] = {}  # a workload's exact hash -> its constant-free one (computed once each)
    for record in database.get_all_tuning_records():
        if not record.run_secs:
            continue
        cost = min(float(t) for t in record.run_secs)
        exact = tvm_ffi.structural_hash(record.workload.mod)
        if exact not in keys:
            keys[exact] = constant_free_hash(record.workload.mod["main"])
        key = keys[exact]
        if key not in best or cost < best[key][0]:
            best[key] = (cost, record)
    return {key: record for key, (_, record) in best.items()}


def recorded_decisions(trace) -> list[int]:
    """The knob decisions of a record's trace, in the order the template read them (``FixedKnobs``
    decides at every read: one ``sample_categorical`` per read)."""
    return [int(trace.decisions[inst]) for inst in trace.insts
            if inst.kind.name == "SampleCategorical" and inst in trace.decisions]


class RecordedKnobs(KnobReader):
    """A template's knobs read back from a record's decisions, one per read, in the order the
    template reads them (as ``tune.FixedKnobs`` decided them when the record was measured)."""

    def __init__(self, knobs, sch, decisions: list[int]):
        super().__init__(knobs)
        self.sch, self.decisions = sch, decisions

    def read(self, name, default, choices):
        if choices is None:
            return default
        if not self.decisions and name in ADDED_LATER:  # a record from before the knob: its default
            return decide(self.sch, choices, list(choices).index(default))
        if isinstance(choices[0], tuple):
            return tuple(self._next(options) for options in choices)
        return self._next(choices)

    def _next(self, options):
        if not self.decisions:
            raise LookupError("the record holds fewer decisions than the template reads")
        return decide(self.sch, options, self.decisions.pop(0))


def _replay(record, func, isa):
    """``func`` scheduled by today's template with the record's knob decisions (so what the
    template gained since the record was tuned, e.g. its parallel outer loops, applies too); else
    the record's trace as it is (a record the template no longer reads alike); None if neither
    applies to ``func``."""
    from tvm import s_tir

    from mnv3compile.schedules.kernels.dispatch import schedule_kernel

    decisions = recorded_decisions(record.trace)
    sch = s_tir.Schedule(func)
    try:
        schedule_kernel(sch, isa, lambda knobs: RecordedKnobs(knobs, sch, decisions))
        if not decisions:
            return sch.mod
    except Exception:  # noqa: BLE001 - any refusal: the literal trace below
        pass
    sch = s_tir.Schedule(func)
    try:
        record.trace.apply_to_schedule(sch, remove_postproc=False)
    except Exception:  # a trace that refers to something this kernel lacks: leave it untuned
        return None
    return sch.mod


def apply_database(module, target, database) -> tuple[object, ApplyReport]:
    """``module`` (after our Relax pipeline) with every recorded kernel replaced by its tuned form:
    a record of the kernel itself, else the best record of a kernel equal to it up to constants."""
    import tvm
    from tvm import tirx

    from mnv3compile.schedules.kernels.intrinsics import register_all
    from mnv3compile.schedules.kernels.isa import isa_of

    register_all()  # records replay the templates' tensorize steps by intrinsic name
    isa = isa_of(target)
    applied, untuned, by_constants = [], [], []
    up_to_constants = None  # built on the first miss
    for global_var, func in list(module.functions.items()):
        if not isinstance(func, tirx.PrimFunc):
            continue
        name = global_var.name_hint
        kernel = func.with_attr("global_symbol", "main")
        record = database.query_tuning_record(tvm.IRModule({"main": kernel}), target, "main")
        tuned = _replay(record, kernel, isa) if record is not None else None
        if tuned is None:
            if up_to_constants is None:
                up_to_constants = _best_by_constant_free_hash(database)
            record = up_to_constants.get(constant_free_hash(kernel))
            tuned = _replay(record, kernel, isa) if record is not None else None
            if tuned is not None:
                by_constants.append(name)
        if tuned is None:
            untuned.append(name)
            continue
        module[global_var] = tuned["main"].with_attr("global_symbol", name)
        applied.append(name)
    return module, ApplyReport(applied, untuned, by_constants)
