"""Tempo from the onset envelope: windowed autocorrelation (a tempogram) with a tempo prior."""

from __future__ import annotations

import functools
import itertools
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
# Rhythm-pattern features: window length and number of lag bins.
RHYTHM_WINDOW_S = 3.0
RHYTHM_BINS = 12
# Log-support by which a 2:3 / 3:4 related lag must beat the strongest peak to replace it.
NON_OCTAVE_MARGIN = 0.15
# The bar (or two-bar) period is the strongest periodicity from BAR_RANGE_S[0] to [1] s. A
# beat period must divide it into one of BAR_BEATS parts within BAR_FIT; a 2:3 or 3:4
# related peak that does, and keeps MIN_BAR_SALIENCE of the chosen one's autocorrelation,
# replaces one that does not. Riffs in 3+3+2 eighths otherwise put the beat on the dotted
# quarter (a fast rock song read at two thirds of its tempo).
BAR_RANGE_S = (1.2, 4.0)
BAR_BEATS = (2, 3, 4, 6, 8)
BAR_FIT = 0.03
MIN_BAR_SALIENCE = 0.7


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


def tempogram(onset: F32, fps: float, window_s: float = WINDOW_S) -> F64:
    """Autocorrelation of Hann-windowed onset excerpts, one every HOP_S, [windows, lags],
    rows peak-normalised."""
    win = max(8, round(window_s * fps))
    hop = max(1, round(HOP_S * fps))
    padded = np.pad(onset.astype(np.float64), (win // 2, win // 2))
    if len(padded) < win:
        padded = np.pad(padded, (0, win - len(padded)))
    count = (len(padded) - win) // hop + 1
    step = padded.strides[0]
    excerpts = np.lib.stride_tricks.as_strided(
        padded, shape=(count, win), strides=(hop * step, step), writeable=False
    )
    spectrum = scipy.fft.rfft(excerpts * np.hanning(win)[None, :], n=2 * win, axis=1)
    ac = scipy.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, :win]
    norm = np.maximum(ac[:, :1], 1e-12)
    out: F64 = ac / norm
    return out


def rhythm_pattern(onset: F32, fps: float) -> tuple[F64, F64]:
    """(times s, [rows, RHYTHM_BINS]): each second's short-window onset autocorrelation pooled
    into log-spaced lag bins from 0.15 to 1.6 s.

    It describes the groove (tempo and subdivision) around each second, which changes where
    one recording or section gives way to another even when timbre and harmony do not.
    """
    ac = tempogram(onset, fps, RHYTHM_WINDOW_S)
    win = ac.shape[1]
    edges = np.round(np.geomspace(0.15 * fps, min(1.6 * fps, win - 1), RHYTHM_BINS + 1))
    edges = np.maximum.accumulate(np.maximum(edges.astype(np.int64), 1))
    pooled = np.stack(
        [ac[:, a : max(b, a + 1)].max(axis=1) for a, b in itertools.pairwise(edges)],
        axis=1,
    )
    times: F64 = np.arange(len(ac), dtype=np.float64) * (round(HOP_S * fps) / fps)
    return times, pooled


def log_prior(bpm: F64) -> F64:
    """Log-weight of a tempo: flat over the preferred range, falling by octave outside it."""
    below = np.log2(np.maximum(PRIOR_LOW_BPM / bpm, 1.0))
    above = np.log2(np.maximum(bpm / PRIOR_HIGH_BPM, 1.0))
    # A gentle pull towards 120 BPM breaks ties between equally salient levels.
    centre = 0.5 * np.log2(bpm / 120.0) ** 2
    out: F64 = -((below / 0.5) ** 2) - ((above / 0.5) ** 2) - centre
    return out


def harmonic_salience(mean_ac: F64, lags: npt.NDArray[np.int64]) -> F64:
    """Periodicity of each beat lag, backed by the bar-level lags 2x and 4x it.

    A true beat period repeats at its multiples (half and whole bars), while a lag that only
    relates to the beat by 3:4 or 2:3 (a triplet or dotted feel) does not, so the mean over
    the multiples that fit in the tempogram separates them.
    """
    total = np.maximum(mean_ac[lags], 0.0)
    count = np.ones(len(lags))
    n = len(mean_ac)
    for multiple in (2, 4):
        # An integer lag is up to half a frame off the period, k times that at k periods.
        reach = np.arange(-(multiple // 2), multiple // 2 + 1)
        near = (multiple * lags)[:, None] + reach[None, :]
        fits = near[:, -1] < n
        best = np.maximum(mean_ac[np.minimum(near, n - 1)].max(axis=1), 0.0)
        total[fits] += best[fits]
        count[fits] += 1
    out: F64 = total / count
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
    salience = np.maximum(peak_heights(mean_ac, lags), 0.0)
    bpm_of_lag = 60.0 * fps / lags
    score = np.log(salience + 1e-6) + log_prior(bpm_of_lag)
    peaks = [
        i for i in range(1, len(lags) - 1) if score[i] >= score[i - 1] and score[i] >= score[i + 1]
    ]
    if not peaks:
        return TempoEstimate(0.0, 0.0, np.zeros(n))
    best = max(peaks, key=lambda i: score[i])
    best = _resolve_non_octave(mean_ac, lags, peaks, best, bpm_of_lag)
    best = _fit_bar(mean_ac, lags, peaks, best, score, fps)
    lag = _refine_period(onset, _refine_peak(mean_ac, int(lags[best])))
    bpm = 60.0 * fps / lag
    # Confidence: how far the periodicity stands above the autocorrelation's typical level.
    ac_range = mean_ac[min_lag : max_lag + 1]
    contrast = float(mean_ac[lags[best]] - np.median(ac_range))
    duration_factor = min(1.0, n / fps / 10.0)
    confidence = float(np.clip(contrast / 0.25, 0.0, 1.0)) * duration_factor
    return TempoEstimate(bpm, confidence, _local_period(gram, lag, n, fps))


def peak_heights(values: F64, lags: npt.NDArray[np.int64]) -> F64:
    """`values` at `lags`, a local maximum raised to the top of the parabola through it and
    its two neighbours (the first and last values have none and are kept as they are).

    A period that falls between two lags is otherwise read up to a third too low, by an
    amount that changes when a song is played a few percent faster or slower, and competing
    metrical levels swap places with it.
    """
    last = len(values) - 1
    a, b, c = values[np.maximum(lags - 1, 0)], values[lags], values[np.minimum(lags + 1, last)]
    curvature = a - 2.0 * b + c
    peak = (curvature < 0) & (b >= a) & (b >= c)
    top = b - (a - c) ** 2 / (8.0 * np.where(peak, curvature, -1.0))
    out: F64 = np.where(peak, top, b)
    return out


def _resolve_non_octave(
    mean_ac: F64, lags: npt.NDArray[np.int64], peaks: list[int], best: int, bpm_of_lag: F64
) -> int:
    """Among the best peak and peaks at 2:3, 3:4, 4:3 or 3:2 of it, the one whose multiples
    (bar-level lags) back it most, weighed by the tempo prior.

    A dotted or triplet feel (3-3-2 patterns, 12/8) can make such a lag the strongest single
    peak; only the beat period itself also repeats at half and whole bars.
    """
    support = np.log(harmonic_salience(mean_ac, lags) + 1e-6) + log_prior(bpm_of_lag)
    choice = best
    for i in _non_octave_peaks(lags, peaks, best):
        if support[i] > support[choice] + NON_OCTAVE_MARGIN:
            choice = i
    return choice


def _non_octave_peaks(lags: npt.NDArray[np.int64], peaks: list[int], best: int) -> list[int]:
    """The peaks within 3% (or a frame) of 2:3, 3:4, 4:3 and 3:2 of the best one's lag, in
    that order of ratios."""
    related = []
    for ratio in (2 / 3, 3 / 4, 4 / 3, 3 / 2):
        target = lags[best] * ratio
        related += [i for i in peaks if abs(lags[i] - target) <= max(1.0, 0.03 * target)]
    return related


def _fit_bar(
    mean_ac: F64, lags: npt.NDArray[np.int64], peaks: list[int], best: int, score: F64, fps: float
) -> int:
    """The chosen peak, or the best-scoring 2:3, 3:4, 4:3 or 3:2 related peak when only that
    one divides the bar period (see BAR_RANGE_S)."""
    bar = bar_period(mean_ac, fps)
    if _divides(bar, _refine_peak(mean_ac, int(lags[best]))):
        return best
    choice = best
    for i in _non_octave_peaks(lags, peaks, best):
        strong = mean_ac[lags[i]] >= MIN_BAR_SALIENCE * mean_ac[lags[best]]
        fits = strong and _divides(bar, _refine_peak(mean_ac, int(lags[i])))
        if fits and (choice == best or score[i] > score[choice]):
            choice = i
    return choice


def bar_period(mean_ac: F64, fps: float) -> float:
    """Lag (onset frames) of the strongest periodicity from BAR_RANGE_S[0] to [1] s (the
    tempogram's WINDOW_S always holds that range), after undoing the fall-off that the
    Hann-windowed excerpts give long lags."""
    lo = int(BAR_RANGE_S[0] * fps)
    hi = min(int(BAR_RANGE_S[1] * fps), len(mean_ac) - 2)
    corrected = mean_ac[lo : hi + 1] / np.maximum(_window_taper(len(mean_ac))[lo : hi + 1], 0.05)
    return float(lo + int(np.argmax(corrected)))


@functools.lru_cache(maxsize=8)
def _window_taper(win: int) -> F64:
    """Autocorrelation of a `win`-sample Hann window, 1 at lag 0: how much an excerpt's
    autocorrelation falls with lag for a perfectly periodic envelope."""
    window = np.hanning(win)
    taper = np.correlate(window, window, "full")[win - 1 :]
    out: F64 = taper / taper[0]
    return out


def _divides(bar: float, lag: float) -> bool:
    """Whether `bar` is one of BAR_BEATS multiples of `lag`, within BAR_FIT."""
    beats = bar / lag
    whole = round(beats)
    return whole in BAR_BEATS and abs(beats / whole - 1.0) <= BAR_FIT


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
        # Close to k periods only: a wider search hops onto peaks of other subdivisions.
        reach = max(1.5, 0.03 * centre)
        lo = int(np.floor(centre - reach))
        hi = int(np.ceil(centre + reach))
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
        rows = np.arange(len(gram))
        k = lo + np.argmax(gram[:, lo : hi + 1], axis=1)
        a, b, c = gram[rows, k - 1], gram[rows, k], gram[rows, k + 1]
        denom = a - 2 * b + c
        offset = np.where(denom < 0, 0.5 * (a - c) / np.where(denom < 0, denom, -1.0), 0.0)
        periods = np.where(b > 0.1, k + offset, lag)
    periods = scipy.ndimage.median_filter(periods, size=5, mode="nearest")
    # Within 3% of the global period the coarse rows add only noise.
    periods = np.where(np.abs(periods / lag - 1.0) < 0.03, lag, periods)
    centres = np.arange(len(gram)) * HOP_S * fps
    out: F64 = np.interp(np.arange(n), centres, periods)
    return out
