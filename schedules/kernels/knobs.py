"""Template knobs: per kernel family a frozen dataclass of what its template may vary (tile shapes,
register budgets), each tunable knob with its choices; their values per ISA are rows of the ISA
table (isa.py). A template reads a knob through a ``KnobReader``: the ISA's value in an untuned
build, or a MetaSchedule ``sample_categorical`` decision while tuning (fixed to one choice by
'tune', ``FixedKnobs`` in schedules/tuning/tune.py, or sampled, ``SampledKnobs``), so a tuned
kernel's trace holds exactly the decisions its template read.

A knob whose value is None does not exist on that ISA: the template takes its fallback and no
decision is made for it.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields

Tile = tuple[int, int]  # (pixels along a row, vector registers of output channels)

PIXELS = (1, 2, 4, 7, 8)

# How a parallel kernel splits its work over the threads (read only in a parallel build): 0, its
# rows (each thread reads the rows its core wrote in the kernel before; no two threads write one
# pixel's cache lines); 1, its output-channel blocks (each thread streams half the weights).
SPLIT_ROWS, SPLIT_CHANNELS = 0, 1
# Knobs added after databases were shipped: a record from before holds no decision for them, and
# replays with their default (schedules/tuning/database.py, RecordedKnobs).
ADDED_LATER = ("split",)


def tunable(*choices, default=MISSING) -> dict:
    """A knob's choices, as field metadata: a tuple of options, or one tuple per tile dimension;
    ``default``: the value of an ISA whose row does not set it."""
    return field(default=default, metadata={"choices": choices if len(choices) > 1 else choices[0]})


@dataclass(frozen=True, kw_only=True)
class ConvKnobs:
    """The ``conv`` family (pointwise, depthwise and direct convs; one-pixel convs as GEMVs).
    ``wide_rows``: rows whose width has no divisor near the wanted pixels, and channel counts that
    would leave a 1x1 tile, get wider tiles; ``fma_registers``: float pointwise tiles chosen by the
    FMA throughput model within that many registers (0: the knob's tile); ``int8_pairs``: int8
    pointwise convs take input channels two at a time (AVX2's ``vpmaddwd``); ``split``: what
    threads split (SPLIT_ROWS, SPLIT_CHANNELS), in a parallel build."""
    pointwise: Tile = tunable(PIXELS, (1, 2, 3, 4))
    pointwise_int8: Tile | None = tunable(PIXELS, (1, 2, 3, 4))  # None: as float32
    depthwise: Tile = tunable(PIXELS, (1, 2, 3))
    conv: Tile = tunable((1, 2, 4, 7), (1, 2, 3))
    gemv: int = tunable((1, 2, 3, 4, 5, 8))  # vector registers of outputs
    wide_rows: bool = False
    fma_registers: int | None = tunable((0, 14))
    int8_pairs: bool = False
    split: int = tunable((SPLIT_ROWS, SPLIT_CHANNELS), default=SPLIT_ROWS)


@dataclass(frozen=True, kw_only=True)
class Dot4Knobs:
    """The ``dot4`` family (int8 convs and matmuls on a dot-product instruction, or smlal);
    ``split`` as ConvKnobs'."""
    dot4: Tile = tunable(PIXELS, (1, 2, 3, 4, 6, 8))
    gemv: int = tunable((1, 2, 3, 4, 5, 8))
    wide_rows: bool = False
    split: int = tunable((SPLIT_ROWS, SPLIT_CHANNELS), default=SPLIT_ROWS)


@dataclass(frozen=True, kw_only=True)
class GemvKnobs:
    """The ``gemv`` family (matmuls of one row, or a few: a GEMM)."""
    gemv: int = tunable((1, 2, 3, 4, 5, 8))


def choices_of(knobs, name: str):
    """The choices of ``knobs``' field ``name`` (None: not tunable); a KeyError for no such knob."""
    for item in fields(knobs):
        if item.name == name:
            return item.metadata.get("choices")
    raise KeyError(f"{type(knobs).__name__} has no knob {name!r}")


class KnobReader:
    """``reader.pointwise``: the knob's value for the template. This one answers the ISA's values
    (an untuned build); tuning's readers override ``read``."""

    def __init__(self, knobs):
        self.knobs = knobs

    def __getattr__(self, name: str):
        if name.startswith("_") or name == "knobs":
            raise AttributeError(name)
        default = getattr(self.knobs, name)
        if default is None:
            return None
        return self.read(name, default, choices_of(self.knobs, name))

    def read(self, name: str, default, choices):
        return default


def decide(sch, options, index: int | None = None) -> int:
    """A ``sample_categorical`` decision over ``options`` (uniform), fixed to ``index`` if given."""
    options = list(options)
    decision = sch.sample_categorical(options, [1.0 / len(options)] * len(options), decision=index)
    return int(sch.get(decision))


class SampledKnobs(KnobReader):
    """Each tunable knob sampled when first read (MetaSchedule's own search); the others as the ISA
    has them."""

    def __init__(self, knobs, sch):
        super().__init__(knobs)
        self.sch, self.values = sch, {}

    def read(self, name: str, default, choices):
        if choices is None:
            return default
        if name not in self.values:
            if isinstance(choices[0], tuple):
                self.values[name] = tuple(decide(self.sch, options) for options in choices)
            else:
                self.values[name] = decide(self.sch, choices)
        return self.values[name]
