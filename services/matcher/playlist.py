"""PlanPlaylist: beam search over NextSegment.

Each step leaves the current song at its end (its last segment's exit vector) and enters the
next song at the segment NextSegment ranks best, restricted to segments starting in the first
half of their song so that every song is heard for a while. A beam keeps the `beam_width`
partial playlists with the best mean transition score; each is extended by its
`beam_width` best next songs, so one locally weaker step can win when it leads to better
ones (greedy search cannot). Songs never repeat. Seeds after the first must all appear: they
are offered as candidates at every step and forced once the remaining steps are needed for
them. With a target energy curve, the energy component compares the candidate's energy with
the curve at that step instead of with the energy being left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segue.v1 import matcher_pb2
from services.matcher import scoring
from services.matcher.conditions import Condition, MatchAny, Not, Range, all_of
from services.matcher.config import DEFAULT_MAX_PLAN_COST
from services.matcher.errors import InvalidArgumentError
from services.matcher.filters import build_filter
from services.matcher.library import SongRecord
from services.matcher.next_segment import NextSegmentFinder, ScoredCandidate, source_from_song
from services.matcher.payload import tempo_from_payload
from services.matcher.validation import (
    check_count,
    check_number,
    check_song_id,
    check_values_within,
)

DEFAULT_SONGS = 10
MAX_STEPS = 200
MAX_BEAM_WIDTH = 32
MAX_ENTRY_FRACTION = 0.5
MAX_ENERGY_POINTS = 1_000
# A playlist by duration lasts 1 s to a week.
MIN_PLAYLIST_S = 1.0
MAX_PLAYLIST_S = 604_800.0


@dataclass(frozen=True)
class PlannedStep:
    song_id: str
    entry_time_s: float
    candidate: ScoredCandidate | None  # None for the first song


@dataclass
class _Beam:
    steps: list[PlannedStep]
    total: float = 0.0
    played_s: float = 0.0
    used: frozenset[str] = field(default_factory=frozenset)

    @property
    def mean(self) -> float:
        transitions = len(self.steps) - 1
        return self.total / transitions if transitions else 0.0


@dataclass
class PlaylistPlan:
    steps: list[PlannedStep]
    songs: dict[str, SongRecord]
    total_score: float


def _resample(curve: list[float], length: int) -> list[float]:
    if not curve:
        return []
    if len(curve) == 1:
        return [curve[0]] * length
    positions = np.linspace(0, len(curve) - 1, num=length)
    return [float(v) for v in np.interp(positions, np.arange(len(curve)), curve)]


@dataclass(frozen=True)
class _Spec:
    """What a PlanPlaylistRequest asks for, checked."""

    seeds: list[str]
    weights: scoring.Weights
    width: int
    target_songs: int | None  # num_songs (or the default), else None
    target_s: float | None  # duration_s, else None
    max_steps: int  # songs the search may reach
    energy: list[float]  # the target energy per step, or empty


def _check_request(request: matcher_pb2.PlanPlaylistRequest) -> float | None:
    """Everything checkable without the store; returns duration_s when the length is one.
    Repeated fields are counted before any of them is read."""
    check_count("seed_song_ids", len(request.seed_song_ids), MAX_STEPS)
    check_count("energy_curve", len(request.energy_curve), MAX_ENERGY_POINTS)
    if request.beam_width > MAX_BEAM_WIDTH:
        raise InvalidArgumentError("beam_width", f"must be at most {MAX_BEAM_WIDTH}")
    seeds = list(request.seed_song_ids)
    _check_seeds(seeds)
    check_values_within(
        request.energy_curve, len(request.energy_curve), "energy_curve[{}]", 0.0, 1.0
    )
    if request.WhichOneof("length") == "duration_s":
        return check_number(request.duration_s, "duration_s", MIN_PLAYLIST_S, MAX_PLAYLIST_S)
    songs = request.num_songs if request.HasField("num_songs") else DEFAULT_SONGS
    if not len(seeds) <= songs <= MAX_STEPS:
        raise InvalidArgumentError(
            "num_songs", f"must be between the number of seeds and {MAX_STEPS}"
        )
    return None


def _check_cost(field: str, songs: int, width: int, max_cost: int) -> None:
    if songs * width > max_cost:
        raise InvalidArgumentError(
            field,
            f"{songs} songs x beam_width {width} = {songs * width} is over the plan cost limit "
            f"{max_cost} (SEGUE_MAX_PLAN_COST): ask for fewer songs or a narrower beam",
        )


def _check_seeds(seeds: list[str]) -> None:
    if not seeds:
        raise InvalidArgumentError("seed_song_ids", "at least one seed is required")
    for i, seed in enumerate(seeds):
        check_song_id(seed, f"seed_song_ids[{i}]")
    if len(set(seeds)) != len(seeds):
        raise InvalidArgumentError("seed_song_ids", "seeds must not repeat")


class PlaylistPlanner:
    def __init__(
        self,
        finder: NextSegmentFinder,
        default_beam_width: int = 8,
        max_cost: int = DEFAULT_MAX_PLAN_COST,
    ) -> None:
        self.finder = finder
        self.library = finder.library
        self.default_beam_width = default_beam_width
        self.max_cost = max_cost
        self._songs: dict[str, SongRecord] = {}
        self._filters: dict[tuple[float | None, str | None], Condition | None] = {}

    def _song(self, song_id: str, field: str = "seed_song_ids") -> SongRecord:
        if song_id not in self._songs:
            self._songs[song_id] = self.library.song(song_id, field=field, with_feel=True)
        return self._songs[song_id]

    def _spec(self, request: matcher_pb2.PlanPlaylistRequest) -> _Spec:
        """The request checked (INVALID_ARGUMENT), its seeds found (NOT_FOUND), its beam
        width chosen and its cost bounded."""
        target_s = _check_request(request)
        weights = scoring.Weights.from_proto(request.weights)
        seeds = list(request.seed_song_ids)
        for seed in seeds:
            self._song(seed)  # NOT_FOUND before any search
        if target_s is None:
            steps = request.num_songs if request.HasField("num_songs") else DEFAULT_SONGS
        else:
            typical = max(float(self._song(seeds[0]).payload.get("duration_s", 0.0)), 1.0)
            steps = min(MAX_STEPS, max(len(seeds), math.ceil(target_s / typical)))
        # The server's default beam narrows to fit the cost limit; a beam asked for does not.
        width = request.beam_width or max(1, min(self.default_beam_width, self.max_cost // steps))
        _check_cost("num_songs" if target_s is None else "duration_s", steps, width, self.max_cost)
        return _Spec(
            seeds=seeds,
            weights=weights,
            width=width,
            target_songs=steps if target_s is None else None,
            target_s=target_s,
            max_steps=min(MAX_STEPS, max(steps, self.max_cost // width)),
            energy=_resample(list(request.energy_curve), steps),
        )

    def plan(self, request: matcher_pb2.PlanPlaylistRequest) -> PlaylistPlan:
        self._songs = {}
        self._filters = {}
        spec = self._spec(request)
        first = self._song(spec.seeds[0])
        # Validates the filter up front; excluding a seed is contradictory.
        camelot = first.payload.get("camelot") or None
        self._user_filter(request.filter, spec.seeds, tempo_from_payload(first.payload), camelot)
        start = _Beam(
            steps=[PlannedStep(first.song_id, 0.0, None)],
            played_s=float(first.payload.get("duration_s", 0.0)),
            used=frozenset({first.song_id}),
        )
        finished, beams = self._search(start, spec, request)
        pool = [b for b in finished if self._seeds_done(b, spec.seeds)] or finished or beams
        best = max(pool, key=lambda b: (len(b.steps) if spec.target_songs else 0, b.mean))
        return PlaylistPlan(best.steps, dict(self._songs), best.total)

    def _search(
        self, start: _Beam, spec: _Spec, request: matcher_pb2.PlanPlaylistRequest
    ) -> tuple[list[_Beam], list[_Beam]]:
        """The beam search: (the beams that finished, the last beams)."""
        beams = [start]
        finished: list[_Beam] = []
        for step in range(1, spec.max_steps):
            if spec.target_songs is not None and step >= spec.target_songs:
                return beams, beams
            expanded: list[_Beam] = []
            for beam in beams:
                if (
                    spec.target_s is not None
                    and beam.played_s >= spec.target_s
                    and self._seeds_done(beam, spec.seeds)
                ):
                    finished.append(beam)
                    continue
                expanded.extend(self._expand(beam, step, spec, request))
            if not expanded:
                return finished, beams
            expanded.sort(key=lambda b: (-b.mean, [s.song_id for s in b.steps]))
            beams = expanded[: spec.width]
        return [*finished, *beams], beams

    def _user_filter(
        self,
        spec: matcher_pb2.Filter,
        seeds: list[str],
        tempo_bpm: float | None,
        camelot: str | None,
    ) -> Condition | None:
        """The request's filter as seen from a song of this tempo and key, built once."""
        key = (tempo_bpm, camelot)
        if key not in self._filters:
            self._filters[key] = build_filter(
                spec, source_tempo_bpm=tempo_bpm, source_camelot=camelot, required_song_ids=seeds
            )
        return self._filters[key]

    @staticmethod
    def _seeds_done(beam: _Beam, seeds: list[str]) -> bool:
        return all(s in beam.used for s in seeds)

    def _expand(
        self, beam: _Beam, step: int, spec: _Spec, request: matcher_pb2.PlanPlaylistRequest
    ) -> list[_Beam]:
        current = self._song(beam.steps[-1].song_id)
        source = source_from_song(self.library, current, len(current.segments) - 1)
        user = self._user_filter(request.filter, spec.seeds, source.tempo_bpm, source.camelot)
        remaining_seeds = tuple(s for s in spec.seeds if s not in beam.used)
        target_energy = spec.energy[min(step, len(spec.energy) - 1)] if spec.energy else None
        common: list[Condition | None] = [
            user,
            Not(MatchAny("song_id", tuple(sorted(beam.used)))),
            Range("start_frac", lte=MAX_ENTRY_FRACTION),
        ]
        forced = spec.target_songs is not None and spec.target_songs - step <= len(remaining_seeds)
        candidates: list[ScoredCandidate] = []
        if not forced:
            candidates = self.finder.find(
                source, k=spec.width, weights=spec.weights, user_filter=all_of(*common),
                target_energy=target_energy, full_payload=False,
            )  # fmt: skip
        if remaining_seeds:
            seeded = self.finder.find(
                source,
                k=len(remaining_seeds),
                weights=spec.weights,
                user_filter=all_of(*common, MatchAny("song_id", remaining_seeds)),
                target_energy=target_energy,
                full_payload=False,
            )
            known = {c.song_id for c in candidates}
            candidates.extend(c for c in seeded if c.song_id not in known)
        return [self._extended(beam, c) for c in candidates]

    def _extended(self, beam: _Beam, c: ScoredCandidate) -> _Beam:
        song = self._song(c.song_id)
        played = float(song.payload.get("duration_s", c.end_s)) - c.start_s
        return _Beam(
            steps=[*beam.steps, PlannedStep(c.song_id, c.start_s, c)],
            total=beam.total + c.score,
            played_s=beam.played_s + played,
            used=beam.used | {c.song_id},
        )


def step_exit_times(plan: PlaylistPlan) -> list[float]:
    """Where each song is left: its end (the next step enters after the last segment)."""
    out: list[float] = []
    for step in plan.steps:
        song = plan.songs[step.song_id]
        segments = song.segments
        out.append(float(segments[-1][1]) if segments else float(song.payload["duration_s"]))
    return out


def step_payload(plan: PlaylistPlan, step: PlannedStep) -> dict[str, Any]:
    return plan.songs[step.song_id].payload
