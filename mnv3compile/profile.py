"""Per-kernel time of a compiled bundle, from the Relax VM's call instrumentation.

Each VM call (a kernel, or a VM built-in such as an allocation) is timed on its own, the network
run ``runs`` times and the median per call kept. What the table cannot see is the time between
calls (the VM's own dispatch), so the whole run is timed too, without the instrument: the
difference is shown as "outside kernels". The instrument is a Python callback, a few microseconds
a call, part of which lands inside each timed window: the instrumented run's total says how much.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class KernelTime:
    kernel: str
    template: str  # the template that scheduled it, or "default schedule" / "VM built-in"
    calls: int
    microseconds: float  # per inference, all its calls


@dataclass
class Profile:
    kernels: list[KernelTime]  # slowest first
    total_ms: float  # one inference, uninstrumented (median)
    instrumented_ms: float  # one inference with every call timed: the difference is the timer's cost

    @property
    def kernel_ms(self) -> float:
        return sum(k.microseconds for k in self.kernels if k.template != "VM built-in") / 1e3

    def to_json(self) -> dict:
        return {"total_ms": self.total_ms, "kernel_ms": self.kernel_ms, "instrumented_ms": self.instrumented_ms,
                "kernels": [k.__dict__ for k in self.kernels]}


def profile_vm(vm, inputs: list, templates: dict[str, str], runs: int = 20) -> Profile:
    """``vm``'s ``main`` on ``inputs``: per-call medians and the uninstrumented total."""
    samples: dict[str, list[float]] = defaultdict(list)
    started: dict[str, float] = {}
    per_run: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)

    def instrument(func, symbol, before_run, ret_value, *args):
        now = time.perf_counter()
        if before_run:
            started[symbol] = now
        else:
            per_run[symbol] += now - started.pop(symbol, now)
            counts[symbol] += 1
        return 0  # VMInstrumentReturnKind.NO_OP

    vm["main"](*inputs)  # warm up
    totals = []
    for _ in range(runs):
        begin = time.perf_counter()
        vm["main"](*inputs)
        totals.append(time.perf_counter() - begin)
    vm.set_instrument(instrument)
    calls_per_run, instrumented = {}, []
    for _ in range(runs):
        per_run.clear()
        counts.clear()
        begin = time.perf_counter()
        vm["main"](*inputs)
        instrumented.append(time.perf_counter() - begin)
        for symbol, seconds in per_run.items():
            samples[symbol].append(seconds)
        calls_per_run = dict(counts)
    vm.set_instrument(lambda *args: 0)
    kernels = [KernelTime(symbol, templates.get(symbol, "VM built-in" if symbol.startswith("vm.") else "default schedule"),
                          calls_per_run.get(symbol, 0), float(np.median(times)) * 1e6)
               for symbol, times in samples.items()]
    kernels.sort(key=lambda k: -k.microseconds)
    return Profile(kernels, float(np.median(totals)) * 1e3, float(np.median(instrumented)) * 1e3)


def profile_runner(runner, runs: int = 20, seed: int = 0) -> Profile:
    """A host bundle's per-kernel profile on a random input, on its runner's threads
    (``runner.BundleRunner``, which refuses a bundle built for another machine)."""
    import tvm

    from mnv3compile import threads

    threads.configure(runner.threads, runner.affinity)  # this thread's pool, as the runner's calls have it
    vm = runner.vm
    rng = np.random.default_rng(seed)
    inputs = [tvm.runtime.tensor(rng.standard_normal(i["shape"]).astype(i["dtype"])) for i in runner.manifest["inputs"]]
    return profile_vm(vm, inputs, runner.manifest.get("templates") or {}, runs)


def plot(profile: Profile, path: Path, title: str, top: int = 25) -> None:
    """A horizontal bar chart of the slowest kernels (share of the inference), as a PNG."""
    from PIL import Image, ImageDraw

    rows = profile.kernels[:top]
    total_us = profile.total_ms * 1e3
    width, bar_x, row_h = 1100, 520, 22
    image = Image.new("RGB", (width, 40 + row_h * len(rows)), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 10), f"{title}: {profile.total_ms:.2f} ms per inference", fill="black")
    longest = max((k.microseconds for k in rows), default=1.0)
    for i, k in enumerate(rows):
        y = 35 + i * row_h
        draw.text((10, y + 4), f"{k.template[:40]:40s} {k.kernel[:28]}", fill="black")
        length = int((width - bar_x - 120) * k.microseconds / longest)
        draw.rectangle([bar_x, y + 3, bar_x + length, y + row_h - 3], fill=(70, 110, 180))
        draw.text((bar_x + length + 6, y + 4), f"{k.microseconds:.0f} us {100 * k.microseconds / total_us:.1f}%",
                  fill="black")
    image.save(path)
