"""A look-ahead true-peak limiter with 4x oversampled peak detection (ITU-R BS.1770 annex 2).

Sample peaks under-read the peaks a DAC (or a lossy decoder) reconstructs between samples by
up to ~3 dB, so peaks are measured on a 4x oversampled signal. The gain is the running
minimum of the needed reduction, smoothed by a moving average no longer than the minimum's
window, which makes the smoothed gain never exceed what any sample needs.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.ndimage import correlate1d, maximum_filter1d, uniform_filter1d

FloatArray = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

OVERSAMPLE = 4
LOOKAHEAD_S = 0.005
RELEASE_S = 0.060
# Margin below the ceiling for the difference between the detector and a decoder's filter.
SAFETY_DB = 0.1


def _interpolation_phases() -> npt.NDArray[np.float32]:
    """Polyphase taps of a 4x interpolator (Kaiser-windowed sinc), phases 1..3 of 4."""
    taps_per_phase = 12
    n = np.arange(-taps_per_phase * OVERSAMPLE // 2, taps_per_phase * OVERSAMPLE // 2 + 1)
    h = np.sinc(n / OVERSAMPLE) * np.kaiser(n.size, 8.0)
    phases = [h[(OVERSAMPLE - k) % OVERSAMPLE :: OVERSAMPLE] for k in range(1, OVERSAMPLE)]
    size = max(p.size for p in phases)
    out = np.zeros((OVERSAMPLE - 1, size), dtype=np.float32)
    for k, p in enumerate(phases):
        out[k, : p.size] = p / p.sum()
    return out


_PHASES = _interpolation_phases()
_HALF = _PHASES.shape[1] // 2  # correlate1d centres an even filter on tap _HALF
# No interpolated value exceeds this multiple of the largest sample magnitude under the taps.
_GAIN_BOUND = float(np.abs(_PHASES).sum(axis=1).max())


class Limited(NamedTuple):
    audio: FloatArray  # [channels, frames], no true peak above the ceiling
    peak_dbtp: float  # its highest true peak


def _true_peaks(x: FloatArray, floor: float) -> tuple[F64, npt.NDArray[np.int64]]:
    """Per-sample true peaks (see `true_peak`) and the samples where they were interpolated."""
    peaks = np.abs(x).max(axis=0)
    if floor > 0.0:
        reach = maximum_filter1d(peaks, size=2 * _HALF + 1) * _GAIN_BOUND
        candidates = np.flatnonzero(reach > floor)
    else:
        candidates = np.arange(peaks.size)
    if candidates.size > peaks.size // 8:
        for k in range(_PHASES.shape[0]):
            between = correlate1d(x, _PHASES[k], axis=1, mode="constant")
            np.maximum(peaks, np.abs(between).max(axis=0), out=peaks)
        candidates = np.arange(peaks.size)
    elif candidates.size:
        peaks[candidates] = np.maximum(peaks[candidates], _interpolated(x, candidates))
    out: F64 = peaks.astype(np.float64)
    return out, candidates


def _interpolated(x: FloatArray, idx: npt.NDArray[np.int64]) -> FloatArray:
    """Largest magnitude of the three points 4x oversampling puts after each sample in idx."""
    padded = np.pad(x, ((0, 0), (_HALF, _HALF)))
    taps = padded[:, idx[:, None] + np.arange(_PHASES.shape[1])]  # [ch, n, taps]
    out: FloatArray = np.abs(taps @ _PHASES.T).max(axis=(0, 2))
    return out


def true_peak(audio: FloatArray, floor: float = 0.0) -> npt.NDArray[np.float64]:
    """Per-sample true-peak magnitude of [channels, frames] audio (max over channels).

    Sample k's value is the largest magnitude among the sample and the three points that
    4x oversampling puts between it and its neighbours. Only samples whose true peak can
    exceed `floor` are interpolated (a bound from the filter's gain rules the others out);
    the others hold their sample peak, which is at most `floor` too. The limiter asks about
    its ceiling, so on mastered music it interpolates a few percent of the samples.
    """
    return _true_peaks(np.ascontiguousarray(audio, dtype=np.float32), floor)[0]


def _highest(x: FloatArray, peaks: F64, exact: npt.NDArray[np.int64]) -> float:
    """The highest true peak, from per-sample peaks interpolated at `exact` (see _true_peaks).

    The others are at most their filter-gain bound: those whose bound beats the best exact
    peak are interpolated too (after limiting, the best is at the ceiling and few are).
    """
    sample = np.abs(x).max(axis=0)
    best = max(float(peaks[exact].max()) if exact.size else 0.0, float(sample.max(initial=0.0)))
    reach = maximum_filter1d(sample, size=2 * _HALF + 1) * _GAIN_BOUND
    unsure_mask = reach > best
    unsure_mask[exact] = False
    unsure = np.flatnonzero(unsure_mask)
    if unsure.size > sample.size // 8:
        return float(true_peak(x).max())
    if unsure.size:
        best = max(best, float(_interpolated(x, unsure).max()))
    return best


def true_peak_dbtp(audio: FloatArray) -> float:
    """Highest true peak of the audio in dBTP (-inf for silence)."""
    if audio.size == 0:
        return float("-inf")
    peak = float(true_peak(audio, floor=float(np.abs(audio).max())).max())
    return 20.0 * np.log10(peak) if peak > 0 else float("-inf")


def limit(audio: FloatArray, rate_hz: int, ceiling_dbtp: float = -1.0, *,
          in_place: bool = False) -> Limited:
    """The audio with no true peak above `ceiling_dbtp`, and its highest true peak.

    Audio longer than a block is limited BLOCK_S at a time, each block with MARGIN_S of the
    audio around it: a sample's gain depends on the audio within ~0.13 s per pass (4 passes at
    most), so the result is the same as limiting it whole, with temporaries of one block's
    size instead of several copies of a whole mix. `in_place` writes into float32 `audio`.
    """
    ceiling = 10.0 ** ((ceiling_dbtp - SAFETY_DB) / 20.0)
    out = audio if in_place and audio.dtype == np.float32 else audio.astype(np.float32)
    block, margin = int(BLOCK_S * rate_hz), int(MARGIN_S * rate_hz)
    frames = out.shape[1]
    if frames <= block + margin:
        out, peaks, exact = _limited(out, rate_hz, ceiling)
        return Limited(out, _dbtp(_highest(out, peaks, exact)))
    peak = 0.0
    carry = out[:, :0].copy()  # the unlimited audio just before the block
    for start in range(0, frames, block):
        end = min(frames, start + block)
        context = np.concatenate([carry, out[:, start : min(frames, end + margin)]], axis=1)
        limited, _, _ = _limited(context, rate_hz, ceiling)
        kept = slice(carry.shape[1], carry.shape[1] + end - start)
        peak = max(peak, _kept_peak(limited, kept))
        carry = out[:, max(start, end - margin) : end].copy()
        out[:, start:end] = limited[:, kept]
    return Limited(out, _dbtp(peak))


BLOCK_S = 20.0
MARGIN_S = 1.0


def _limited(out: FloatArray, rate_hz: int, ceiling: float
             ) -> tuple[FloatArray, F64, npt.NDArray[np.int64]]:
    """`out` limited in place to `ceiling` (linear), with its per-sample true peaks and the
    samples where they were interpolated (see _true_peaks)."""
    hold = max(1, int(LOOKAHEAD_S * rate_hz))
    release = max(1, int(RELEASE_S * rate_hz))
    peaks, exact = _true_peaks(out, ceiling)
    for _ in range(4):  # a further pass catches the rare overshoot of the smoothed gain
        if peaks.max(initial=0.0) <= ceiling:
            break
        reduction = 1.0 - np.minimum(1.0, ceiling / np.maximum(peaks, 1e-12))
        # Hold over lookahead + release, then average over the release: never below needs.
        held = maximum_filter1d(reduction, size=2 * (hold + release) + 1)
        smooth = uniform_filter1d(held, size=2 * release + 1)
        smooth = np.maximum(
            smooth, uniform_filter1d(maximum_filter1d(reduction, size=2 * hold + 1), size=hold + 1)
        )
        out *= (1.0 - smooth).astype(np.float32)
        peaks, exact = _true_peaks(out, ceiling)
    return out, peaks, exact


def _kept_peak(limited: FloatArray, kept: slice) -> float:
    """The highest true peak of the samples in `kept`, read with their neighbours around."""
    lo, hi = max(0, kept.start - _HALF), min(limited.shape[1], kept.stop + _HALF)
    region = limited[:, lo:hi]
    if limited[:, kept].size == 0:
        return 0.0
    # Samples whose true peak cannot beat the kept samples' largest are left uninterpolated.
    peaks = true_peak(region, floor=float(np.abs(limited[:, kept]).max()))
    return float(peaks[kept.start - lo : kept.stop - lo].max(initial=0.0))


def _dbtp(peak: float) -> float:
    return 20.0 * float(np.log10(peak)) if peak > 0 else float("-inf")
