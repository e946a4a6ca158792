"""One tuning run, from its options to its report: what 'mnv3compile tune' does between parsing its
options and printing the outcome.

A ``TuningSession`` is set up in steps, each of which can refuse in one line (``UserError``):

* ``TuningSession(target, measure, tracker, key)``: where candidates are measured: here (timed,
  in this process), arm64 instructions counted under qemu here, or timed on the devices behind a
  TVM RPC tracker (the stand-in phone's key when none is given);
* ``use_database(model_key, folder, resume)``: the database folder, a run already there resumed
  only when asked and only measured the same way;
* ``prepare(...)``: the kernels a build would make of the model (its first stages, then TVM's
  import and our Relax pipeline), which the ``Tuner`` groups into tasks;
* ``run(budget, measurement, ...)``: the measurers, the ``Tuner`` under the budget, then the
  report written beside the database (tuning_report.json, tuning_report.png).

Whatever ends the run (the budget, a signal, a device that does not come back) every candidate
measured is kept: ``run`` returns a ``TuningOutcome`` that says what ended it, and
``TuningOutcome.check`` raises it once the caller has shown the report. The session prints
nothing itself: what it shows while it runs goes through a ``Display`` (the command line's draws
a live table of the tasks).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mnv3compile import signals
from mnv3compile.errors import UserError
from mnv3compile.schedules.tuning.measure import DeviceLost, LocalMeasurer, Measurement, RpcMeasurer, free_devices
from mnv3compile.schedules.tuning.tune import PROGRESS_FILE, Budget, Tuner
from mnv3compile.targets.presets import TargetPreset

MEASURES = ("time", "instructions")  # how candidates are scored: measured latency, or arm64 instructions


class Display:
    """What a session shows while it runs. This one shows nothing; the command line's shows the
    slow steps, notes and a live table of the tasks."""

    def status(self, text: str) -> contextlib.AbstractContextManager:
        """A context in which a slow step runs; ``text`` says which."""
        return contextlib.nullcontext()

    def note(self, text: str) -> None:
        """Something worth knowing while it runs: devices found, lost, waited for."""

    def started(self, tuner: Tuner, folder: Path) -> None:
        """The tuner is ready: its tasks and candidates, and what was measured before."""

    def progress(self, tuner: Tuner, title: str) -> contextlib.AbstractContextManager[Callable[[Tuner], None]]:
        """The context the tuner runs in; it gives the callback called after every candidate."""
        return contextlib.nullcontext(lambda tuner: None)


@dataclass
class TuningOutcome:
    """What a run did: its report (``Tuner.report``, as tuning_report.json has it), what is left,
    and what ended it early, if anything did."""

    folder: Path
    title: str
    report: dict
    remaining: int  # candidates not measured yet: a resumed run measures them
    per_device: list[tuple[str, int]]  # candidates each device measured, when the tracker's devices did
    interrupted: BaseException | None = None  # signals.Interrupted or DeviceLost

    def check(self) -> None:
        """Raise what ended the run early: a signal as it came, a lost device as one line."""
        if isinstance(self.interrupted, DeviceLost):
            raise UserError(f"{self.interrupted}; every candidate measured before is in {self.folder}")
        if self.interrupted is not None:
            raise self.interrupted


class TuningSession:
    """One run of the tuner over a model's kernels for ``target``, candidates measured as ``measure``
    says (``MEASURES``): timed here, or on the devices registered under ``key`` at ``tracker``
    (HOST:PORT); or their arm64 instructions counted under qemu here."""

    def __init__(self, target: TargetPreset, measure: str = "time", tracker: str | None = None,
                 key: str | None = None, threads: int = 1):
        from mnv3compile import threads as pool

        if measure not in MEASURES:
            raise UserError(f"unknown measure {measure!r}; choose one of: {', '.join(MEASURES)}")
        pool.check(threads, "big")
        if threads < 1:
            raise UserError("tune --threads takes the count the app will run on, 1 or more")
        if measure == "instructions" and threads != 1:
            raise UserError("--measure instructions counts one thread's instructions; leave out --threads "
                            "(or measure time on a device with --tracker)")
        self.target, self.measure, self.tracker, self.threads = target, measure, tracker, threads
        self._check_where()
        self.key = self._device_key(key) if tracker is not None else key
        self.model_key = self.folder = self.module = self.tvm_target = None

    def _check_where(self) -> None:
        target, tracker = self.target, self.tracker
        if self.measure == "instructions":
            if target.is_host:
                raise UserError("--measure instructions counts arm64 instructions under qemu: give an arm64 "
                                "--target (arm64-android, pixel6, rpi5, ...); --target host measures time here")
            if tracker is not None:
                raise UserError("--measure instructions runs the candidates under qemu here; leave out --tracker "
                                "(or measure time on the tracker's devices without --measure)")
        elif target.is_host and tracker is not None:
            raise UserError("--tracker measures on a device: give its --target (a phone preset); --target host "
                            "measures here")
        if not target.is_host and tracker is None and self.measure == "time":
            raise UserError(f"tuning for {target.name} measures on the device: give --tracker HOST:PORT (and --key) "
                            "of a TVM RPC tracker it is registered with ('mnv3compile phone start' runs a "
                            "stand-in), or --measure instructions to count instructions under qemu here")

    def _device_key(self, key: str | None) -> str:
        from mnv3compile.phone import default_tracker, read_state

        if key is None:
            if read_state() is None:
                raise UserError("give --key: the device key your phones registered with at the tracker")
            key = default_tracker()[1]
        if not self.tracker.rpartition(":")[2].isdigit():
            raise UserError(f"--tracker takes HOST:PORT of a TVM RPC tracker, got {self.tracker!r}")
        return key

    @property
    def default_cooldown(self) -> float:
        """Seconds of pause before each candidate unless told: 1 on a device (it heats up), 0 here."""
        return 0.0 if self.tracker is None else 1.0

    @property
    def title(self) -> str:
        return f"tune {self.model_key} on {self.target.name}"

    def use_database(self, model_key: str, folder: Path | None = None, resume: bool = False) -> Path:
        """The database folder of the model ``model_key`` (``LoadedModel.key``): ``folder``, or the
        one 'build' looks in. A run there is continued only with ``resume``, measured as before."""
        from mnv3compile.schedules.tuning.database import check_measure, default_folder

        self.model_key = model_key
        self.folder = folder or default_folder(self.target.name, model_key)
        if (self.folder / PROGRESS_FILE).exists() and not resume:
            raise UserError(f"{self.folder} already holds a tuning run; add --resume to continue it, or give "
                            "another --db")
        if resume:
            check_measure(self.folder, self.measure, self.threads)
        if self.folder.exists() and not self.folder.is_dir():
            raise UserError(f"--db {self.folder}: exists and is not a folder")
        return self.folder

    def prepare(self, model, name: str, quant: str, calib=None, weight_bits: int = 8,
                int8_lowering: str = "integer") -> list[str]:
        """The kernels ``build`` would compile of ``model`` (optimized, quantized as asked, through
        TVM's import and our Relax pipeline): what the tuner measures. Returns the stages' notes."""
        from mnv3compile.pipeline import BuildRequest, deployable_model
        from mnv3compile.quant import QuantizeSettings
        from mnv3compile.tvm.build import fused_module, tvm_target

        self.tvm_target = tvm_target(self.target)
        notes: list[str] = []
        request = BuildRequest(target=self.target, output=self.folder, name=name, model=model, quant=quant,
                               calib=calib, quant_settings=QuantizeSettings(weight_bits=weight_bits))
        _, deployed, _ = deployable_model(request, notes)
        self.module, more_notes, _, _ = fused_module(deployed, self.tvm_target, int8_lowering)
        return notes + more_notes

    def _measurers(self, work: Path, measurement: Measurement, devices: int | None, device_timeout: float,
                   display: Display) -> list:
        if self.measure == "instructions":
            from mnv3compile.schedules.tuning.instructions import InstructionMeasurer

            with display.status("preparing the qemu instruction counter (built once)"):
                return [InstructionMeasurer(self.tvm_target, work)]
        if self.tracker is None:
            return [LocalMeasurer(self.tvm_target, work, measurement, self.threads)]
        from mnv3compile.targets.toolchains import toolchain_for

        count = max(1, min(devices or 10**6, free_devices(self.tracker, self.key)))
        measurers = [RpcMeasurer(self.tvm_target, toolchain_for(self.target), self.tracker, self.key,
                                 work / f"device{i}", measurement, device_timeout, log=display.note,
                                 name=f"device {i}", threads=self.threads) for i in range(1, count + 1)]
        if count > 1:
            display.note(f"{count} devices with key {self.key!r} at {self.tracker}: each measures the next "
                         "candidate when it is free")
        return measurers

    def run(self, budget: Budget, measurement: Measurement | None = None, devices: int | None = None,
            device_timeout: float = 120.0, display: Display | None = None) -> TuningOutcome:
        """Measure the prepared kernels' candidates under ``budget`` (``devices``: at most this many
        of the key's devices, each waited for ``device_timeout`` seconds when it goes away), then
        write the report. A signal or a lost device ends the run with its records kept: the outcome
        says so (``TuningOutcome.check``)."""
        from mnv3compile.schedules.kernels.isa import isa_of
        from mnv3compile.schedules.tuning.database import identity, write_identity
        from mnv3compile.tuning_report import plot

        measurement = measurement or Measurement(cooldown_s=self.default_cooldown)
        display = display or Display()
        with tempfile.TemporaryDirectory(prefix="mnv3compile-tune-") as work:
            measurers = self._measurers(Path(work), measurement, devices, device_timeout, display)
            tuner = Tuner(self.folder, self.module, self.tvm_target, isa_of(self.tvm_target), measurers)
            write_identity(self.folder, {**identity(self.target.name, self.tvm_target), "measure": self.measure,
                                         "threads": self.threads}, self.model_key)
            display.started(tuner, self.folder)
            interrupted = None
            with display.progress(tuner, self.title) as on_progress:
                tuner.on_progress = on_progress
                try:
                    tuner.run(budget)
                except (signals.Interrupted, DeviceLost) as exc:
                    interrupted = exc
                finally:
                    for measurer in measurers:
                        if isinstance(measurer, RpcMeasurer):
                            measurer.close()
        report = tuner.report()
        (self.folder / "tuning_report.json").write_text(json.dumps(report, indent=1) + "\n")
        plot(report, self.folder / "tuning_report.png", self.title)
        remaining = sum(not Tuner.measured(c) for t in tuner.tasks for c in t.candidates)
        per_device = ([(measurer.name, tuner.per_device[measurer.name]) for measurer in measurers]
                      if self.tracker is not None and tuner.per_device else [])
        return TuningOutcome(self.folder, self.title, report, remaining, per_device, interrupted)
