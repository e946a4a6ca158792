"""Activation range observers: min-max (optionally a moving average), percentile, entropy (KL) and
MSE-optimal clipping; ``auto`` keeps what all of them need and offers each one's range as a
candidate (``quant/auto_ranges.py`` picks one per tensor).

Every method but min-max needs a histogram over a range fixed in advance, so calibration makes two
passes: the first records each tensor's min/max, the second fills histograms over [min, max].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METHODS = ("auto", "minmax", "percentile", "entropy", "mse")
HISTOGRAM_BINS = 2048
# What ``auto`` chooses among, by name; the first is taken when several give the same error. Not
# ``mse``: it wins the local comparison most often (its clipping costs the reader little), but its
# clipping error is systematic and adds up over the later layers: on the PaddleOCR classifier it
# lowered top-1 agreement and on EfficientNet-Lite0 the output SQNR (README, quantize).
AUTO_PERCENTILES = (99.99, 99.9, 99.999)
AUTO_CANDIDATES = tuple(f"percentile {p:g}" for p in AUTO_PERCENTILES) + ("minmax", "entropy")


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
    histogram: np.ndarray | None = None  # of x over [low, high] (percentile, mse)
    edges: np.ndarray | None = None
    abs_histogram: np.ndarray | None = None  # of |x| over [0, max |x|] (entropy)
    abs_edges: np.ndarray | None = None

    @property
    def needs_histogram(self) -> bool:
        return self.method != "minmax"

    @property
    def _signed(self) -> bool:
        return self.method in ("percentile", "mse", "auto")  # auto: its percentiles

    @property
    def _absolute(self) -> bool:
        return self.method in ("entropy", "auto")

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
        values = values[np.isfinite(values)]
        if self._signed:
            if self.histogram is None:
                self.edges = np.linspace(self.low, self.low + max(self.high - self.low, 1e-12), HISTOGRAM_BINS + 1)
                self.histogram = np.zeros(HISTOGRAM_BINS, np.int64)
            self.histogram += _uniform_histogram(values, self.edges)
        if self._absolute:  # a histogram of |x|, as the KL threshold search expects
            if self.abs_histogram is None:
                self.abs_edges = np.linspace(0.0, max(abs(self.low), abs(self.high), 1e-12), HISTOGRAM_BINS + 1)
                self.abs_histogram = np.zeros(HISTOGRAM_BINS, np.int64)
            self.abs_histogram += _uniform_histogram(np.abs(values), self.abs_edges)

    def candidates(self) -> dict[str, tuple[float, float]]:
        """Method name -> (low, high): the one method's, or each of ``AUTO_CANDIDATES`` for auto."""
        if not (np.isfinite(self.low) and np.isfinite(self.high)):
            raise NoFiniteValues("observer saw no finite value")
        if self.method == "minmax" or (self.histogram is None and self.abs_histogram is None):
            return {"minmax": (self.low, self.high)}
        if self.method == "percentile":
            return {f"percentile {self.percentile:g}": _percentile_range(self.histogram, self.edges, self.percentile)}
        if self.method == "entropy":
            return {"entropy": self._entropy_range()}
        if self.method == "mse":
            return {"mse": _mse_range(self.histogram, self.edges)}
        found = {f"percentile {p:g}": _percentile_range(self.histogram, self.edges, p) for p in AUTO_PERCENTILES}
        found.update(minmax=(self.low, self.high), entropy=self._entropy_range())
        return found

    def _entropy_range(self) -> tuple[float, float]:
        threshold = _entropy_threshold(self.abs_histogram, self.abs_edges)
        return max(self.low, -threshold), min(self.high, threshold)


def _uniform_histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in the equal bins ``edges`` (values outside go to the end bins). A bin count and a
    range take numpy's uniform-bin path, much faster than an array of edges (which sorts)."""
    clipped = np.clip(values, edges[0], edges[-1])
    return np.histogram(clipped, bins=len(edges) - 1, range=(float(edges[0]), float(edges[-1])))[0]


def _mse_range(histogram: np.ndarray, edges: np.ndarray, steps: int = 256) -> tuple[float, float]:
    """The clipping range [low, high] (each end a fraction of the observed one, searched on a grid)
    with the least expected squared error of int8 quantization: values inside lose step^2/12 to
    rounding, values outside their distance to the nearer end."""
    centers = (edges[:-1] + edges[1:]) / 2
    counts = histogram.astype(np.float64)
    low0, high0 = min(float(edges[0]), 0.0), max(float(edges[-1]), 0.0)
    fractions = np.linspace(0.2, 1.0, 41)
    lows = low0 * fractions if low0 < 0 else np.zeros(1)
    best, best_error = (low0, high0), np.inf
    for low in lows:
        highs = high0 * fractions
        step = (highs - low) / (steps - 1)
        below = np.clip(low - centers, 0, None)
        above = np.clip(centers[None, :] - highs[:, None], 0, None)
        inside = (centers[None, :] >= low) & (centers[None, :] <= highs[:, None])
        errors = (counts * (below ** 2)).sum() + (counts[None, :] * above ** 2).sum(axis=1) \
            + (counts[None, :] * inside).sum(axis=1) * step ** 2 / 12
        index = int(np.argmin(errors))
        if errors[index] < best_error:
            best, best_error = (float(low), float(highs[index])), float(errors[index])
    return best


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
