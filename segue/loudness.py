"""Loudness per ITU-R BS.1770 with pyloudnorm's filters: integrated and short-term."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import pyloudnorm
from scipy.signal import sosfilt

FloatArray = npt.NDArray[np.float32]

MIN_BLOCK_S = 0.4
# Never raise a near-silent excerpt by more than this: it would only amplify noise.
MAX_GAIN_DB = 24.0


@lru_cache(maxsize=8)
def k_weighting_sos(rate_hz: int) -> npt.NDArray[np.float64]:
    """pyloudnorm's BS.1770 K-weighting (shelf, then high-pass) as second-order sections."""
    meter = pyloudnorm.Meter(rate_hz)
    rows = []
    for stage in meter._filters.values():  # the meter's own coefficients, not a re-derivation
        b, a = np.asarray(stage.b, dtype=np.float64), np.asarray(stage.a, dtype=np.float64)
        rows.append(np.concatenate([b * stage.passband_gain / a[0], a / a[0]]))
    return np.array(rows)


def integrated_lufs(
    audio: FloatArray, rate_hz: int, weights: npt.NDArray[np.float64] | None = None
) -> float:
    """Integrated, gated loudness (BS.1770-4) of stereo [channels, frames]; -inf for silence.

    The same computation as pyloudnorm's Meter.integrated_loudness (its filters, 400 ms
    blocks with 75% overlap, -70 LUFS absolute and -10 LU relative gates), vectorised: one
    filter call for all channels and cumulative sums for the blocks. With `weights` (one per
    frame, >= 0), each block's power counts in proportion to the mean weight over the block:
    the loudness of the audio as heard through a gain curve, independent of the curve's level.
    """
    frames = audio.shape[1]
    block = int(MIN_BLOCK_S * rate_hz)
    if frames < block:
        return short_term_lufs(audio, rate_hz)
    weighted = sosfilt(k_weighting_sos(rate_hz), audio, axis=1)
    power = np.concatenate([np.zeros((audio.shape[0], 1)), np.cumsum(weighted**2, axis=1)], axis=1)
    step = MIN_BLOCK_S * 0.25
    n_blocks = int(np.round((frames / rate_hz - MIN_BLOCK_S) / step)) + 1
    lower = (np.arange(n_blocks) * step * rate_hz).astype(np.int64)
    upper = np.minimum(lower + block, frames)
    z = (power[:, upper] - power[:, lower]) / block  # mean square per channel and block
    total = z.sum(axis=0)
    if weights is None:
        w = np.ones(n_blocks)
    else:
        cw = np.concatenate([[0.0], np.cumsum(weights, dtype=np.float64)])
        w = (cw[upper] - cw[lower]) / block
    with np.errstate(divide="ignore"):
        block_lufs = -0.691 + 10.0 * np.log10(total)
    gated = (block_lufs >= -70.0) & (w > 0)
    if not gated.any():
        return -math.inf
    relative = -0.691 + 10.0 * np.log10(np.average(total[gated], weights=w[gated])) - 10.0
    keep = gated & (block_lufs > relative)
    return float(-0.691 + 10.0 * np.log10(np.average(total[keep], weights=w[keep])))


def short_term_lufs(audio: FloatArray, rate_hz: int) -> float:
    """Ungated loudness of the whole slice as one block (3 s slices give short-term loudness).

    pyloudnorm's one-block measurement, computed directly: its Meter with a block as long as
    the slice refuses some lengths, as frames / rate * rate can round to just above frames.
    """
    frames = audio.shape[1]
    if frames < 64:
        return -math.inf
    weighted = sosfilt(k_weighting_sos(rate_hz), audio.astype(np.float64), axis=1)
    total = float(np.mean(np.square(weighted), axis=1).sum())
    if total <= 0.0:
        return -math.inf
    return -0.691 + 10.0 * math.log10(total)


def gain_to_target(measured_lufs: float, target_lufs: float) -> float:
    """Linear gain that brings `measured_lufs` to `target_lufs` (bounded for silence)."""
    if not math.isfinite(measured_lufs):
        return 1.0
    return float(10.0 ** (min(target_lufs - measured_lufs, MAX_GAIN_DB) / 20.0))
