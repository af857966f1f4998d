"""Choosing the triplets of a session: random, active, gold and repeated pages.

A session plan is a list of pages, one per position (0-based):

- RANDOM: three distinct songs drawn uniformly from the library.
- ACTIVE: of many random candidate triples, those where the current model is least sure: the
  smallest margin between the closest and the second-closest pair of feel vectors.
- GOLD: one page in every block of `gold_every` pages: two clips of one song (not overlapping)
  and one of another song, whose slot is the known odd one out.
- REPEAT: an earlier RANDOM or ACTIVE page of the same session again, its clips rotated so
  every clip moves to another slot.

Item ids only exist once the store has the earlier page, so a repeat is planned as a
`PlannedRepeat` naming the earlier page's position; the caller stores the pages in order and
turns each repeat into its triplet with `PlannedRepeat.resolve(item id of that position)`.

Clip start times lie on the library's clip grid (`clip_grid`): multiples of one step inside
the song's middle 80% (the first and last 10% skipped) where the song is long enough, else as
near the middle as the clip allows; every session draws from the same finite set of clips.
Every choice draws from the one `rng`: the same seed gives the same plans.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from segue.studio.clip_grid import DEFAULT_STEP_S, ClipGrid, to_ms
from segue.studio.model import Clip, Triplet, TripletKind

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

# Candidate triples scored per session for its active pages (at least 4 per active page).
ACTIVE_CANDIDATES = 512
# A repeat comes at least this many pages after its original where the session allows.
MIN_REPEAT_GAP = 3


@dataclass(frozen=True, eq=False)
class LibrarySong:
    """A song the Studio may play: its id, its length (seconds) and its feel vector (any
    length, compared by cosine distance) or None where the model has not embedded it."""

    song_id: str
    duration_s: float
    feel: FloatArray | None = None

    def __post_init__(self) -> None:
        if not self.song_id:
            raise ValueError("a library song needs a non-empty song_id")
        if not (math.isfinite(self.duration_s) and self.duration_s > 0.0):
            raise ValueError(f"song {self.song_id!r}: duration must be a finite number of "
                             f"seconds > 0, got {self.duration_s}")
        if self.feel is not None:
            object.__setattr__(self, "feel", _checked_feel(f"song {self.song_id!r}", self.feel))


def _checked_feel(whose: str, feel: FloatArray) -> FloatArray:
    """`feel` as a float32 1-D copy; ValueError naming `whose` when it is empty, non-finite
    or all zero."""
    vector = np.array(feel, dtype=np.float32).reshape(-1)
    if vector.size == 0 or not np.isfinite(vector).all() or not vector.any():
        raise ValueError(f"{whose}: the feel vector must be non-empty, finite and not all zero")
    return vector


@dataclass(frozen=True)
class PlannedRepeat:
    """A page repeating the page at `of_position`; `triplet` is the REPEAT triplet with its
    clips rotated and `repeat_of` still None (the original's item id is not known yet)."""

    of_position: int
    triplet: Triplet

    def resolve(self, item_id: str) -> Triplet:
        """The triplet to store, given the item id of the page at `of_position`."""
        return replace(self.triplet, repeat_of=item_id)


PlannedPage = Triplet | PlannedRepeat


def model_answer(feels: Sequence[FloatArray]) -> tuple[int, float]:
    """The model's odd one out among three feel vectors and its margin.

    The closest pair by cosine distance belongs together; the odd one out is the slot (0..2)
    not in it. The margin (cosine-distance units, >= 0) is the second-smallest pairwise
    distance minus the smallest: near 0, the model could as well have picked another slot.
    """
    if len(feels) != 3:
        raise ValueError(f"model_answer needs 3 feel vectors, got {len(feels)}")
    vectors = [_checked_feel(f"slot {i}", f) for i, f in enumerate(feels)]
    if len({v.size for v in vectors}) != 1:
        raise ValueError("the three feel vectors differ in length")
    unit = _unit_rows(np.stack(vectors))
    odd, margin = _odd_and_margin(unit[None, 0], unit[None, 1], unit[None, 2])
    return int(odd[0]), float(margin[0])


def _unit_rows(matrix: FloatArray) -> FloatArray:
    """Rows of `matrix` scaled to length 1 (no row is all zero)."""
    unit: FloatArray = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    return unit.astype(np.float32)


def _odd_and_margin(
    a: FloatArray, b: FloatArray, c: FloatArray
) -> tuple[IntArray, npt.NDArray[np.float64]]:
    """Odd slots and margins of many triples of unit vectors (rows of `a`, `b`, `c`)."""
    # Column s: the distance of the pair that leaves slot s out.
    apart = np.stack([1.0 - np.sum(b * c, axis=1, dtype=np.float64),
                      1.0 - np.sum(a * c, axis=1, dtype=np.float64),
                      1.0 - np.sum(a * b, axis=1, dtype=np.float64)], axis=1)
    ordered = np.sort(apart, axis=1)
    odd: IntArray = np.argmin(apart, axis=1).astype(np.int64)
    return odd, ordered[:, 1] - ordered[:, 0]


@dataclass(frozen=True)
class _Layout:
    """Which kind each page of a session is; `repeats` maps a repeat page to its original."""

    kinds: list[TripletKind]
    repeats: dict[int, int]


class TripletChooser:
    """Plans sessions over a library (see the module's description).

    `clip_s`: clip length, seconds; songs shorter are never played. `active_fraction`: share
    of the RANDOM-or-ACTIVE pages chosen actively (all random where fewer than 3 playable
    songs have feel vectors). `gold_every`: one gold page per block of this many pages.
    `repeats`: pages shown twice per session, as many as fit (each needs its own original).
    `grid`: where clips may start (default: every DEFAULT_STEP_S seconds, no limit per song);
    its clip length must be `clip_s`.
    """

    def __init__(self, songs: Sequence[LibrarySong], *, clip_s: float, active_fraction: float,
                 gold_every: int, repeats: int, rng: np.random.Generator,
                 active_candidates: int = ACTIVE_CANDIDATES,
                 grid: ClipGrid | None = None) -> None:
        _check_settings(clip_s, active_fraction, gold_every, repeats, active_candidates)
        self.clip_s = clip_s
        self.active_fraction = active_fraction
        self.gold_every = gold_every
        self.repeats = repeats
        self.active_candidates = active_candidates
        self._rng = rng
        self._grid = grid or ClipGrid.of(clip_s, DEFAULT_STEP_S)
        if self._grid.clip_ms != ClipGrid.of(clip_s, DEFAULT_STEP_S).clip_ms:
            raise ValueError(f"the clip grid is for {self._grid.clip_ms} ms clips, not "
                             f"{clip_s:g} s")
        self._songs = _playable(songs, self._grid.clip_ms)
        self._gold_songs = [i for i, s in enumerate(self._songs)
                            if to_ms(s.duration_s) >= 2 * self._grid.clip_ms]
        if not self._gold_songs:
            raise ValueError(f"gold pages need a song of at least {2 * clip_s:g} s (two "
                             f"clips of {clip_s:g} s); the library has none")
        self._feel_songs = np.array([i for i, s in enumerate(self._songs)
                                     if s.feel is not None], dtype=np.int64)
        self._feels = _feel_matrix([self._songs[i] for i in self._feel_songs])

    @property
    def playable(self) -> int:
        """Number of songs long enough for a clip."""
        return len(self._songs)

    def session_plan(self, length: int) -> list[PlannedPage]:
        """The pages of a session of `length` pages, in order (see the module's description)."""
        if length < 1:
            raise ValueError(f"a session needs at least 1 page, got {length}")
        layout = self._layout(length)
        pages: list[PlannedPage | None] = [None] * length
        active = [p for p, k in enumerate(layout.kinds) if k is TripletKind.ACTIVE]
        for position, triplet in zip(active, self._active_triplets(len(active)), strict=True):
            pages[position] = triplet
        for position, kind in enumerate(layout.kinds):
            if kind is TripletKind.GOLD:
                pages[position] = self._gold_triplet()
            elif kind is TripletKind.RANDOM:
                pages[position] = self._random_triplet()
        for position, original in sorted(layout.repeats.items()):
            earlier = pages[original]
            assert isinstance(earlier, Triplet)
            pages[position] = PlannedRepeat(original, self._rotated(earlier))
        return [page for page in pages if page is not None]

    def _layout(self, length: int) -> _Layout:
        """The kind of every page: gold first, then repeats and their originals, then the
        remaining pages split between active and random."""
        kinds = [TripletKind.RANDOM] * length
        for block in range(length // self.gold_every):
            kinds[block * self.gold_every + int(self._rng.integers(self.gold_every))] = (
                TripletKind.GOLD)
        others = [p for p, k in enumerate(kinds) if k is not TripletKind.GOLD]
        repeats = self._repeat_pairs(others)
        for position in repeats:
            kinds[position] = TripletKind.REPEAT
        fresh = [p for p, k in enumerate(kinds) if k is TripletKind.RANDOM]
        count = round(self.active_fraction * len(fresh)) if self._feel_songs.size >= 3 else 0
        if count:
            for position in self._rng.choice(fresh, size=count, replace=False):
                kinds[int(position)] = TripletKind.ACTIVE
        return _Layout(kinds, repeats)

    def _repeat_pairs(self, others: list[int]) -> dict[int, int]:
        """Repeat page -> original page, among the non-gold pages `others` (sorted).

        Repeats lie in the later half where it has room; the k-th repeat is at least the
        (count + k)-th non-gold page, so it always has an unused earlier original.
        """
        count = min(self.repeats, len(others) // 2)
        if count == 0:
            return {}
        pool = others[max(count, len(others) // 2):]
        if len(pool) < count:
            pool = others[count:]
        chosen = sorted(int(p) for p in self._rng.choice(pool, size=count, replace=False))
        pairs: dict[int, int] = {}
        for position in chosen:
            free = [o for o in others
                    if o < position and o not in chosen and o not in pairs.values()]
            far = [o for o in free if position - o >= MIN_REPEAT_GAP]
            pairs[position] = int(self._rng.choice(far or free))
        return pairs

    def _random_triplet(self) -> Triplet:
        """Three distinct playable songs drawn uniformly, with the model's answer if known."""
        songs = [self._songs[int(i)] for i in self._distinct_triples(len(self._songs), 1)[0]]
        clips = (self._clip(songs[0]), self._clip(songs[1]), self._clip(songs[2]))
        feels = [s.feel for s in songs]
        if any(f is None for f in feels):
            return Triplet(clips, TripletKind.RANDOM)
        odd, margin = model_answer([f for f in feels if f is not None])
        return Triplet(clips, TripletKind.RANDOM, model_odd=odd, model_margin=margin)

    def _active_triplets(self, count: int) -> list[Triplet]:
        """`count` triplets of the smallest model margins among random candidate triples
        (distinct song sets; reused in turn when the library has fewer than `count`)."""
        if count == 0:
            return []
        rows = self._distinct_triples(self._feel_songs.size,
                                      max(self.active_candidates, 4 * count))
        rows = np.unique(np.sort(rows, axis=1), axis=0)
        rows = self._rng.permuted(rows, axis=1)  # a random slot order for every triple
        odd, margin = _odd_and_margin(*(self._feels[rows[:, s]] for s in range(3)))
        best = np.argsort(margin, kind="stable")
        picks = [int(best[i % best.size]) for i in range(count)]
        return [self._active_triplet(rows[i], int(odd[i]), float(margin[i])) for i in picks]

    def _active_triplet(self, row: IntArray, odd: int, margin: float) -> Triplet:
        """The ACTIVE triplet of feel-song indices `row` with the model's answer."""
        songs = [self._songs[int(self._feel_songs[i])] for i in row]
        clips = (self._clip(songs[0]), self._clip(songs[1]), self._clip(songs[2]))
        return Triplet(clips, TripletKind.ACTIVE, model_odd=odd, model_margin=margin)

    def _gold_triplet(self) -> Triplet:
        """Two non-overlapping clips of one song and a clip of another, in a random order."""
        same = self._gold_songs[int(self._rng.integers(len(self._gold_songs)))]
        other = int(self._rng.integers(len(self._songs) - 1))
        other += other >= same  # any playable song but `same`
        song = self._songs[same]
        first, second = self._grid.random_pair_ms(to_ms(song.duration_s), self._rng)
        clips = [Clip(song.song_id, first / 1000.0, self.clip_s),
                 Clip(song.song_id, second / 1000.0, self.clip_s),
                 self._clip(self._songs[other])]
        order = [int(i) for i in self._rng.permutation(3)]
        return Triplet((clips[order[0]], clips[order[1]], clips[order[2]]), TripletKind.GOLD,
                       expected_odd=order.index(2))

    def _rotated(self, triplet: Triplet) -> Triplet:
        """`triplet` as a REPEAT with its clips rotated by one or two slots (every clip moves);
        the model's odd slot follows its clip."""
        shift = int(self._rng.integers(1, 3))
        c = triplet.clips
        clips = (c[shift % 3], c[(1 + shift) % 3], c[(2 + shift) % 3])
        odd = None if triplet.model_odd is None else (triplet.model_odd - shift) % 3
        return Triplet(clips, TripletKind.REPEAT, model_odd=odd,
                       model_margin=triplet.model_margin)

    def _clip(self, song: LibrarySong) -> Clip:
        """A clip of `song` starting at a random point of its grid."""
        start = self._grid.random_start_ms(to_ms(song.duration_s), self._rng)
        return Clip(song.song_id, start / 1000.0, self.clip_s)

    def _distinct_triples(self, n: int, count: int) -> IntArray:
        """`count` rows of three distinct indices below `n` (>= 3), uniform, random order."""
        parts: list[IntArray] = []
        have = 0
        while have < count:
            draw = self._rng.integers(n, size=(2 * count + 8, 3))
            ok = (draw[:, 0] != draw[:, 1]) & (draw[:, 0] != draw[:, 2]) & (
                draw[:, 1] != draw[:, 2])
            parts.append(draw[ok].astype(np.int64))
            have += int(ok.sum())
        return np.concatenate(parts)[:count]


def _check_settings(clip_s: float, active_fraction: float, gold_every: int, repeats: int,
                    active_candidates: int) -> None:
    """ValueError naming the first setting out of range."""
    if not (math.isfinite(clip_s) and clip_s > 0.0):
        raise ValueError(f"clip_s must be a finite number of seconds > 0, got {clip_s}")
    if not 0.0 <= active_fraction <= 1.0:
        raise ValueError(f"active_fraction must be 0 to 1, got {active_fraction}")
    if gold_every < 2:
        raise ValueError(f"gold_every must be at least 2, got {gold_every}")
    if repeats < 0:
        raise ValueError(f"repeats must be >= 0, got {repeats}")
    if active_candidates < 1:
        raise ValueError(f"active_candidates must be >= 1, got {active_candidates}")


def _playable(songs: Sequence[LibrarySong], clip_ms: int) -> list[LibrarySong]:
    """The songs at least one clip long; ValueError on duplicate ids or fewer than 3."""
    ids = [s.song_id for s in songs]
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"song ids must be unique; repeated: {', '.join(twice[:5])}")
    playable = [s for s in songs if to_ms(s.duration_s) >= clip_ms]
    if len(playable) < 3:
        raise ValueError(f"a triplet needs 3 songs of at least {clip_ms / 1000:g} s; the "
                         f"library has {len(playable)} of its {len(songs)} songs that long")
    return playable


def _feel_matrix(songs: Sequence[LibrarySong]) -> FloatArray:
    """The songs' feel vectors as unit rows; ValueError where their lengths differ."""
    feels = [s.feel for s in songs if s.feel is not None]
    if not feels:
        return np.zeros((0, 1), dtype=np.float32)
    sizes = {f.size for f in feels}
    if len(sizes) != 1:
        raise ValueError(f"feel vectors must all have one length, got {sorted(sizes)}")
    return _unit_rows(np.stack(feels))


__all__ = [
    "ACTIVE_CANDIDATES",
    "LibrarySong",
    "PlannedPage",
    "PlannedRepeat",
    "TripletChooser",
    "model_answer",
]
