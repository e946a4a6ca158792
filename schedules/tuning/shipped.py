"""Tuning databases shipped with mnv3compile: schedules/tuning/databases/ISA/MODEL_KEY.json.gz, made by
tools/ship_databases.py with 'tune --measure instructions' (arm64 instruction counts under qemu).

Keyed by ISA, not by target preset: a record is a template's knob choices, which give the same
code on every CPU of an ISA. Only records that beat the template's default tile are kept (the
rest would change nothing). 'build' unpacks the one for its ISA and model into the user's cache
and applies it when the user has tuned nothing for that model; TVM's version must be the one it
was tuned with (a trace replays TVM's schedule primitives).
"""

from __future__ import annotations

import gzip
import json
from importlib.metadata import version
from pathlib import Path

from mnv3compile.schedules.tuning.database import IDENTITY_FILE

SHIPPED = Path(__file__).resolve().parent / "databases"
WORKLOADS, RECORDS = "database_workload.json", "database_tuning_record.json"


def _improving_records(folder: Path) -> tuple[list[str], list[str]]:
    """(workload lines, record lines) of the workloads whose best record beats their first one (the
    default tile, measured first), the best record alone each, re-indexed."""
    workloads = (folder / WORKLOADS).read_text().splitlines()
    first: dict[int, float] = {}
    best: dict[int, tuple[float, list]] = {}
    for line in (folder / RECORDS).read_text().splitlines():
        index, record = json.loads(line)
        cost = min(record[1])
        first.setdefault(index, cost)
        if index not in best or cost < best[index][0]:
            best[index] = (cost, record)
    kept = sorted(index for index, (cost, _) in best.items() if cost < first[index])
    return ([workloads[index] for index in kept],
            [json.dumps([position, best[index][1]]) for position, index in enumerate(kept)])


def pack(folder: Path, isa: str, model_key: str) -> Path:
    """Write ``folder``'s improving records as the shipped database for ``isa`` and ``model_key``."""
    workloads, records = _improving_records(folder)
    identity = {**json.loads((folder / IDENTITY_FILE).read_text()), "isa": isa, "model": model_key}
    path = SHIPPED / isa / f"{model_key}.json.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"identity": identity, "workloads": workloads, "records": records}, indent=0)
    path.write_bytes(gzip.compress(text.encode(), compresslevel=9, mtime=0))  # mtime 0: same bytes each time
    return path


def shipped_database(isa: str, model_key: str) -> tuple[Path, dict] | None:
    """The shipped database for ``isa`` and ``model_key`` as a database folder in the user's cache,
    and what it was tuned with; None if none ships or it was tuned with another TVM."""
    from mnv3compile.cache import cache_root

    packed = SHIPPED / isa / f"{model_key}.json.gz"
    if not packed.is_file():
        return None
    content = json.loads(gzip.decompress(packed.read_bytes()))
    identity = content["identity"]
    if identity.get("tvm") != version("apache-tvm"):
        return None
    folder = cache_root() / "shipped" / identity["tvm"] / isa / model_key
    if not (folder / IDENTITY_FILE).is_file() or (folder / IDENTITY_FILE).stat().st_mtime < packed.stat().st_mtime:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / WORKLOADS).write_text("".join(line + "\n" for line in content["workloads"]))
        (folder / RECORDS).write_text("".join(line + "\n" for line in content["records"]))
        (folder / IDENTITY_FILE).write_text(json.dumps(identity, indent=1) + "\n")  # last: marks it complete
    return folder, identity


def find_database(target_name: str, isa: str, model_key: str) -> tuple[Path, dict | None] | None:
    """The database a build applies when none is given: the user's own ('mnv3compile tune' for this
    target and model; no identity returned), else the one shipped for the ISA (with its identity)."""
    from mnv3compile.schedules.tuning.database import default_folder

    own = default_folder(target_name, model_key)
    if (own / RECORDS).is_file():
        return own, None
    return shipped_database(isa, model_key)
