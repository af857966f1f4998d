"""Tempo from the onset envelope: windowed autocorrelation (a tempogram) with a tempo prior."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.fft
import scipy.ndimage

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

MIN_BPM = 40.0
MAX_BPM = 240.0
# The preferred metrical level: Tempo.bpm resolves half/double time towards 70-180 BPM.
PRIOR_LOW_BPM = 70.0
PRIOR_HIGH_BPM = 180.0
WINDOW_S = 8.0
# Standard deviation of band-averaged log-mel flux (natural log) treated as no change at all.
ONSET_FLOOR = 0.02
HOP_S = 1.0


@dataclass(frozen=True)
class TempoEstimate:
    bpm: float
    # 0 (no periodicity) to 1.
    confidence: float
    # Beat period in onset frames for each frame (follows slow tempo changes).
    local_period: F64


def normalise_onset(onset: F32, fps: float) -> F32:
    """Removes the slowly varying part of the flux and scales it to unit standard deviation."""
    if len(onset) == 0:
        return onset
    width = max(3, round(0.25 * fps) | 1)
    baseline = scipy.ndimage.uniform_filter1d(onset.astype(np.float64), width, mode="nearest")
    detail = np.maximum(onset - baseline, 0.0)
    # The floor keeps numerical noise of steady sounds (a held tone) from being scaled up
    # into a rhythm; real onsets change log-mel bands by far more than this on average.
    scale = max(float(np.std(detail)), ONSET_FLOOR)
    out: F32 = (detail / scale).astype(np.float32)
    return out


def tempogram(onset: F32, fps: float) -> F64:
    """Autocorrelation of Hann-windowed onset excerpts, [windows, lags], rows peak-normalised."""
    win = max(8, round(WINDOW_S * fps))
    hop = max(1, round(HOP_S * fps))
    padded = np.pad(onset.astype(np.float64), (win // 2, win // 2))
    starts = np.arange(0, max(1, len(padded) - win + 1), hop)
    frames = np.zeros((len(starts), win))
    for i, s in enumerate(starts):
        part = padded[s : s + win]
        frames[i, : len(part)] = part
    frames *= np.hanning(win)[None, :]
    spectrum = scipy.fft.rfft(frames, n=2 * win, axis=1)
    ac = scipy.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, :win]
    norm = np.maximum(ac[:, :1], 1e-12)
    out: F64 = ac / norm
    return out


def log_prior(bpm: F64) -> F64:
    """Log-weight of a tempo: flat over the preferred range, falling by octave outside it."""
    below = np.log2(np.maximum(PRIOR_LOW_BPM / bpm, 1.0))
    above = np.log2(np.maximum(bpm / PRIOR_HIGH_BPM, 1.0))
    # A gentle pull towards 120 BPM breaks ties between equally salient levels.
    centre = 0.5 * np.log2(bpm / 120.0) ** 2
    out: F64 = -((below / 0.5) ** 2) - ((above / 0.5) ** 2) - centre
    return out


def estimate_tempo(onset: F32, fps: float) -> TempoEstimate:
    """Global tempo, its confidence and the local beat period of a normalised onset envelope."""
    n = len(onset)
    if n < fps or not np.any(onset > 0):
        return TempoEstimate(0.0, 0.0, np.zeros(n))
    gram = tempogram(onset, fps)
    mean_ac = gram.mean(axis=0)
    min_lag = max(1, int(np.floor(60.0 * fps / MAX_BPM)))
    max_lag = min(len(mean_ac) - 1, int(np.ceil(60.0 * fps / MIN_BPM)))
    if max_lag <= min_lag + 2:
        return TempoEstimate(0.0, 0.0, np.zeros(n))
    lags = np.arange(min_lag, max_lag + 1)
    salience = np.maximum(mean_ac[lags], 0.0)
    bpm_of_lag = 60.0 * fps / lags
    score = np.log(salience + 1e-6) + log_prior(bpm_of_lag)
    peaks = [
        i for i in range(1, len(lags) - 1) if score[i] >= score[i - 1] and score[i] >= score[i + 1]
    ]
    if not peaks:
        return TempoEstimate(0.0, 0.0, np.zeros(n))
    best = max(peaks, key=lambda i: score[i])
    lag = _refine_period(onset, _refine_peak(mean_ac, int(lags[best])))
    bpm = 60.0 * fps / lag
    # Confidence: how far the periodicity stands above the autocorrelation's typical level.
    ac_range = mean_ac[min_lag : max_lag + 1]
    contrast = float(mean_ac[lags[best]] - np.median(ac_range))
    duration_factor = min(1.0, n / fps / 10.0)
    confidence = float(np.clip(contrast / 0.25, 0.0, 1.0)) * duration_factor
    return TempoEstimate(bpm, confidence, _local_period(gram, lag, n, fps))


def _refine_peak(values: F64, index: int) -> float:
    if index <= 0 or index >= len(values) - 1:
        return float(index)
    a, b, c = values[index - 1], values[index], values[index + 1]
    denom = a - 2 * b + c
    return float(index + 0.5 * (a - c) / denom) if denom < 0 else float(index)


def _refine_period(onset: F32, lag: float) -> float:
    """A more precise beat period from autocorrelation peaks at many beats' lag.

    A peak's position is only known to a fraction of a frame, so the peak near k periods
    pins the period down k times more finely; the largest k with a clear peak wins.
    """
    n = len(onset)
    x = onset.astype(np.float64) - float(np.mean(onset))
    spectrum = scipy.fft.rfft(x, n=2 * n)
    ac = scipy.fft.irfft(np.abs(spectrum) ** 2)[:n]
    ac /= np.maximum(n - np.arange(n), 1)  # unbiased: long lags are not penalised
    ac /= max(float(ac[0]), 1e-12)
    best = lag
    for k in (2, 4, 8, 16):
        centre = k * best
        if centre + 3 > n / 2:
            break
        lo = int(np.floor(centre - 0.5 * best / 2))
        hi = int(np.ceil(centre + 0.5 * best / 2))
        i = lo + int(np.argmax(ac[lo : hi + 1]))
        if ac[i] < 0.2:
            break
        best = _refine_peak(ac, i) / k
    return best


def _local_period(gram: F64, lag: float, n: int, fps: float) -> F64:
    """Per-frame beat period: each tempogram row's peak within 15% of the global period."""
    lo = max(1, int(np.floor(lag / 1.15)))
    hi = min(gram.shape[1] - 2, int(np.ceil(lag * 1.15)))
    periods = np.full(len(gram), lag)
    if hi > lo:
        for i, row in enumerate(gram):
            k = lo + int(np.argmax(row[lo : hi + 1]))
            if row[k] > 0.1:
                periods[i] = _refine_peak(row, k)
    periods = scipy.ndimage.median_filter(periods, size=5, mode="nearest")
    # Within 3% of the global period the coarse rows add only noise.
    periods = np.where(np.abs(periods / lag - 1.0) < 0.03, lag, periods)
    centres = np.arange(len(gram)) * HOP_S * fps
    out: F64 = np.interp(np.arange(n), centres, periods)
    return out
