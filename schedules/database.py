"""Apply a MetaSchedule tuning database to a fused Relax module, and say how much of it applied.

Stock TVM 0.27 applies nothing from a JSON database in a fresh process: ``extract_tasks`` records
each task's PrimFunc with its ``global_symbol`` renamed to ``main``, while the stock apply pass
queries the function under its own name, and ``compile_relax`` re-fuses an already fused module
(tvm027.md). Here each kernel is queried exactly as it was recorded, and the count of kernels that
found a schedule is returned, so a build can report it and a test can prove it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mnv3compile.errors import UserError


@dataclass(frozen=True)
class ApplyReport:
    applied: list[str]  # kernels that got a tuned schedule
    untuned: list[str]  # kernels the database has no record for

    def to_json(self) -> dict:
        return {"applied": len(self.applied), "kernels": len(self.applied) + len(self.untuned),
                "untuned": self.untuned}


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


def check_measure(folder: Path, measure: str) -> None:
    """A resumed run must score candidates as the run it continues did (times and instruction
    counts are not comparable)."""
    written = folder / IDENTITY_FILE
    if written.is_file():
        recorded = json.loads(written.read_text()).get("measure", "time")
        if recorded != measure:
            raise UserError(f"{folder} was tuned with --measure {recorded}; resume it with --measure {recorded}, "
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

    from mnv3compile.schedules.intrinsics import register_all

    register_all()  # loading parses each record's trace, tensorize steps name our intrinsics
    workloads, records = check_database(folder)
    return ms.database.JSONDatabase(path_workload=str(workloads), path_tuning_record=str(records))


def apply_database(module, target, database) -> tuple[object, ApplyReport]:
    """``module`` (after our Relax pipeline) with every recorded kernel replaced by its tuned form."""
    import tvm
    from tvm import tirx

    from mnv3compile.schedules.intrinsics import register_all

    register_all()  # records replay the templates' tensorize steps by intrinsic name
    applied, untuned = [], []
    for global_var, func in list(module.functions.items()):
        if not isinstance(func, tirx.PrimFunc):
            continue
        name = global_var.name_hint
        query = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
        tuned = database.query_ir_module(query, target, "main")
        if tuned is None:
            untuned.append(name)
            continue
        module[global_var] = tuned["main"].with_attr("global_symbol", name)
        applied.append(name)
    return module, ApplyReport(applied, untuned)
