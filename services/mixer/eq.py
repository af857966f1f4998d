"""Equalisation for transitions: the bass split for the bass swap, and a high-pass sweep."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.signal import butter, sosfilt, sosfiltfilt

FloatArray = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

# Kick drums and bass lines live below ~150 Hz; DJ mixers put the low shelf about here.
BASS_CUTOFF_HZ = 150.0
SWEEP_START_HZ = 30.0
SWEEP_END_HZ = 1500.0


def split_bass(
    audio: FloatArray, rate_hz: int, cutoff_hz: float = BASS_CUTOFF_HZ
) -> tuple[FloatArray, FloatArray]:
    """(low, high) bands of [channels, frames] audio whose sum is exactly the input.

    The low band is zero-phase (forward-backward Butterworth), so the high band can be the
    plain difference without phase smearing between the two.
    """
    sos = butter(2, cutoff_hz, btype="low", fs=rate_hz, output="sos")
    low = sosfiltfilt(sos, audio, axis=1).astype(np.float32)
    return low, (audio - low).astype(np.float32)


def low_band(
    audio: FloatArray, rate_hz: int, lo: int, hi: int, cutoff_hz: float = BASS_CUTOFF_HZ
) -> FloatArray:
    """The low band (as `split_bass`) of audio[:, lo:hi], filtered with real audio around it.

    The filter runs over a margin of the surrounding audio, so the excerpt's edges carry no
    start-up transient; the Butterworth's response has died out well within 0.1 s.
    """
    margin = int(0.1 * rate_hz)
    a, b = max(0, lo - margin), min(audio.shape[1], hi + margin)
    sos = butter(2, cutoff_hz, btype="low", fs=rate_hz, output="sos")
    low = sosfiltfilt(sos, audio[:, a:b], axis=1)
    out: FloatArray = low[:, lo - a : hi - a].astype(np.float32)
    return out


def highpass_sweep(audio: FloatArray, rate_hz: int, progress: F64) -> FloatArray:
    """High-passes the audio with a cutoff rising from 30 Hz to 1.5 kHz as progress goes 0 to 1.

    `progress` has one value per frame; where it is 0 the audio passes untouched. The cutoff
    moves exponentially (even steps in pitch). A time-varying biquad would need a Python loop
    per block; instead a bank of fixed filters a third of an octave apart runs at C speed and
    the output slides between the two filters nearest the current cutoff.
    """
    p = np.clip(progress, 0.0, 1.0)
    if not np.any(p > 0.0):
        return audio.copy()
    octaves = np.log2(SWEEP_END_HZ / SWEEP_START_HZ)
    n_bands = int(np.ceil(octaves * 3)) + 1
    cutoffs = SWEEP_START_HZ * 2.0 ** np.linspace(0.0, octaves, n_bands)
    position = p * (n_bands - 1)
    lower = np.minimum(position.astype(np.int64), n_bands - 2)
    frac = (position - lower).astype(np.float32)
    out = np.zeros_like(audio)
    for band in range(n_bands):
        weight = np.where(lower == band, 1.0 - frac, 0.0) + np.where(lower + 1 == band, frac, 0.0)
        used = np.flatnonzero(weight > 0.0)
        if used.size == 0:
            continue
        lo, hi = int(used[0]), int(used[-1]) + 1
        # Start the filter a little early so its transient has died out when it is heard.
        warm = max(0, lo - int(0.05 * rate_hz))
        sos = butter(2, cutoffs[band], btype="high", fs=rate_hz, output="sos")
        filtered = sosfilt(sos, audio[:, warm:hi], axis=1)[:, lo - warm :]
        out[:, lo:hi] += (filtered * weight[lo:hi]).astype(np.float32)
    untouched = p <= 0.0
    out[:, untouched] = audio[:, untouched]
    return out
