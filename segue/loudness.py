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
# Frames filtered at a time by integrated_lufs (~24 s at 44.1 kHz).
CHUNK_FRAMES = 1 << 20
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
    filter pass for all channels, run in chunks, and cumulative sums for the blocks (see
    `cumulative_power`: memory stays bounded for hours of audio). With `weights` (one per
    frame, >= 0), each block's power counts in proportion to the mean weight over the block:
    the loudness of the audio as heard through a gain curve, independent of the curve's level.
    """
    frames = audio.shape[1]
    block = int(MIN_BLOCK_S * rate_hz)
    if frames < block:
        return short_term_lufs(audio, rate_hz)
    step = MIN_BLOCK_S * 0.25
    n_blocks = int(np.round((frames / rate_hz - MIN_BLOCK_S) / step)) + 1
    lower = (np.arange(n_blocks) * step * rate_hz).astype(np.int64)
    upper = np.minimum(lower + block, frames)
    edges = np.union1d(lower, upper)
    power = cumulative_power(audio, rate_hz, edges)
    # Mean square per channel and block.
    z = (power[:, np.searchsorted(edges, upper)] - power[:, np.searchsorted(edges, lower)]) / block
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


def cumulative_power(audio: FloatArray, rate_hz: int, at: npt.NDArray[np.int64]
                     ) -> npt.NDArray[np.float64]:
    """Per channel, the sum of the K-weighted squared samples before each frame in `at`
    (sorted, 0..frames): [channels, len(at)].

    The filter runs over CHUNK_FRAMES at a time with its state carried across, so the float64
    temporaries stay a few MiB however long the audio is (a whole mix is hours).
    """
    sos = k_weighting_sos(rate_hz)
    state = np.zeros((sos.shape[0], audio.shape[0], 2))
    out = np.zeros((audio.shape[0], at.size))
    total = np.zeros(audio.shape[0])
    done = int(np.searchsorted(at, 0, side="right"))  # frame 0: nothing before it
    for start in range(0, audio.shape[1], CHUNK_FRAMES):
        weighted, state = sosfilt(sos, audio[:, start : start + CHUNK_FRAMES], axis=1, zi=state)
        running = np.cumsum(weighted * weighted, axis=1)
        running += total[:, None]
        end = start + weighted.shape[1]
        upto = int(np.searchsorted(at, end, side="right"))
        out[:, done:upto] = running[:, at[done:upto] - start - 1]
        total = running[:, -1].copy()
        done = upto
    return out


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
