"""Equalisation for transitions: the bass split for the bass swap, and a high-pass sweep."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.signal import butter, sosfilt

FloatArray = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

# Kick drums and bass lines live below ~150 Hz; DJ mixers put the low shelf about here.
BASS_CUTOFF_HZ = 150.0
SWEEP_START_HZ = 30.0
SWEEP_END_HZ = 1500.0


def low_pass(audio: FloatArray, rate_hz: int, cutoff_hz: float = BASS_CUTOFF_HZ) -> FloatArray:
    """The low band of [channels, frames] audio, zero-phase, taken as silent outside it.

    A second-order Butterworth run forwards then backwards (|H|^2, 24 dB/octave, -6 dB at
    the cutoff, no phase shift) over the audio padded with 0.1 s of silence, in float32.
    Being zero-phase, the high band can be the plain difference: `split_bass`.
    """
    sos = butter(2, cutoff_hz, btype="low", fs=rate_hz, output="sos").astype(np.float32)
    margin = int(0.1 * rate_hz)
    padded = np.zeros((audio.shape[0], audio.shape[1] + 2 * margin), dtype=np.float32)
    padded[:, margin : margin + audio.shape[1]] = audio
    forward = sosfilt(sos, padded, axis=1)
    backward = sosfilt(sos, forward[:, ::-1], axis=1)[:, ::-1]
    out: FloatArray = np.ascontiguousarray(backward[:, margin : margin + audio.shape[1]])
    return out


def low_band_weight(freqs_hz: F64, cutoff_hz: float = BASS_CUTOFF_HZ) -> F64:
    """The share of each frequency's amplitude that `low_pass` keeps (the high band has the rest).

    |H|^2 of the second-order Butterworth, as run forwards and backwards: 1 / (1 + (f/fc)^4).
    """
    out: F64 = 1.0 / (1.0 + (freqs_hz / cutoff_hz) ** 4)
    return out


def split_bass(
    audio: FloatArray, rate_hz: int, cutoff_hz: float = BASS_CUTOFF_HZ
) -> tuple[FloatArray, FloatArray]:
    """(low, high) bands of [channels, frames] audio whose sum is exactly the input.

    The bass swap weights these two bands separately: with gains g_low and g_high the audio
    becomes g_high * x + (g_low - g_high) * low, which is flat wherever the gains are equal.
    """
    low = low_pass(audio, rate_hz, cutoff_hz)
    return low, (audio - low).astype(np.float32)


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
