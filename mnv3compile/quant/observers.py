"""Activation range observers: min-max (optionally a moving average), percentile and entropy (KL).

Percentile and entropy need a histogram over a range fixed in advance, so calibration makes two
passes: the first records each tensor's min/max, the second fills histograms over [min, max].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METHODS = ("minmax", "percentile", "entropy")
HISTOGRAM_BINS = 2048


class NoFiniteValues(ValueError):
    """Every value a tensor took on the calibration data was NaN or infinite (or there was none)."""


@dataclass
class RangeObserver:
    """Collects what the chosen method needs about one tensor and returns its (low, high) range."""

    method: str = "minmax"
    percentile: float = 99.99
    moving_average: float | None = None  # momentum of per-batch min/max, e.g. 0.9
    low: float = np.inf
    high: float = -np.inf
    histogram: np.ndarray | None = None
    edges: np.ndarray | None = None

    @property
    def needs_histogram(self) -> bool:
        return self.method in ("percentile", "entropy")

    def observe_range(self, values: np.ndarray) -> None:
        values = values[np.isfinite(values)]  # a NaN or inf would poison the range (broken weights)
        if values.size == 0:
            return
        low, high = float(values.min()), float(values.max())
        if self.moving_average is not None and np.isfinite(self.low):
            m = self.moving_average
            self.low, self.high = m * self.low + (1 - m) * low, m * self.high + (1 - m) * high
        else:
            self.low, self.high = min(self.low, low), max(self.high, high)

    def observe_histogram(self, values: np.ndarray) -> None:
        if not np.isfinite(self.low):  # no finite value in the range pass: range() says so
            return
        if self.histogram is None:
            if self.method == "entropy":  # a histogram of |x|, as the KL threshold search expects
                low, high = 0.0, max(abs(self.low), abs(self.high), 1e-12)
            else:
                low, high = self.low, self.low + max(self.high - self.low, 1e-12)
            self.edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
            self.histogram = np.zeros(HISTOGRAM_BINS, np.int64)
        values = values[np.isfinite(values)]
        if self.method == "entropy":
            values = np.abs(values)
        counts, _ = np.histogram(np.clip(values, self.edges[0], self.edges[-1]), bins=self.edges)
        self.histogram += counts

    def range(self) -> tuple[float, float]:
        if not (np.isfinite(self.low) and np.isfinite(self.high)):
            raise NoFiniteValues("observer saw no finite value")
        if self.method == "minmax" or self.histogram is None:
            return self.low, self.high
        if self.method == "percentile":
            return _percentile_range(self.histogram, self.edges, self.percentile)
        threshold = _entropy_threshold(self.histogram, self.edges)
        return max(self.low, -threshold), min(self.high, threshold)


def _percentile_range(histogram: np.ndarray, edges: np.ndarray, percentile: float) -> tuple[float, float]:
    """Clip the lower and upper (100 - p)% tails, each side alone (activations are skewed)."""
    cdf = np.cumsum(histogram) / max(histogram.sum(), 1)
    tail = (100.0 - percentile) / 100.0
    lo_index = int(np.searchsorted(cdf, tail, side="left"))
    hi_index = int(np.searchsorted(cdf, 1.0 - tail, side="left"))
    low = edges[lo_index] if edges[0] < 0 else edges[0]  # never clip a non-negative range from below
    return float(min(low, 0.0)), float(max(edges[min(hi_index + 1, len(edges) - 1)], 0.0))


def _entropy_threshold(histogram: np.ndarray, edges: np.ndarray, levels: int = 128) -> float:
    """TensorRT's KL search on the histogram of |x|: the clip threshold whose quantization to
    ``levels`` steps (int8 has 128 per side) keeps the distribution closest to the original."""
    total = histogram.astype(np.float64)
    # ReLU-like activations pile up at exactly 0; that spike would dominate the divergence and
    # pull the threshold far down, so it counts as much as its neighbour (as TensorRT's tools do).
    total[0] = total[1]
    best_stop, best_kl = len(total), np.inf
    for stop in range(levels, len(total) + 1, 8):
        kept = total[:stop]
        p = kept.copy()
        p[-1] += total[stop:].sum()  # the reference keeps the clipped tail, in its last bin
        if p.sum() == 0:
            continue
        # The candidate quantizes only the kept bins: what clipping loses shows up as divergence.
        starts = np.linspace(0, stop, levels + 1).astype(int)[:-1]
        sums = np.add.reduceat(kept, starts)
        nonzero = np.add.reduceat((kept > 0).astype(np.float64), starts)
        widths = np.diff(np.append(starts, stop))
        per_bin = np.repeat(np.where(nonzero > 0, sums / np.maximum(nonzero, 1), 0.0), widths)
        q = np.where(kept > 0, per_bin, 0.0)
        mask = p > 0
        p_n, q_n = p / p.sum(), q / max(q.sum(), 1e-30)
        kl = float(np.sum(p_n[mask] * np.log(p_n[mask] / np.maximum(q_n[mask], 1e-30))))
        if kl < best_kl:
            best_stop, best_kl = stop, kl
    return float(edges[best_stop])
