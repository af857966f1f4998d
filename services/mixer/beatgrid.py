"""Beat grids: taken from a client's analysis, or estimated from the audio.

The estimate is a steady grid fitted by a small estimator of the mixer's own: a spectral-flux
onset envelope, tempo by autocorrelation with a prior towards 120 BPM, and one straight line
fitted to the onsets. The mixer needs a steady grid above all: it is what the incoming song is
stretched onto. Where that grid is unclear, `segue.structure.analyze_audio` (the project's
structure analysis, which follows tempo changes) is asked too and the clearer grid wins. On
the packaged real tracks (2026-11-21) the steady fit found the tracks' round tempos where the
structure analysis sometimes chose a different metrical level, hence this order.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.ndimage import uniform_filter1d
from scipy.signal import resample_poly, stft

from segue.v1 import common_pb2

FloatArray = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

MIN_BEATS = 4
ENVELOPE_RATE_HZ = 11025
HOP = 64  # 5.8 ms onset frames
MIN_BPM, MAX_BPM = 60.0, 200.0
# Own grids at least this clear are used without asking the structure analysis.
CLEAR_GRID = 0.5
# Delay from a frame index to the onset it detects (half the 512-sample window, plus the
# lead of the log-flux peak on sharp attacks), measured on click tracks.
ONSET_LAG_S = 0.0332


@dataclass(frozen=True)
class BeatGrid:
    """Beat times (seconds from the excerpt's first sample) and their places in the bar."""

    times_s: F64
    positions: npt.NDArray[np.int64]  # 1 = downbeat; 0 = unknown
    bpm: float
    # 0..1: how clearly the audio pulses (1 = a club kick on every beat).
    clarity: float
    source: str  # "analysis" or "estimated"

    @property
    def period_s(self) -> float:
        return float(np.median(np.diff(self.times_s)))

    @property
    def beats_per_bar(self) -> int:
        top = int(self.positions.max()) if self.positions.size else 0
        return top if 2 <= top <= 12 else 4

    def extended(self, until_s: float) -> F64:
        """Beat times continued past the last known beat at the grid's period, until until_s."""
        times = self.times_s
        if times[-1] >= until_s:
            return times
        extra = int(np.ceil((until_s - times[-1]) / self.period_s)) + 1
        tail = times[-1] + self.period_s * np.arange(1, extra + 1)
        out: F64 = np.concatenate([times, tail])
        return out

    def downbeat_offset(self) -> int:
        """Index of the first downbeat (0 when the meter is unknown)."""
        down = np.flatnonzero(self.positions == 1)
        return int(down[0]) if down.size else 0

    def rescaled(self, factor: float) -> BeatGrid:
        """The grid of the audio played `factor` times faster (times / factor)."""
        return BeatGrid(
            self.times_s / factor, self.positions, self.bpm * factor, self.clarity, self.source
        )

    def every_other(self) -> BeatGrid:
        """Half time: every second beat, starting on a downbeat."""
        start = self.downbeat_offset() % 2
        times = self.times_s[start::2]
        positions = self.positions[start::2]
        positions = np.where(positions > 0, (positions + 1) // 2, 0)
        return BeatGrid(times, positions, self.bpm / 2.0, self.clarity, self.source)

    def doubled(self) -> BeatGrid:
        """Double time: a beat added half-way between every two beats."""
        mids = 0.5 * (self.times_s[:-1] + self.times_s[1:])
        times = np.empty(self.times_s.size * 2 - 1)
        times[0::2], times[1::2] = self.times_s, mids
        positions = np.zeros(times.size, dtype=np.int64)
        if self.positions.max(initial=0) > 0:
            positions[0::2] = 2 * self.positions - 1
            positions[1::2] = 2 * self.positions[:-1]
        return BeatGrid(times, positions, self.bpm * 2.0, self.clarity, self.source)


def from_analysis(analysis: common_pb2.SongAnalysis) -> BeatGrid | None:
    """The analysis's grid when it has enough increasing beats, else None."""
    if len(analysis.beats) < MIN_BEATS:
        return None
    times = np.array([b.time_s for b in analysis.beats], dtype=np.float64)
    if np.any(np.diff(times) <= 0) or not np.isfinite(times).all():
        return None
    positions = np.array([b.position_in_bar for b in analysis.beats], dtype=np.int64)
    bpm = analysis.tempo.bpm if analysis.tempo.bpm > 0 else 60.0 / float(np.median(np.diff(times)))
    has_tempo = analysis.HasField("tempo") and analysis.tempo.confidence > 0
    clarity = (
        float(analysis.tempo.confidence * max(analysis.tempo.stability, 0.5)) if has_tempo else 0.7
    )
    return BeatGrid(times, positions, float(bpm), clarity, "analysis")


def estimate(mono: FloatArray, rate_hz: int) -> BeatGrid:
    """Estimates the beat grid of mono audio (see the module docstring for the order)."""
    own = estimate_steady_grid(mono, rate_hz)
    if own.clarity >= CLEAR_GRID:
        return own
    other = _from_structure_analysis(mono, rate_hz)
    return other if other is not None and other.clarity > own.clarity else own


def _from_structure_analysis(mono: FloatArray, rate_hz: int) -> BeatGrid | None:
    try:
        structure: Any = importlib.import_module("segue.structure")
    except ImportError:
        return None
    analyze = getattr(structure, "analyze_audio", None)
    fill = getattr(structure, "fill_analysis", None)
    if analyze is None or fill is None:
        return None
    analysis = common_pb2.SongAnalysis()
    fill(analyze(mono, rate_hz), analysis)
    grid = from_analysis(analysis)
    return (
        None
        if grid is None
        else BeatGrid(grid.times_s, grid.positions, grid.bpm, grid.clarity, "estimated")
    )


def onset_envelope(mono: FloatArray, rate_hz: int) -> tuple[F64, float]:
    """Spectral-flux onset strength and its frame rate (Hz)."""
    x = (
        resample_poly(mono.astype(np.float64), ENVELOPE_RATE_HZ, rate_hz)
        if rate_hz != ENVELOPE_RATE_HZ
        else mono.astype(np.float64)
    )
    _, _, spec = stft(
        x, fs=ENVELOPE_RATE_HZ, nperseg=512, noverlap=512 - HOP, boundary=None, padded=False
    )
    mag = np.log1p(100.0 * np.abs(spec))
    flux = np.maximum(np.diff(mag, axis=1), 0.0).sum(axis=0)
    flux = np.concatenate([[0.0], flux])
    frame_rate = ENVELOPE_RATE_HZ / HOP
    # Remove the slowly varying part so that loud passages do not dominate.
    flux = np.maximum(flux - uniform_filter1d(flux, size=int(frame_rate)), 0.0)
    peak = flux.max()
    env: F64 = flux / peak if peak > 0 else flux
    return env, frame_rate


def estimate_steady_grid(mono: FloatArray, rate_hz: int) -> BeatGrid:
    """A constant-tempo grid fitted to the onsets of the audio."""
    env, fr = onset_envelope(mono, rate_hz)
    duration = mono.size / rate_hz
    offset_s = ONSET_LAG_S
    if env.size < 4 * fr or env.max() <= 0:
        period = 0.5
        times = np.arange(0.0, max(duration, 2.0), period)
        return BeatGrid(times, np.zeros(times.size, np.int64), 120.0, 0.0, "estimated")
    period_frames, clarity = _tempo_period(env, fr)
    phase = _best_phase(env, period_frames)
    n = int((env.size - 1 - phase) / period_frames) + 1
    nominal = phase + period_frames * np.arange(n)
    # Let each beat move to its strongest nearby onset, then fit one straight line.
    radius = max(1, int(0.08 * period_frames))
    refined = np.empty(n)
    weights = np.empty(n)
    for i, c in enumerate(nominal):
        lo, hi = max(0, int(c) - radius), min(env.size, int(c) + radius + 1)
        j = lo + int(np.argmax(env[lo:hi]))
        refined[i] = _parabolic(env, j)
        weights[i] = env[j]
    k = np.arange(n, dtype=np.float64)
    w = weights + 1e-6
    slope, intercept = np.polyfit(k, refined, 1, w=w)
    times = (intercept + slope * k) / fr + offset_s
    times = times[(times >= 0) & (times < duration)]
    bpm = 60.0 * fr / slope
    positions = _bar_positions(env, (times - offset_s) * fr)
    return BeatGrid(times.astype(np.float64), positions, float(bpm), clarity, "estimated")


def _tempo_period(env: F64, fr: float) -> tuple[float, float]:
    centred = env - env.mean()
    ac = np.correlate(centred, centred, mode="full")[centred.size - 1 :]
    if ac[0] <= 0:
        return fr * 0.5, 0.0
    ac = ac / ac[0]
    lags = np.arange(ac.size, dtype=np.float64)
    lo, hi = int(fr * 60.0 / MAX_BPM), min(int(fr * 60.0 / MIN_BPM), ac.size - 2)
    bpm = 60.0 * fr / np.maximum(lags[lo : hi + 1], 1.0)
    prior = np.exp(-0.5 * (np.log2(bpm / 120.0) / 0.9) ** 2)
    # A lag's evidence includes its double: beats repeat at two beat periods too.
    doubled = np.interp(2.0 * lags[lo : hi + 1], lags, ac)
    score = (ac[lo : hi + 1] + 0.5 * doubled) * prior
    best = lo + int(np.argmax(score))
    period = _parabolic(ac, best)
    clarity = float(np.clip(ac[best] / 0.5, 0.0, 1.0))
    while 60.0 * fr / period < 70.0:
        period /= 2.0
    while 60.0 * fr / period > 180.0:
        period *= 2.0
    return period, clarity


def _best_phase(env: F64, period: float) -> float:
    phases = np.arange(0.0, period, 0.5)
    n = int((env.size - 1 - period) / period)
    idx = np.arange(n) * period
    scores = [env[np.round(p + idx).astype(int)].sum() for p in phases]
    return float(phases[int(np.argmax(scores))])


def _parabolic(y: F64, i: int) -> float:
    if 0 < i < y.size - 1:
        a, b, c = y[i - 1], y[i], y[i + 1]
        den = a - 2 * b + c
        if den < 0:
            return float(i + 0.5 * (a - c) / den)
    return float(i)


def _bar_positions(env: F64, beat_frames: F64, beats_per_bar: int = 4) -> npt.NDArray[np.int64]:
    idx = np.clip(np.round(beat_frames).astype(int), 0, env.size - 1)
    strength = uniform_filter1d(env, size=3)[idx]
    scores = [
        strength[p::beats_per_bar].mean() if strength[p::beats_per_bar].size else 0.0
        for p in range(beats_per_bar)
    ]
    first = int(np.argmax(scores))
    positions = (np.arange(idx.size) - first) % beats_per_bar + 1
    return positions.astype(np.int64)
