"""Beat grids for DJ software: constant-tempo pieces fitted to the analysed beats.

DJ programs keep a grid, not a list of beats: a tempo and the time of one beat, and (Rekordbox)
a new tempo wherever the grid changes. The analysed beats sit on the model's onset frames
(about 22 ms apart) and so jitter by about ±11 ms around the true beat; a least-squares line
through them is steadier than any one beat. A grid piece therefore is a line through the beats
it covers, fitted again without the beats it misses (tracking slips) so that a few slips do
not tilt it. A song gets a grid when, piece by piece, nearly all its beats lie on it:

1. one line through all beats; if at least INLIER_SHARE of them lie within GRID_TOLERANCE_S,
   that is the grid;
2. otherwise the beats are split in two at the bar line that leaves the most beats on the two
   lines, and each half is treated the same way, down to MIN_SEGMENT_BEATS beats;
3. neighbouring pieces that one line fits as well are joined again.

No grid is given, and the reason is said, when the analysis found no beats or too few, when
its tempo confidence is low, when fewer than INLIER_SHARE of all beats lie on the pieces, or
when a piece between two others is shorter than MIN_INNER_SEGMENT_BEATS (the beat wanders
rather than changing tempo; a short first or last piece is an intro or ending that drifts).
A wrong grid is worse than none: the DJ program analyses the song itself when the export
leaves the grid out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from segue.v1 import common_pb2

F64 = npt.NDArray[np.float64]

# A beat "lies on" the grid when it is this close to it: about 1.5 onset frames, the
# quantisation of the analysed beats plus a little tracking noise.
GRID_TOLERANCE_S = 0.035
# Share of beats that must lie on the grid (all pieces together, and each unsplit piece).
INLIER_SHARE = 0.9
# Shortest grid piece: two bars of 4/4.
MIN_SEGMENT_BEATS = 8
# A piece between two others shorter than this means a wandering beat, not a tempo change:
# four bars of 4/4.
MIN_INNER_SEGMENT_BEATS = 16
# Below this tempo confidence the pulse is too unclear to lay a grid on.
MIN_TEMPO_CONFIDENCE = 0.5
# Beats per bar assumed when the analysis does not know the meter.
DEFAULT_BEATS_PER_BAR = 4
# Refits of a line without the beats it misses.
_REFITS = 3


@dataclass(frozen=True)
class GridSegment:
    """A constant-tempo piece of the grid, from its first beat to the next piece's."""

    start_s: float  # the piece's first beat on the grid, seconds from the start of the song
    bpm: float  # beats per minute
    beat_in_bar: int  # 1-based position in the bar of the beat at start_s
    beats_per_bar: int
    first_beat: int  # index of the piece's first beat in the analysis
    beats: int  # analysed beats the piece covers

    @property
    def period_s(self) -> float:
        """Seconds per beat."""
        return 60.0 / self.bpm

    def beat_times_s(self) -> F64:
        """The grid's beat times over the piece, seconds."""
        out: F64 = self.start_s + self.period_s * np.arange(self.beats, dtype=np.float64)
        return out


@dataclass(frozen=True)
class Grid:
    segments: tuple[GridSegment, ...]
    # Share of the analysed beats within GRID_TOLERANCE_S of the grid, 0 to 1.
    on_grid_share: float

    @property
    def mean_bpm(self) -> float:
        """Tempo of the whole grid: the pieces' tempi weighted by the beats they cover, BPM."""
        beats = sum(s.beats for s in self.segments)
        return sum(s.bpm * s.beats for s in self.segments) / beats

    @property
    def first_downbeat_s(self) -> float:
        """The first beat 1 on the grid, seconds (where Traktor's grid marker goes)."""
        first = self.segments[0]
        to_bar = (first.beats_per_bar - first.beat_in_bar + 1) % first.beats_per_bar
        return first.start_s + to_bar * first.period_s

    def beat_times_s(self) -> F64:
        """Every grid beat over the analysed beats, seconds."""
        out: F64 = np.concatenate([s.beat_times_s() for s in self.segments])
        return out


@dataclass(frozen=True)
class GridResult:
    grid: Grid | None
    # Why there is no grid ("" when there is one).
    reason: str = ""
    # Assumptions the grid rests on, for the person exporting (e.g. an unknown meter).
    notes: tuple[str, ...] = ()


def fit_grid(analysis: common_pb2.SongAnalysis) -> GridResult:
    """The song's grid, or None and the reason there is none (see the module docstring)."""
    times = np.array([b.time_s for b in analysis.beats], dtype=np.float64)
    confidence = float(analysis.tempo.confidence)
    if len(times) == 0:
        return GridResult(None, "no beat grid: the analysis found no beats")
    if confidence < MIN_TEMPO_CONFIDENCE:
        return GridResult(
            None,
            f"no beat grid: tempo confidence {confidence:.2f} is below {MIN_TEMPO_CONFIDENCE}",
        )
    if len(times) < MIN_SEGMENT_BEATS:
        return GridResult(
            None, f"no beat grid: {len(times)} beats are fewer than {MIN_SEGMENT_BEATS}"
        )
    positions, per_bar, notes = _positions(analysis)
    bar_starts = [i for i, p in enumerate(positions) if p == 1]
    pieces = _join(times, _split(times, 0, len(times), bar_starts))
    on_grid = sum(_line(times[lo:hi]).inliers for lo, hi in pieces)
    share = on_grid / len(times)
    if share < INLIER_SHARE:
        return GridResult(
            None,
            f"no beat grid: the beat is not steady, only {share:.0%} of beats lie within "
            f"{GRID_TOLERANCE_S * 1000:.0f} ms of a grid of constant-tempo pieces",
        )
    short = [(lo, hi) for lo, hi in pieces[1:-1] if hi - lo < MIN_INNER_SEGMENT_BEATS]
    if short:
        lo, hi = short[0]
        return GridResult(
            None,
            f"no beat grid: the beat wanders (the tempo would change {len(pieces) - 1} times, "
            f"for as little as {hi - lo} beats from {times[lo]:.1f} s)",
        )
    segments = tuple(_segment(times, lo, hi, positions, per_bar) for lo, hi in pieces)
    return GridResult(Grid(segments, round(share, 3)), "", notes)


def _positions(analysis: common_pb2.SongAnalysis) -> tuple[list[int], int, tuple[str, ...]]:
    """1-based beat positions in the bar and beats per bar; bar 1 assumed at the first beat
    when the analysis does not know the meter."""
    positions = [int(b.position_in_bar) for b in analysis.beats]
    per_bar = max(positions)
    if per_bar > 0 and all(p > 0 for p in positions):
        return positions, per_bar, ()
    per_bar = DEFAULT_BEATS_PER_BAR
    assumed = [i % per_bar + 1 for i in range(len(positions))]
    return assumed, per_bar, ("meter unknown: 4/4 with bar 1 at the first beat assumed",)


@dataclass(frozen=True)
class _Fit:
    period_s: float
    start_s: float  # the line's time at the piece's first beat
    inliers: int


def _line(times: F64) -> _Fit:
    """Least-squares line through (beat number, time), refitted without the beats it misses."""
    index = np.arange(len(times), dtype=np.float64)
    keep = np.ones(len(times), dtype=bool)
    slope, intercept = np.polyfit(index, times, 1)
    for _ in range(_REFITS):
        close = np.abs(slope * index + intercept - times) <= GRID_TOLERANCE_S
        if close.sum() < 2 or np.array_equal(close, keep):
            break
        keep = close
        slope, intercept = np.polyfit(index[keep], times[keep], 1)
    inliers = int((np.abs(slope * index + intercept - times) <= GRID_TOLERANCE_S).sum())
    return _Fit(float(slope), float(intercept), inliers)


def _steady(times: F64) -> bool:
    return _line(times).inliers >= INLIER_SHARE * len(times)


def _split(times: F64, lo: int, hi: int, bar_starts: list[int]) -> list[tuple[int, int]]:
    """Pieces [lo, hi) of steady tempo, split at bar lines (module docstring, step 2)."""
    if _steady(times[lo:hi]) or hi - lo < 2 * MIN_SEGMENT_BEATS:
        return [(lo, hi)]
    cuts = [k for k in bar_starts if lo + MIN_SEGMENT_BEATS <= k <= hi - MIN_SEGMENT_BEATS]
    if not cuts:
        cuts = list(range(lo + MIN_SEGMENT_BEATS, hi - MIN_SEGMENT_BEATS + 1))
    best = max(cuts, key=lambda k: _line(times[lo:k]).inliers + _line(times[k:hi]).inliers)
    return _split(times, lo, best, bar_starts) + _split(times, best, hi, bar_starts)


def _join(times: F64, pieces: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Joins neighbouring pieces that one steady line fits (module docstring, step 3)."""
    out = [pieces[0]]
    for lo, hi in pieces[1:]:
        if _steady(times[out[-1][0] : hi]):
            out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def _segment(times: F64, lo: int, hi: int, positions: list[int], per_bar: int) -> GridSegment:
    fit = _line(times[lo:hi])
    # A first beat the line puts before the song's start (by a few ms): the piece starts one
    # beat later on the same line, since DJ programs take no negative grid times.
    skip = 0
    while fit.start_s + skip * fit.period_s < 0.0 and skip < hi - lo - 1:
        skip += 1
    return GridSegment(
        start_s=fit.start_s + skip * fit.period_s,
        bpm=60.0 / fit.period_s,
        beat_in_bar=positions[lo + skip],
        beats_per_bar=per_bar,
        first_beat=lo + skip,
        beats=hi - lo - skip,
    )


__all__ = [
    "GRID_TOLERANCE_S",
    "INLIER_SHARE",
    "MIN_INNER_SEGMENT_BEATS",
    "MIN_SEGMENT_BEATS",
    "MIN_TEMPO_CONFIDENCE",
    "Grid",
    "GridResult",
    "GridSegment",
    "fit_grid",
]
