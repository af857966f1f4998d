"""Beat grids for mixing, from the project's one beat tracker (`segue.structure`).

Where the beats come from: the client's analysis when it sends one, else
`segue.structure.analyze_audio` run on the excerpt (the same analysis the embedder streams).
What is the mixer's own is what a DJ does with those beats:

- a steady grid: the incoming song is stretched beat onto beat, so tracker jitter would
  become tempo wobble. The tracker places beats on 22 ms onset frames (5-10 ms of jitter on
  club tracks); a straight line fitted to them lands within about 1 ms of the true beats on
  generated songs. Where the tempo really drifts (the line misses by more than
  `STEADY_RMS_S`), the tracked beats are smoothed locally instead;
- the grid's bar positions carried over from the tracker's downbeats;
- the grid read at another metrical level (half, double, 3:2, 4:3 ...) when the two songs'
  tempos only match that way (see `tempo.match_tempo`);
- moving a song's grid into an excerpt of it (the continuous mix).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from segue.structure import analyze_audio, fill_analysis
from segue.v1 import common_pb2

FloatArray = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

MIN_BEATS = 4
# A tracked beat further than this share of a beat from the fitted grid does not count for
# it (an off-beat the tracker took for a while, or a beat it missed).
INLIER_SHARE_OF_BEAT = 0.12
# Tracked beats make a steady (constant-tempo) song when they lie within this RMS of one
# straight line, at least STEADY_SHARE of them within STEADY_TOLERANCE_S of it, and no more
# than STEADY_MAX_RUN off it at either end: a slowing outro or a tempo change is not steady,
# while a few off-beats the tracker took mid-song, after which it is back on the line, are.
STEADY_RMS_S = 0.015
STEADY_TOLERANCE_S = 0.04
STEADY_SHARE = 0.9
STEADY_MAX_RUN = 2
# Beats either side of each beat in the local fit where no single line fits.
LOCAL_FIT_BEATS = 6
# Periods tried around the median beat interval (+-4%, in 0.02% steps) when fitting the line:
# the median of frame-quantised intervals can be ~1% off.
_PERIOD_SEARCH = np.linspace(-0.04, 0.04, 401)
# Clarity of a client's grid whose tempo carries no confidence.
_UNRATED_CONFIDENCE = 0.7


@dataclass(frozen=True)
class BeatGrid:
    """Beat times (seconds from the excerpt's first sample) and their places in the bar."""

    times_s: F64
    positions: I64  # 1 = downbeat; 0 = unknown
    bpm: float
    # 0..1: how clearly the audio pulses (1 = every tracked beat on a steady grid).
    clarity: float
    source: str  # "analysis", "estimated" (structure analysis of the excerpt) or "free time"

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

    def at_level(self, factor: float, beats_per_bar: int, anchor: int = 0) -> BeatGrid:
        """The same audio read with `factor` times as many beats (2 = double time, 3/4 ...).

        Half and double time keep the bar positions (`every_other`, `doubled`). For other
        ratios the new beats are spaced evenly between the old ones, starting `anchor` beats
        after the first downbeat, which becomes the new grid's first downbeat; the bar phase
        after it is a guess of `beats_per_bar` beats a bar (the tracker counted bars at the
        other level).
        """
        if factor == 1.0:
            return self
        if factor == 2.0:
            return self.doubled()
        if factor == 0.5:
            return self.every_other()
        start = self.downbeat_offset() + anchor
        index = np.arange(self.times_s.size, dtype=np.float64)
        new_index = np.arange(start, self.times_s.size - 1 + 1e-9, 1.0 / factor)
        times = np.interp(new_index, index, self.times_s)
        known = self.positions.max(initial=0) > 0
        positions = (
            (np.arange(times.size) % beats_per_bar + 1).astype(np.int64)
            if known
            else np.zeros(times.size, np.int64)
        )
        return BeatGrid(times, positions, self.bpm * factor, self.clarity, self.source)

    def shifted(self, offset_s: float, start_s: float, end_s: float) -> BeatGrid:
        """The beats in [start_s, end_s), moved by -offset_s (a song's grid in an excerpt)."""
        inside = (self.times_s >= start_s) & (self.times_s < end_s)
        return BeatGrid(
            self.times_s[inside] - offset_s,
            self.positions[inside],
            self.bpm,
            self.clarity,
            self.source,
        )


def from_analysis(analysis: common_pb2.SongAnalysis, source: str = "analysis") -> BeatGrid | None:
    """The grid of an analysis' beats (steady where they allow it), else None.

    None when it has fewer than MIN_BEATS increasing beats.
    """
    if len(analysis.beats) < MIN_BEATS:
        return None
    times = np.array([b.time_s for b in analysis.beats], dtype=np.float64)
    if np.any(np.diff(times) <= 0) or not np.isfinite(times).all():
        return None
    positions = np.array([b.position_in_bar for b in analysis.beats], dtype=np.int64)
    has_tempo = analysis.HasField("tempo") and analysis.tempo.confidence > 0
    confidence = float(min(analysis.tempo.confidence, 1.0)) if has_tempo else _UNRATED_CONFIDENCE
    return fit_grid(times, positions, confidence, source)


def analyse(mono: FloatArray, rate_hz: int) -> common_pb2.SongAnalysis:
    """The project's structure analysis of mono audio (tempo, beats, downbeats, key, ...)."""
    analysis = common_pb2.SongAnalysis(duration_s=mono.size / rate_hz)
    fill_analysis(analyze_audio(mono, rate_hz), analysis)
    return analysis


def free_time(duration_s: float, bpm: float = 120.0) -> BeatGrid:
    """A nominal grid with no pulse (clarity 0): silence, drones, ambient music."""
    times = np.arange(0.0, max(duration_s, 2.0), 60.0 / bpm)
    return BeatGrid(times, np.zeros(times.size, np.int64), bpm, 0.0, "free time")


def estimate(mono: FloatArray, rate_hz: int) -> BeatGrid:
    """The grid of mono audio by the structure analysis; a free-time grid when it hears none."""
    grid = from_analysis(analyse(mono, rate_hz), "estimated")
    return grid if grid is not None else free_time(mono.size / rate_hz)


def fit_grid(times: F64, positions: I64, confidence: float, source: str) -> BeatGrid:
    """A grid through tracked beats: one straight line when they allow it, else piecewise.

    Clarity is the tempo confidence times the share of tracked beats on the grid.
    """
    t0, period, k, inliers = _steady_line(times)
    residual = times - (t0 + period * k)
    rms = float(np.sqrt(np.mean(residual[inliers] ** 2))) if inliers.any() else np.inf
    close = np.abs(residual) <= STEADY_TOLERANCE_S
    share = float(inliers.mean())
    if rms <= STEADY_RMS_S and close.mean() >= STEADY_SHARE and _end_runs(~close) <= STEADY_MAX_RUN:
        first = int(np.ceil(-t0 / period - 1e-9))
        index = np.arange(min(first, int(k.min())), int(k.max()) + 1)
        index = index[t0 + period * index >= 0.0]
        grid_times: F64 = (t0 + period * index).astype(np.float64)
        grid_positions = _bar_positions(index, k[inliers], positions[inliers])
        return BeatGrid(grid_times, grid_positions, 60.0 / period, confidence * share, source)
    # The tempo drifts (rubato, a live drummer) or the tracker changed phase for a while:
    # a fit through the beats around each beat follows it without the jitter.
    local, on_line = _local_lines(times)
    if local.size < 2 or np.any(np.diff(local) <= 0):
        local, on_line = times, np.ones(times.size, dtype=bool)
    bpm = 60.0 / float(np.median(np.diff(local)))
    return BeatGrid(local, positions.copy(), bpm, confidence * float(on_line.mean()), source)


def onset_strength(mono: FloatArray, rate_hz: int) -> tuple[F64, float]:
    """Rise of the log energy over 10 ms, every 5 ms, and its frame rate: where hits land.

    Frame k is the energy of the 23 ms up to time k / rate (longer than a bass note's period,
    so the bass's own waveform does not read as onsets), all from one cumulative sum. Only
    used to choose and check a reading of the beats at another metrical level (`reread`);
    the beats themselves come from the structure analysis.
    """
    hop = max(1, rate_hz // 200)
    window = round(0.023 * rate_hz)
    power = np.concatenate([[0.0], np.cumsum(np.square(mono, dtype=np.float64))])
    ends = np.arange(0, mono.size + 1, hop)
    energy = np.log(power[ends] - power[np.maximum(ends - window, 0)] + 1e-6)
    flux: F64 = np.zeros(energy.size)
    flux[2:] = np.maximum(energy[2:] - energy[:-2], 0.0)
    return flux, rate_hz / hop


def strength_at(times_s: F64, flux: F64, fps: float) -> float:
    """Mean over the beats of the strongest onset within 15 ms of each."""
    if times_s.size == 0 or flux.size == 0:
        return 0.0
    centre = np.round(times_s * fps).astype(np.int64)
    reach = max(1, round(0.015 * fps))
    idx = np.clip(centre[:, None] + np.arange(-reach, reach + 1)[None, :], 0, flux.size - 1)
    return float(flux[idx].max(axis=1).mean())


def reread(
    grid: BeatGrid, factor: float, beats_per_bar: int, mono: FloatArray, rate_hz: int
) -> tuple[BeatGrid, float]:
    """The grid read at `factor` (3/2, 4/3 ...) in its best phase, and how plausible that is.

    A tracker that took dotted or triplet beats for the beat is off by 3:4 or 2:3, and only
    some of its beats are real beats, so each phase of the new reading is tried and the one
    on the strongest onsets kept. Plausibility is the onset strength on the new beats over
    that on the tracked ones: about 1 or more when the new reading finds beats as strong,
    low when it puts most beats where nothing happens (a song truly at another tempo).
    """
    flux, fps = onset_strength(mono, rate_hz)
    tracked = strength_at(grid.times_s, flux, fps)
    options = [grid.at_level(factor, beats_per_bar, anchor) for anchor in range(4)]
    options = [g for g in options if g.times_s.size >= MIN_BEATS]
    if not options or tracked <= 0.0:
        return grid.at_level(factor, beats_per_bar), 0.0
    scores = [strength_at(g.times_s, flux, fps) for g in options]
    best = int(np.argmax(scores))
    return options[best], scores[best] / tracked


def _end_runs(flags: npt.NDArray[np.bool_]) -> int:
    """Length of the longer run of True at the start or at the end."""
    first = int(np.argmin(flags)) if not flags.all() else flags.size
    last = int(np.argmin(flags[::-1])) if not flags.all() else flags.size
    return max(first, last)


def _beat_numbers(times: F64, period: float) -> F64:
    """Beat numbers of tracked beats, counting a gap of two periods as a missed beat."""
    steps = np.maximum(1.0, np.round(np.diff(times) / period))
    out: F64 = np.concatenate([[0.0], np.cumsum(steps)])
    return out


def _steady_line(times: F64) -> tuple[float, float, F64, npt.NDArray[np.bool_]]:
    """(t0, period, beat number of each time, inliers) of the line t0 + period * k.

    Period and phase come from the phase coherence of the beats (robust to missed beats and
    to an off-beat stretch shorter than the rest), then a least-squares line through the
    beats near it.
    """
    median = float(np.median(np.diff(times)))
    periods = median * (1.0 + _PERIOD_SEARCH)
    rel = times - times[0]
    phasors = np.exp(2j * np.pi * rel[None, :] / periods[:, None]).mean(axis=1)
    best = int(np.argmax(np.abs(phasors)))
    period = float(periods[best])
    t0 = float(times[0] + np.angle(phasors[best]) / (2.0 * np.pi) * period)
    k = np.zeros(times.size)
    inliers = np.zeros(times.size, dtype=bool)
    for _ in range(3):
        k = np.round((times - t0) / period)
        inliers = np.abs(times - t0 - period * k) <= INLIER_SHARE_OF_BEAT * period
        if np.unique(k[inliers]).size < 2:
            break
        period, t0 = (float(v) for v in np.polyfit(k[inliers], times[inliers], 1))
    return t0, period, k, inliers


def _local_lines(times: F64) -> tuple[F64, npt.NDArray[np.bool_]]:
    """Each beat moved onto a robust fit of the beats around it, and which were on it.

    The fit is a parabola in the beat number (a tempo that speeds up or slows down evenly),
    solved for all windows at once by weighted least squares; beats more than
    INLIER_SHARE_OF_BEAT of a beat off the first fit are left out of the second.
    """
    n = times.size
    width = min(n, 2 * LOCAL_FIT_BEATS + 1)
    k = _beat_numbers(times, float(np.median(np.diff(times))))
    starts = np.clip(np.arange(n) - LOCAL_FIT_BEATS, 0, n - width)
    idx = starts[:, None] + np.arange(width)[None, :]
    # Centre each window's beat numbers on its own beat, for a well-conditioned system.
    x = k[idx] - k[:, None]
    y = times[idx]
    design = np.stack([np.ones_like(x), x, x * x], axis=-1)  # [n, width, 3]
    weights = np.ones_like(x)
    fitted, period = times, np.gradient(times)
    for _ in range(2):
        wd = design * weights[..., None]
        normal = np.einsum("nwi,nwj->nij", wd, design) + 1e-9 * np.eye(3)
        coef = np.linalg.solve(normal, np.einsum("nwi,nw->ni", wd, y)[..., None])[..., 0]
        fitted, period = coef[:, 0], np.abs(coef[:, 1])
        residual = y - np.einsum("nwi,ni->nw", design, coef)
        weights = (np.abs(residual) <= INLIER_SHARE_OF_BEAT * period[:, None]).astype(np.float64)
    on_line = np.abs(times - fitted) <= INLIER_SHARE_OF_BEAT * period
    return fitted, on_line


def _bar_positions(index: I64, beat_numbers: F64, positions: I64) -> I64:
    """Bar positions of grid beats `index`, by the majority of the tracked downbeat phases."""
    known = positions > 0
    if not known.any():
        return np.zeros(index.size, np.int64)
    per_bar = int(positions.max())
    per_bar = per_bar if 2 <= per_bar <= 12 else 4
    phase = (beat_numbers[known].astype(np.int64) - (positions[known] - 1)) % per_bar
    downbeat = int(np.bincount(phase, minlength=per_bar).argmax())
    out: I64 = ((index - downbeat) % per_bar + 1).astype(np.int64)
    return out
