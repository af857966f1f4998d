"""A planned transition: where the overlap sits on both songs and how the incoming song is
played, everything of the render but the audio. `planner.plan_transition` makes it; the mix,
the bass swap, the quality report and the continuous mix read it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .beatgrid import BeatGrid
from .length_reason import LengthReason, TempoReading
from .stretch import TimeMap

FloatArray = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Playback:
    """How B is played against A: its key shift and the tempo it is stretched to."""

    grid_a: BeatGrid  # A's grid as it is mixed (re-read only in the 3:2 family)
    grid_b: BeatGrid  # B's grid at the level matched to A's, in B's key-shifted time
    grid_b_own: BeatGrid  # B's grid as given or analysed
    key_shift: int  # semitones B is shifted by
    pitch: float  # B's speed-up from the key shift (1.0 = none)
    tempo_ratio: float  # B's playing speed over its own tempo, before the key-shift resampling
    beat_matched: bool  # False for free-time fades (no beat grids to line up)
    reading: TempoReading | None  # a song's beats read at another level; None: as tracked
    keys_compatible: bool | None  # after the shift; None when a key is unknown


@dataclass(frozen=True)
class Overlap:
    """Where the overlap sits on both beat grids and on the output's time axis."""

    beats_per_bar: int
    n_beats: int  # the overlap's length in beats of A's grid
    beat_period_s: float  # A's beat period
    beats_a: F64  # A's beats in output time (s)
    ia_start: int  # A's beat where the overlap starts
    ia_end: int  # ... and where A is gone
    beats_b: F64  # B's beats (after the key shift) in B's time (s)
    ib_start: int
    ib_end: int
    a_origin_s: float  # A's time at the output's first sample
    start_s: float  # the overlap in output time
    end_s: float
    # A's downbeats inside the overlap (output time): where the bass may change hands.
    downbeats_s: F64

    @property
    def bars(self) -> int:
        return round(self.n_beats / self.beats_per_bar)

    @property
    def bar_s(self) -> float:
        """One bar of A's grid (s)."""
        return self.beats_per_bar * self.beat_period_s


@dataclass(frozen=True)
class Plan:
    """A transition planned: the render minus the audio."""

    rate_hz: int
    playback: Playback
    overlap: Overlap
    time_map: TimeMap  # output time -> B's time (s)
    n_out: int  # output frames
    b_audio: FloatArray  # B after the key shift, [2, frames]
    reason: LengthReason  # why the overlap is this long (without the bass swap)

    @property
    def duration_s(self) -> float:
        return self.n_out / self.rate_hz
