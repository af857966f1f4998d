"""Where clips may start: whole multiples of one step, the same for every session.

A song's clips start on multiples of `step_ms` (from the song's beginning) inside its window:
all but the first and last EDGE_FRACTION of the song, narrowed less where the clips would not
fit. Where `per_song` is set, a long song keeps only that many of those starts, spread evenly
over its window, so that a library of n songs has about n * per_song clips at most.

The clips a library can serve are therefore a finite set shared by every annotator: a clip
cut once serves every session that draws it, and the whole library can be cut ahead
(`ClipGrid.library_clips`). Where no multiple of the step fits, the window's start is the one
start, so every playable song still has one.

All times are whole milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# Share of a song skipped at each end where the song is long enough (intros, fade-outs).
EDGE_FRACTION = 0.1
# Default spacing of clip starts, seconds: coarse enough that a library's clips can be cut
# ahead, fine enough that two sessions rarely hear the same excerpt of a long song.
DEFAULT_STEP_S = 2.0


def to_ms(seconds: float) -> int:
    """Whole milliseconds in `seconds`, rounded down."""
    return math.floor(seconds * 1000.0 + 1e-6)


def window_ms(duration_ms: int, need_ms: int) -> tuple[int, int]:
    """The part of a song (ms, start and end) clips are taken from: all but the first and
    last EDGE_FRACTION, narrowed less (symmetrically) where `need_ms` would not fit."""
    edge = min(math.floor(EDGE_FRACTION * duration_ms), (duration_ms - need_ms) // 2)
    return edge, duration_ms - edge


@dataclass(frozen=True)
class ClipGrid:
    """Clip starts of `clip_ms`-long clips on multiples of `step_ms`, at most `per_song` of
    them per song (0: no limit)."""

    clip_ms: int
    step_ms: int
    per_song: int = 0

    def __post_init__(self) -> None:
        if self.clip_ms < 1 or self.step_ms < 1:
            raise ValueError(f"clip and step must be at least 1 ms, got {self.clip_ms} and "
                             f"{self.step_ms}")
        if self.per_song < 0:
            raise ValueError(f"per_song must be 0 (no limit) or more, got {self.per_song}")

    @classmethod
    def of(cls, clip_s: float, step_s: float, per_song: int = 0) -> ClipGrid:
        """The grid of `clip_s`-second clips (rounded up to whole ms) every `step_s` seconds,
        at most `per_song` starts per song (0: no limit)."""
        return cls(math.ceil(clip_s * 1000.0 - 1e-6), max(1, round(step_s * 1000.0)), per_song)

    def starts_ms(self, duration_ms: int, clips: int = 1) -> list[int]:
        """Starts of one clip in the window that `clips` back-to-back clips need (a song at
        least `clips` clips long); the window's start when no multiple of the step fits."""
        low, high = window_ms(duration_ms, clips * self.clip_ms)
        first = -(-low // self.step_ms) * self.step_ms
        starts = list(range(first, high - self.clip_ms + 1, self.step_ms))
        return _spread(starts, self.per_song) if starts else [low]

    def random_start_ms(self, duration_ms: int, rng: np.random.Generator) -> int:
        """One start drawn uniformly from `starts_ms(duration_ms)`."""
        starts = self.starts_ms(duration_ms)
        return starts[int(rng.integers(len(starts)))]

    def random_pair_ms(self, duration_ms: int, rng: np.random.Generator) -> tuple[int, int]:
        """Starts of two clips that do not overlap (a song at least two clips long), drawn
        uniformly over such pairs of grid starts; the window's two halves when none fit."""
        starts, partners = self._pairs(duration_ms)
        if partners.sum() == 0:
            return starts[0], starts[1]
        first = int(rng.choice(len(starts), p=partners / partners.sum()))
        second = len(starts) - partners[first] + int(rng.integers(partners[first]))
        return starts[first], starts[second]

    def every_start_ms(self, duration_ms: int) -> list[int]:
        """Every start `random_start_ms` or `random_pair_ms` can give for a song, ascending."""
        starts = set(self.starts_ms(duration_ms))
        if duration_ms >= 2 * self.clip_ms:
            starts |= set(self._pairs(duration_ms)[0])
        return sorted(starts)

    def _pairs(self, duration_ms: int) -> tuple[list[int], npt.NDArray[np.int64]]:
        """Starts of the two-clip window and, for each, how many later starts its clip does
        not overlap (always the last ones); where no pair fits, the window's two halves and
        zeros."""
        starts = self.starts_ms(duration_ms, clips=2)
        ends = np.asarray(starts, dtype=np.int64) + self.clip_ms
        partners = len(starts) - np.searchsorted(starts, ends, side="left")
        if partners.sum() == 0:
            low, _ = window_ms(duration_ms, 2 * self.clip_ms)
            return [low, low + self.clip_ms], np.zeros(2, dtype=np.int64)
        return starts, partners.astype(np.int64)

    def library_clips(self, songs: Sequence[tuple[str, float]]) -> Iterator[tuple[str, int]]:
        """(song id, start ms) of every clip of `songs` ((id, duration s) pairs), song by
        song in turn: the first start of every song, then the second, and so on, so that a
        partial pass still covers the whole library."""
        per_song = [(song_id, self.every_start_ms(to_ms(duration_s)))
                    for song_id, duration_s in songs if to_ms(duration_s) >= self.clip_ms]
        for index in range(max((len(s) for _, s in per_song), default=0)):
            for song_id, starts in per_song:
                if index < len(starts):
                    yield song_id, starts[index]


def _spread(starts: list[int], keep: int) -> list[int]:
    """`keep` of `starts` spread evenly from the first to the last (all when `keep` is 0 or
    there are no more; the middle one when `keep` is 1)."""
    if keep == 0 or len(starts) <= keep:
        return starts
    if keep == 1:
        return [starts[len(starts) // 2]]
    return [starts[round(i * (len(starts) - 1) / (keep - 1))] for i in range(keep)]


__all__ = ["DEFAULT_STEP_S", "EDGE_FRACTION", "ClipGrid", "to_ms", "window_ms"]
