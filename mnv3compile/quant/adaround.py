"""AdaRound: each weight rounded up or down so that the layer's output on the calibration data
changes least (Nagel et al., "Up or Down? Adaptive Rounding for Post-Training Quantization", 2020).

Rounding to nearest minimizes each weight's own error, not the layer's: errors of weights that
read correlated inputs add up or cancel. For a linear layer the output error of rounding W to
W~ is (W~ - W) x, whose mean square over the data is, per output channel f,
d_f^T G d_f with d_f = W~_f - W_f and G = E[x x^T] the second moment of what the layer's taps
read (a K x K matrix, K = input channels per group x kernel taps; per group for grouped and
depthwise convs). So the data enters only through G, accumulated once during calibration
(``gram_sums``), and the optimization runs on G alone: W~ = s * (floor(W / s) + h(V)) with the
paper's rectified sigmoid h, Adam on V, and the regularizer sum(1 - |2h - 1|^beta) that pushes
every h to 0 or 1 as beta anneals from 20 to 2. The layer's float input is used (the paper's
simplest variant) and its activation function is left out (a linear reconstruction).
"""

from __future__ import annotations

import numpy as np

from mnv3compile.quant.bias_correction import ConvGeometry

ZETA, GAMMA = 1.1, -0.1  # the rectified sigmoid's stretch
REGULARIZATION = 0.01  # lambda
ITERATIONS = 500  # full-batch gradients (G is exact), so far fewer than the paper's 10k
WARMUP = 0.2  # share of iterations without the regularizer
BETA = (20.0, 2.0)
LEARNING_RATE = 0.01
POSITIONS_PER_SAMPLE = 2048  # output positions a sample adds to G (evenly spaced; bounds the cost)


def patches(x: np.ndarray, geometry: ConvGeometry | None, groups: int) -> np.ndarray:
    """What the layer's taps read at (up to POSITIONS_PER_SAMPLE per sample) output positions, as
    (groups, K, positions); K ordered as the weight's (input channel, kernel row, kernel column)."""
    x = np.nan_to_num(x.astype(np.float32, copy=False))
    if geometry is None:  # a matrix layer, channels last
        flat = x.reshape(-1, x.shape[-1])
        return flat[_evenly(len(flat), POSITIONS_PER_SAMPLE * max(1, x.shape[0]))].T[None]
    (kh, kw), (sh, sw), (top, left, bottom, right), (dh, dw) = (geometry.kernel, geometry.strides, geometry.pads,
                                                                geometry.dilations)
    padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    out_h = (padded.shape[2] - dh * (kh - 1) - 1) // sh + 1
    out_w = (padded.shape[3] - dw * (kw - 1) - 1) // sw + 1
    chosen = _evenly(out_h * out_w, POSITIONS_PER_SAMPLE)
    rows, columns = chosen // out_w, chosen % out_w
    taps = np.empty((x.shape[0], x.shape[1], kh, kw, len(chosen)), np.float32)
    for i in range(kh):
        for j in range(kw):
            taps[:, :, i, j] = padded[:, :, rows * sh + i * dh, columns * sw + j * dw]
    taps = taps.reshape(x.shape[0], groups, -1, len(chosen))  # N x G x K x P
    return taps.transpose(1, 2, 0, 3).reshape(groups, taps.shape[2], -1)


def _evenly(total: int, most: int) -> np.ndarray:
    return np.arange(total) if total <= most else np.linspace(0, total - 1, most).astype(np.int64)


def gram_sums(x: np.ndarray, geometry: ConvGeometry | None, groups: int) -> tuple[np.ndarray, int]:
    """Sum of x x^T over the sampled positions (groups x K x K, float64) and how many were summed."""
    taps = patches(x, geometry, groups).astype(np.float64)
    return taps @ taps.transpose(0, 2, 1), taps.shape[2]


def _rectified_sigmoid(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """h(V) and dh/dV (0 where the clip holds)."""
    sigmoid = 1.0 / (1.0 + np.exp(-v))
    stretched = sigmoid * (ZETA - GAMMA) + GAMMA
    inside = (stretched > 0) & (stretched < 1)
    return np.clip(stretched, 0, 1), np.where(inside, sigmoid * (1 - sigmoid) * (ZETA - GAMMA), 0.0)


def adaround(weight: np.ndarray, scales: np.ndarray, second_moment: np.ndarray, qmax: int,
             iterations: int = ITERATIONS) -> np.ndarray:
    """Integer weights (same layout as ``weight``: groups x outputs per group x K) rounded to
    minimize the output error under ``second_moment`` (groups x K x K, E[x x^T]); ``scales`` per
    output (groups x outputs per group)."""
    w = weight.astype(np.float64) / scales[..., None]
    floor = np.floor(w)
    rest = np.clip(w - floor, 0.01, 0.99)
    v = -np.log((ZETA - GAMMA) / (rest - GAMMA) - 1)  # h(v) = rest: start where nearest rounding is
    # Normalized so that lambda means the same for every layer: the error relative to what
    # nearest rounding leaves.
    nearest = np.round(w) - w
    scale = max(float(np.sum((nearest @ second_moment) * nearest)), 1e-30)
    moment32 = second_moment.astype(np.float32)
    first, second = np.zeros_like(v), np.zeros_like(v)
    warmup = int(WARMUP * iterations)
    for step in range(1, iterations + 1):
        h, dh = _rectified_sigmoid(v)
        error = floor + h - w
        # batched over groups (BLAS, not einsum's loops), in float32: the gradient needs no more
        gradient = 2 * (error.astype(np.float32) @ moment32).astype(np.float64) / scale
        if step > warmup:
            progress = (step - warmup) / max(iterations - warmup, 1)
            beta = BETA[0] + (BETA[1] - BETA[0]) * progress
            centered = 2 * h - 1
            # d/dh of (1 - |2h - 1|^beta)
            gradient = gradient - REGULARIZATION * beta * np.abs(centered) ** (beta - 1) * np.sign(centered) * 2
        gradient = gradient * dh
        first = 0.9 * first + 0.1 * gradient
        second = 0.999 * second + 0.001 * gradient ** 2
        v -= LEARNING_RATE * (first / (1 - 0.9 ** step)) / (np.sqrt(second / (1 - 0.999 ** step)) + 1e-8)
    h, _ = _rectified_sigmoid(v)
    return np.clip(floor + (h >= 0.5), -qmax, qmax).astype(np.int8)


def output_error(weight: np.ndarray, q: np.ndarray, scales: np.ndarray, second_moment: np.ndarray) -> float:
    """Mean square output error of the integer weights ``q`` (the quantity AdaRound minimizes)."""
    error = q.astype(np.float64) * scales[..., None] - weight
    return float(np.sum((error @ second_moment) * error))
