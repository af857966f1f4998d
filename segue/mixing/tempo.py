"""The tempo B is played at: which beat grids, read at which metrical level, at what ratio.

Each excerpt's grid is the client's (or the caller's) when given, else the structure
analysis' of the excerpt. B is matched to A at the metrical level nearest A's tempo (see
TEMPO_LEVELS); a pair without a clear pulse, or one asked not to be beat-matched, is faded
at B's own tempo instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from . import beatgrid
from .auto_length import WEAK_BEAT
from .beatgrid import BeatGrid
from .errors import TempoMismatch, TempoMismatchError
from .excerpt import Excerpt
from .keys import KeyShift
from .length_reason import TempoReading
from .plan import Playback
from .style import Params, Style

FloatArray = npt.NDArray[np.float32]

# Readings of the incoming beat (beats of B per tracked beat) tried in turn, as a DJ would:
# the tracked beat, then half or double time, then the 3:2 and 4:3 family that a tracker
# confuses with the beat on short excerpts (dotted or triplet pulses). Within a tier the
# smallest stretch wins; the first tier with a reading inside the stretch limit is used.
# The 3:2 family re-reads only grids the mixer estimated itself: a client's analysis (of
# the whole song, usually) is taken at its word, as before.
TEMPO_LEVELS: tuple[tuple[float, ...], ...] = ((1.0,), (0.5, 2.0), (1.5, 2 / 3, 4 / 3, 3 / 4))
# ... and only when the new beats fall on onsets at least this strong, relative to the
# tracked beats (`beatgrid.reread`): a click track at another tempo scores 0.3 to 0.5.
MIN_REREAD_PLAUSIBILITY = 0.6


@dataclass(frozen=True)
class TempoMatch:
    grid_a: BeatGrid  # A's grid as it is mixed (re-read only in the 3:2 family)
    grid_b: BeatGrid  # B's grid at the level matched to A's
    ratio: float  # tempo ratio B is played at
    reading: TempoReading | None  # how the levels were read (None for the tracked beats)


def grid_of(excerpt: Excerpt) -> BeatGrid:
    """The excerpt's grid: given with it, from the client's analysis, else from the audio.

    Without a client grid the beats come from the project's structure analysis of the
    excerpt (`Excerpt.structure`), the same tracker the embedder runs.
    """
    if excerpt.grid is not None:
        return excerpt.grid
    if excerpt.analysis is not None:
        grid = beatgrid.from_analysis(excerpt.analysis)
        if grid is not None:
            return grid
    computed = beatgrid.from_analysis(excerpt.structure, "estimated")
    return computed if computed is not None else beatgrid.free_time(excerpt.duration_s)


def choose_playback(
    a: Excerpt,
    b: Excerpt,
    key: KeyShift,
    shifted_b: tuple[float, float],
    style: Style,
    params: Params,
) -> Playback:
    """How B is played: beat-matched to A, or (no clear pulse, or not asked) at its own tempo.

    `shifted_b` is (B's speed-up from the key shift, B's duration after it in seconds).
    Raises TempoMismatchError when the pair should be beat-matched but no reading of the
    beats fits the stretch limit.
    """
    grid_a, grid_b_own = grid_of(a), grid_of(b)
    pitch, b_duration_s = shifted_b
    if min(grid_a.clarity, grid_b_own.clarity) < WEAK_BEAT or not style.beat_match:
        grid_b = _free_time_grid(grid_a, grid_b_own, pitch, b_duration_s)
        return Playback(
            grid_a, grid_b, grid_b_own, key.semitones, pitch, pitch, False, None, key.compatible
        )
    matched = match_tempo(
        grid_a,
        grid_b_own.rescaled(pitch),
        params.max_stretch,
        (a.mono, b.mono, params.rate_hz, pitch),
    )
    return Playback(
        matched.grid_a,
        matched.grid_b,
        grid_b_own,
        key.semitones,
        pitch,
        matched.ratio * pitch,  # relative to B's own tempo, before the resampling
        True,
        matched.reading,
        key.compatible,
    )


def _free_time_grid(grid_a: BeatGrid, grid_b_own: BeatGrid, pitch: float, b_s: float) -> BeatGrid:
    """B's "beats" laid at A's period from B's first beat, through B's `b_s` seconds.

    No clear pulse to match (ballad, ambient): B fades at its own tempo, unstretched, and
    this grid keeps the overlap arithmetic the same as for a beat-matched pair.
    """
    start_b = float(grid_b_own.times_s[0]) / pitch
    times = start_b + grid_a.period_s * np.arange(int(b_s / grid_a.period_s) + 2, dtype=np.float64)
    return BeatGrid(
        times, np.zeros(times.size, np.int64), grid_a.bpm, grid_b_own.clarity, "free time"
    )


def _level_name(factor: float) -> str:
    names = {0.5: "half time", 2.0: "double time", 1.5: "3:2", 2 / 3: "2:3", 4 / 3: "4:3"}
    return names.get(factor, "3:4")


def match_tempo(
    grid_a: BeatGrid,
    grid_b: BeatGrid,
    max_stretch: float,
    audio: tuple[FloatArray, FloatArray, int, float] | None = None,
) -> TempoMatch:
    """B's grid at the metrical level nearest A's tempo (see TEMPO_LEVELS).

    `audio` is (A's mono, B's mono, rate, B's pitch factor): without it the 3:2 family is
    not tried, since its readings are placed and checked on the onsets. Raises
    TempoMismatchError when no reading fits within `max_stretch` (a fraction).
    """
    bpm_a = grid_a.bpm
    for tier in TEMPO_LEVELS:
        fits = sorted(
            (abs(math.log(bpm_a / (grid_b.bpm * f))), f)
            for f in tier
            if abs(bpm_a / (grid_b.bpm * f) - 1.0) <= max_stretch + 1e-9
        )
        for _, f in fits:
            if f in (1.0, 0.5, 2.0):
                grid = grid_b.at_level(f, grid_a.beats_per_bar)
                reading = None if f == 1.0 else TempoReading("incoming", _level_name(f))
                return TempoMatch(grid_a, grid, bpm_a / grid.bpm, reading)
            matched = _reread(grid_a, grid_b, f, audio) if audio is not None else None
            if matched is not None:
                return matched
    raise TempoMismatchError(TempoMismatch(bpm_a, grid_b.bpm, max_stretch))


def _reread(
    grid_a: BeatGrid,
    grid_b: BeatGrid,
    f: float,
    audio: tuple[FloatArray, FloatArray, int, float],
) -> TempoMatch | None:
    """B read at f, or A at 1/f, whichever the onsets make more plausible; None if neither.

    Either song may be the misread one, but only a grid the mixer estimated is re-read.
    """
    mono_a, mono_b, rate, pitch = audio
    bpb = grid_a.beats_per_bar
    b_plaus = a_plaus = 0.0
    b_read, a_read = grid_b, grid_a
    if grid_b.source != "analysis":  # B's grid is in the key-shifted time
        b_read, b_plaus = beatgrid.reread(grid_b.rescaled(1 / pitch), f, bpb, mono_b, rate)
    if grid_a.source != "analysis":
        a_read, a_plaus = beatgrid.reread(grid_a, 1 / f, bpb, mono_a, rate)
    if max(a_plaus, b_plaus) < MIN_REREAD_PLAUSIBILITY:
        return None
    if b_plaus >= a_plaus:
        grid = b_read.rescaled(pitch)
        reading = TempoReading("incoming", _level_name(f), True, grid_b.bpm, grid.bpm, b_plaus)
        return TempoMatch(grid_a, grid, grid_a.bpm / grid.bpm, reading)
    reading = TempoReading("outgoing", _level_name(1 / f), True, grid_a.bpm, a_read.bpm, a_plaus)
    return TempoMatch(a_read, grid_b, a_read.bpm / grid_b.bpm, reading)
