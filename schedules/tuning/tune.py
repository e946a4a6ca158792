"""Tuning: measure each kernel's template over its knob choices and keep the fastest, in a
MetaSchedule JSON database that ``build`` applies (schedules/tuning/database.py).

The search space of a kernel is its template's knobs (kernels/knobs.py, their choices): tens of tiles
per kernel (pointwise 5 x 4, dot4 5 x 6, depthwise 5 x 3, a GEMV 6), so it is enumerated, not
sampled: each candidate is the template run on a traced schedule whose knob reads are
``sample_categorical`` decisions fixed to one choice (``FixedKnobs``), so a record is a replayable
trace, exactly what MetaSchedule's own search would have stored. Choices that a kernel clamps to
the same tile (8 pixels on a 7-wide row) are measured once.

Where trials go: kernels equal up to their constants (scales, zero points:
``database.constant_free_hash``) are one *task*, weighted by how many kernels share it; its records
are stored under its first kernel's workload and build applies them to the others. First every task's default tile is measured (the untuned
build's latency, per task and in total); then tasks are taken in order of their share of that
total (weight x default latency), largest first, each through all its candidates. A budget
(``--trials``, ``--time-budget``) that ends the run early has spent its trials where they pay.

Costs are a measurer's, in its unit: microseconds (schedules/tuning/measure.py: here, or on a device over
TVM RPC) or arm64 instructions under qemu (schedules/tuning/instructions.py). With several
measurers (devices under one tracker key) each takes the next candidate as soon as it is free, in
the same order; results are recorded here, one at a time; a device that is lost is dropped and its
candidate goes to the others. Nothing measured is lost: each candidate is written to
``progress.json`` as pending before it is measured and with its result after, and its record is in
the database before the next one is handed out.
A resumed run skips what was measured; a candidate left pending (the process died in it) counts as
failed and is not tried again. Kernels no template covers (pads, the input's transpose) keep
TVM's default schedule and are not tuned.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from itertools import product
from pathlib import Path

from mnv3compile.schedules.kernels.knobs import KnobReader, decide
from mnv3compile.schedules.kernels.dispatch import requantized

PROGRESS_FILE = "progress.json"
# A record's "run_secs" in the MetaSchedule database: a time, or an instruction count read as
# nanoseconds (1 GHz at one instruction a cycle), so MetaSchedule's "fastest" is the fewest.
SECONDS_PER_UNIT = {"us": 1e-6, "instructions": 1e-9}
PENDING = "the process ended while measuring it"


class FixedKnobs(KnobReader):
    """Template knobs read as ``sample_categorical`` decisions fixed to given values (``values``:
    knob -> value); knobs without choices keep the ISA's value, knobs not given take it too.
    ``read`` collects each knob the template asked for, with its choices and the ISA's value (to
    enumerate a kernel's space)."""

    def __init__(self, knobs, sch, values: dict, read: dict):
        super().__init__(knobs)
        self.sch, self.values, self.read_knobs = sch, values, read

    def read(self, name: str, default, choices):
        value = self.values.get(name, default)
        self.read_knobs[name] = (choices, default)
        if choices is None or self.sch is None:
            return value
        if isinstance(choices[0], tuple):
            return tuple(self._decide(options, v) for options, v in zip(choices, value))
        return self._decide(choices, value)

    def _decide(self, options, value) -> int:
        options = list(options)
        index = options.index(value) if value in options else min(
            range(len(options)), key=lambda i: abs(options[i] - value))  # a default outside the choices
        return decide(self.sch, options, index)


def fixed_knobs(sch, values: dict, read: dict | None = None):
    """The reader ``schedule_kernel`` takes: each family's knobs fixed to ``values``."""
    read = {} if read is None else read
    return lambda knobs: FixedKnobs(knobs, sch, values, read)


@dataclass
class Candidate:
    knobs: dict  # knob -> value (tuples as lists in JSON)
    template: str = ""
    cost: float | None = None  # microseconds or instructions (Tuner.unit); None: failed
    error: str = ""


@dataclass
class Task:
    name: str  # the first kernel's name
    kernels: list[str]
    candidates: list[Candidate] = field(default_factory=list)
    default_cost: float | None = None

    @property
    def weight(self) -> int:
        return len(self.kernels)

    def best(self) -> Candidate | None:
        timed = [c for c in self.candidates if c.cost is not None]
        return min(timed, key=lambda c: c.cost) if timed else None


def _key(knobs: dict) -> str:
    return json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in sorted(knobs.items())})


def knob_space(func, isa) -> list[dict]:
    """Every knob setting the kernel's template reads, the ISA's default first; settings that give
    the same scheduled kernel are kept once."""
    import tvm_ffi
    from tvm import s_tir

    from mnv3compile.schedules.kernels.dispatch import schedule_kernel

    read: dict = {}  # knob -> (choices, the ISA's value)
    schedule_kernel(s_tir.Schedule(func), isa, fixed_knobs(None, {}, read))  # NoTemplate: nothing to tune
    axes = []
    for key, (choices, _) in read.items():
        if choices is None:
            continue
        if isinstance(choices[0], tuple):
            axes.append([(key, values) for values in product(*choices)])
        else:
            axes.append([(key, value) for value in choices])
    settings = [dict(combination) for combination in product(*axes)]
    default = {key: value for key, (choices, value) in read.items() if choices is not None}
    seen, space = set(), []
    for knobs in [default, *settings]:
        sch = s_tir.Schedule(func)
        try:
            schedule_kernel(sch, isa, fixed_knobs(sch, knobs))
        except Exception:  # a choice this kernel cannot take
            continue
        fingerprint = tvm_ffi.structural_hash(sch.mod["main"])
        if fingerprint not in seen:
            seen.add(fingerprint)
            space.append(knobs)
    return space


def tasks_of(module, isa) -> tuple[list[Task], dict]:
    """The module's tunable kernels grouped into tasks (equal up to constants), each with its knob
    space; and name -> PrimFunc of each task's representative."""
    from tvm import tirx

    from mnv3compile.schedules.tuning.database import constant_free_hash
    from mnv3compile.schedules.kernels.family import NoTemplate

    groups: dict[int, Task] = {}
    funcs = {}
    for global_var, func in sorted(module.functions.items(), key=lambda item: item[0].name_hint):
        if not isinstance(func, tirx.PrimFunc):
            continue
        workload = func.with_attr("global_symbol", "main")
        fingerprint = constant_free_hash(workload)  # build applies the task's records to all its kernels
        if fingerprint in groups:
            groups[fingerprint].kernels.append(global_var.name_hint)
            continue
        try:
            space = knob_space(workload, isa)
        except NoTemplate:
            continue
        task = Task(global_var.name_hint, [global_var.name_hint], [Candidate(knobs) for knobs in space])
        groups[fingerprint] = task
        funcs[task.name] = workload
    return list(groups.values()), funcs


@dataclass
class Budget:
    trials: int | None = None  # candidates to measure in this run (None: all)
    seconds: float | None = None

    def spent(self, trials: int, started: float) -> bool:
        return ((self.trials is not None and trials >= self.trials)
                or (self.seconds is not None and time.monotonic() - started >= self.seconds))


class Tuner:
    """Measures tasks' candidates into ``folder`` (a MetaSchedule JSON database plus
    ``progress.json``), resuming what is there."""

    def __init__(self, folder: Path, module, target, isa, measurers: list[Callable[[object], float]],
                 on_progress: Callable[["Tuner"], None] = lambda tuner: None):
        from tvm.s_tir import meta_schedule as ms

        from mnv3compile.schedules.kernels.intrinsics import register_all

        register_all()  # the templates' tensor intrinsics, by name, for the traces
        self.folder, self.target, self.isa, self.on_progress = folder, target, isa, on_progress
        self.measurers = measurers  # one per device; each measures one candidate at a time
        self.unit = measurers[0].unit  # what the measurers return: "us" or "instructions"
        folder.mkdir(parents=True, exist_ok=True)
        self.tasks, self.funcs = tasks_of(module, isa)
        self._load_progress()
        self.database = ms.database.JSONDatabase(
            path_workload=str(folder / "database_workload.json"),
            path_tuning_record=str(folder / "database_tuning_record.json"), allow_missing=True)
        self.trials = 0  # measured in this run
        self.per_device: Counter = Counter()  # measurer name -> candidates it measured in this run

    # -- progress on disk ------------------------------------------------------------------
    def _load_progress(self) -> None:
        path = self.folder / PROGRESS_FILE
        if not path.exists():
            return
        saved = {task["name"]: task for task in json.loads(path.read_text())["tasks"]}
        for task in self.tasks:
            previous = saved.get(task.name)
            if previous is None:
                continue
            done = {_key(c["knobs"]): c for c in previous["candidates"]}
            for candidate in task.candidates:
                record = done.get(_key(candidate.knobs))
                if record is not None:
                    candidate.template = record["template"]
                    candidate.cost = record.get("cost", record.get("microseconds"))
                    candidate.error = record["error"]  # a pending one died measuring: failed
            task.default_cost = previous.get("default_cost", previous.get("default_us"))  # progress files written before the rename

    def save_progress(self) -> None:
        path = self.folder / PROGRESS_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"tasks": [asdict(task) for task in self.tasks]}, indent=1))
        temporary.replace(path)  # atomic: a kill never leaves half a file

    # -- the search ----------------------------------------------------------------------
    @staticmethod
    def measured(candidate: Candidate) -> bool:
        return candidate.cost is not None or bool(candidate.error)

    def estimated_total(self, tuned: bool) -> float | None:
        """Total cost (``unit``) of the tuned kernels, untuned (default tiles) or with the best so far."""
        total = 0.0
        for task in self.tasks:
            best = task.best() if tuned else None
            value = best.cost if best is not None else task.default_cost
            if value is None:
                return None
            total += value * task.weight
        return total

    def run(self, budget: Budget) -> None:
        started = time.monotonic()
        # the untuned latency first: every task's default tile
        if not self._measure_all([(task, task.candidates[0]) for task in self.tasks], budget, started):
            return
        ordered = sorted(self.tasks, key=lambda t: -(t.default_cost or 0.0) * t.weight)  # largest share first
        self._measure_all([(task, c) for task in ordered for c in task.candidates[1:]], budget, started)

    def _measure_all(self, queue: list, budget: Budget, started: float) -> bool:
        """Measure ``queue``'s (task, candidate) pairs in order, each measurer taking the next one
        when it is free; False when the budget ended it first. One measurer measures in this
        thread (a Ctrl-C interrupts it at once); several, each in a thread of its own."""
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

        from mnv3compile.schedules.tuning.measure import DeviceLost

        queue = [item for item in queue if not self.measured(item[1])]
        free, running, ended = list(range(len(self.measurers))), {}, False
        parallel = len(self.measurers) > 1
        with ThreadPoolExecutor(max_workers=len(self.measurers)) as pool:
            submit = pool.submit if parallel else _run_here
            try:
                while True:
                    while queue and free and not ended:
                        if budget.spent(self.trials + len(running), started):
                            ended = True
                            break
                        task, candidate = queue.pop(0)
                        sch = self._prepare(task, candidate)
                        if sch is not None:
                            device = free.pop(0)
                            # measured as a build compiles it: with the rewrites that follow the templates
                            built = requantized(sch.mod["main"], self.isa)
                            running[submit(self.measurers[device], built)] = (task, candidate, sch, device)
                    if not running:
                        break
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        task, candidate, sch, device = running[future]
                        try:
                            result = future.result()
                        except DeviceLost:  # the measurer waited for it in vain: the others take over
                            del running[future]
                            candidate.cost, candidate.error = None, ""
                            queue.insert(0, (task, candidate))
                            if not free and not running:
                                self.save_progress()
                                raise
                            continue
                        except Exception as exc:  # the candidate failed to build or run: recorded, skipped
                            result = exc
                        del running[future]
                        self._record(task, candidate, sch, result, self._name(device))
                        free.append(device)
            except BaseException:  # Ctrl-C, SIGTERM, no device left: a resumed run measures these
                for _, candidate, _, _ in running.values():
                    candidate.cost, candidate.error = None, ""
                self.save_progress()
                raise
        return not ended

    def _name(self, device: int) -> str:
        return getattr(self.measurers[device], "name", f"measurer {device + 1}")

    def _prepare(self, task: Task, candidate: Candidate):
        """The candidate's schedule, with the candidate saved as pending; None (recorded as failed)
        when the template refuses its knobs."""
        from tvm import s_tir

        from mnv3compile.schedules.kernels.dispatch import schedule_kernel

        candidate.error = PENDING  # until it ends otherwise: a resumed run counts it failed
        self.save_progress()
        try:
            sch = s_tir.Schedule(self.funcs[task.name])
            candidate.template = schedule_kernel(sch, self.isa, fixed_knobs(sch, candidate.knobs)).name
        except Exception as exc:
            self._record(task, candidate, None, exc, "")
            return None
        return sch

    def _record(self, task: Task, candidate: Candidate, sch, result, device: str) -> None:
        """A candidate's result (its cost in ``unit``, or the exception that failed it) into the progress
        file and, when timed, the database."""
        import tvm
        from tvm.s_tir import meta_schedule as ms

        if isinstance(result, Exception):
            first_line = (str(result).strip().splitlines() or [""])[0][:200]
            candidate.cost, candidate.error = None, f"{type(result).__name__}: {first_line}"
        else:
            candidate.cost, candidate.error = result, ""
            self.per_device[device] += 1
        self.trials += 1
        if candidate is task.candidates[0]:
            task.default_cost = candidate.cost
        if candidate.cost is not None:
            func = self.funcs[task.name]
            workload = self.database.commit_workload(tvm.IRModule({"main": func}))
            self.database.commit_tuning_record(ms.database.TuningRecord(
                sch.trace, workload, [candidate.cost * SECONDS_PER_UNIT[self.unit]], self.target,
                ms.arg_info.ArgInfo.from_prim_func(func)))
        self.save_progress()
        self.on_progress(self)

    def report(self) -> dict:
        rows = []
        for task in self.tasks:
            best = task.best()
            rows.append({"task": task.name, "kernels": task.weight,
                         "candidates": len(task.candidates),
                         "measured": sum(self.measured(c) for c in task.candidates),
                         "failed": sum(bool(c.error) for c in task.candidates),
                         "default": task.default_cost, "best": best.cost if best else None,
                         "best_template": best.template if best else None})
        return {"unit": self.unit, "tasks": rows, "trials_this_run": self.trials,
                "total_default": self.estimated_total(False), "total_tuned": self.estimated_total(True)}


def _run_here(measure, scheduled):
    """``measure(scheduled)`` in this thread, as a finished Future (what a pool would give)."""
    from concurrent.futures import Future

    future = Future()
    try:
        future.set_result(measure(scheduled))
    except BaseException as exc:  # re-raised by result(), where the tuner handles it
        future.set_exception(exc)
    return future
