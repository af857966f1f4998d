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
from services.matcher.errors import InvalidArgumentError
from services.matcher.filters import build_filter
from services.matcher.library import SongRecord
from services.matcher.next_segment import NextSegmentFinder, ScoredCandidate, source_from_song
from services.matcher.payload import tempo_from_payload

DEFAULT_SONGS = 10
MAX_STEPS = 200
MAX_BEAM_WIDTH = 32
MAX_ENTRY_FRACTION = 0.5


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


class PlaylistPlanner:
    def __init__(self, finder: NextSegmentFinder, default_beam_width: int = 8) -> None:
        self.finder = finder
        self.library = finder.library
        self.default_beam_width = default_beam_width
        self._songs: dict[str, SongRecord] = {}

    def _song(self, song_id: str) -> SongRecord:
        if song_id not in self._songs:
            self._songs[song_id] = self.library.song(song_id, with_feel=True)
        return self._songs[song_id]

    def plan(self, request: matcher_pb2.PlanPlaylistRequest) -> PlaylistPlan:
        self._songs = {}
        seeds = list(request.seed_song_ids)
        if not seeds:
            raise InvalidArgumentError("seed_song_ids", "at least one seed is required")
        if len(set(seeds)) != len(seeds):
            raise InvalidArgumentError("seed_song_ids", "seeds must not repeat")
        weights = scoring.Weights.from_proto(request.weights)
        width = request.beam_width or self.default_beam_width
        if width > MAX_BEAM_WIDTH:
            raise InvalidArgumentError("beam_width", f"must be at most {MAX_BEAM_WIDTH}")
        for value in request.energy_curve:
            if not math.isfinite(value) or not 0 <= value <= 1:
                raise InvalidArgumentError("energy_curve", "values must be within [0, 1]")
        for seed in seeds:
            self._song(seed)  # NOT_FOUND before any search
        first = self._song(seeds[0])
        length_kind = request.WhichOneof("length")
        target_songs: int | None = None
        target_s: float | None = None
        if length_kind == "duration_s":
            if not math.isfinite(request.duration_s) or request.duration_s <= 0:
                raise InvalidArgumentError("duration_s", "must be a positive number")
            target_s = request.duration_s
            typical = max(float(first.payload.get("duration_s", 0.0)), 1.0)
            estimated_steps = min(MAX_STEPS, max(len(seeds), math.ceil(target_s / typical)))
        else:
            target_songs = request.num_songs if length_kind == "num_songs" else DEFAULT_SONGS
            if not len(seeds) <= target_songs <= MAX_STEPS:
                raise InvalidArgumentError(
                    "num_songs", f"must be between the number of seeds and {MAX_STEPS}"
                )
            estimated_steps = target_songs
        energy = _resample(list(request.energy_curve), estimated_steps)
        # Validates the filter up front; excluding a seed is contradictory.
        build_filter(
            request.filter,
            source_tempo_bpm=tempo_from_payload(first.payload),
            source_camelot=first.payload.get("camelot") or None,
            required_song_ids=seeds,
        )

        start = _Beam(
            steps=[PlannedStep(first.song_id, 0.0, None)],
            played_s=float(first.payload.get("duration_s", 0.0)),
            used=frozenset({first.song_id}),
        )
        beams = [start]
        finished: list[_Beam] = []
        for step in range(1, MAX_STEPS):
            if target_songs is not None and step >= target_songs:
                finished = beams
                break
            expanded: list[_Beam] = []
            for beam in beams:
                if (
                    target_s is not None
                    and beam.played_s >= target_s
                    and self._seeds_done(beam, seeds)
                ):
                    finished.append(beam)
                    continue
                expanded.extend(
                    self._expand(beam, step, seeds, target_songs, request, weights, width, energy)
                )
            if not expanded:
                break
            expanded.sort(key=lambda b: (-b.mean, [s.song_id for s in b.steps]))
            beams = expanded[:width]
        else:
            finished.extend(beams)
        pool = [b for b in finished if self._seeds_done(b, seeds)] or finished or beams
        best = max(pool, key=lambda b: (len(b.steps) if target_songs else 0, b.mean))
        return PlaylistPlan(best.steps, dict(self._songs), best.total)

    @staticmethod
    def _seeds_done(beam: _Beam, seeds: list[str]) -> bool:
        return all(s in beam.used for s in seeds)

    def _expand(
        self,
        beam: _Beam,
        step: int,
        seeds: list[str],
        target_songs: int | None,
        request: matcher_pb2.PlanPlaylistRequest,
        weights: scoring.Weights,
        width: int,
        energy: list[float],
    ) -> list[_Beam]:
        current = self._song(beam.steps[-1].song_id)
        source = source_from_song(self.library, current, len(current.segments) - 1)
        user = build_filter(
            request.filter,
            source_tempo_bpm=source.tempo_bpm,
            source_camelot=source.camelot,
            required_song_ids=seeds,
        )
        remaining_seeds = tuple(s for s in seeds if s not in beam.used)
        target_energy = energy[min(step, len(energy) - 1)] if energy else None
        common: list[Condition | None] = [
            user,
            Not(MatchAny("song_id", tuple(sorted(beam.used)))),
            Range("start_frac", lte=MAX_ENTRY_FRACTION),
        ]
        forced = target_songs is not None and target_songs - step <= len(remaining_seeds)
        candidates: list[ScoredCandidate] = []
        if not forced:
            candidates = self.finder.find(
                source, k=width, weights=weights, user_filter=all_of(*common),
                target_energy=target_energy, full_payload=False,
            )  # fmt: skip
        if remaining_seeds:
            seeded = self.finder.find(
                source,
                k=len(remaining_seeds),
                weights=weights,
                user_filter=all_of(*common, MatchAny("song_id", remaining_seeds)),
                target_energy=target_energy,
                full_payload=False,
            )
            known = {c.song_id for c in candidates}
            candidates.extend(c for c in seeded if c.song_id not in known)
        out: list[_Beam] = []
        for c in candidates:
            song = self._song(c.song_id)
            played = float(song.payload.get("duration_s", c.end_s)) - c.start_s
            out.append(
                _Beam(
                    steps=[*beam.steps, PlannedStep(c.song_id, c.start_s, c)],
                    total=beam.total + c.score,
                    played_s=beam.played_s + played,
                    used=beam.used | {c.song_id},
                )
            )
        return out


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
