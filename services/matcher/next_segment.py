"""NextSegment: where to leave a song, and which segments of other songs to move into.

Candidates are the `limit` segments nearest to the exit vector by their entry vector
(Qdrant's HNSW search, over-fetched, with the user's filter), re-scored in numpy with the other
components, then reduced to the best segment per song unless several per song are allowed.

Conditions that hold for nearly every point (live, not the song being left, same model
version) are checked in Python on the over-fetched hits instead of in Qdrant: a filter that
rejects almost nothing only slows graph traversal down. Song points have no entry vector, so
an entry search never returns them.

The search returns ids and scores only; what scoring needs about each hit comes from the
library's segment-facts cache (reading payloads back was a third of the engine's time), and
the display fields of the k results from their song points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from segue.v1 import matcher_pb2
from services.matcher import schema, scoring
from services.matcher.conditions import Condition
from services.matcher.errors import InvalidArgumentError
from services.matcher.filters import build_filter
from services.matcher.library import SongLibrary, SongRecord
from services.matcher.payload import tempo_from_payload
from services.matcher.segment_facts import SegmentFacts
from services.matcher.store import ENTRY, EXIT, StoredRecord, VectorDims
from services.matcher.validation import (
    MAX_BPM,
    MAX_DURATION_S,
    MIN_BPM,
    check_camelot,
    check_key,
    check_number,
    check_optional_number,
    check_vector,
)

DEFAULT_K = 10
MAX_K = 100
MAX_CANDIDATES = 2000


@dataclass(frozen=True)
class Source:
    """What is known about the music being left."""

    exit: list[float]
    feel: list[float] | None = None
    tempo_bpm: float | None = None
    camelot: str | None = None
    energy: float | None = None
    song_id: str | None = None
    model_version: str | None = None
    exit_time_s: float = 0.0
    exit_segment: int | None = None


@dataclass
class ScoredCandidate:
    point_id: str
    song_id: str
    segment_index: int
    start_s: float
    end_s: float
    score: float
    components: np.ndarray[Any, np.dtype[np.float64]]
    weighted: np.ndarray[Any, np.dtype[np.float64]]
    payload: dict[str, Any] = field(repr=False)

    def breakdown(self) -> matcher_pb2.ScoreBreakdown:
        return scoring.breakdown(self.components, self.weighted)


def exit_segment_index(song: SongRecord, time_s: float | None) -> int:
    """The segment whose end is nearest to `time_s`; the last one when None (song end)."""
    segments = song.segments
    if time_s is None:
        return len(segments) - 1
    ends = [float(s[1]) for s in segments]
    return min(range(len(ends)), key=lambda i: (abs(ends[i] - time_s), i))


def source_from_song(library: SongLibrary, song: SongRecord, exit_index: int) -> Source:
    segment = library.segment(song, exit_index, vectors=(EXIT,))
    payload = song.payload
    return Source(
        exit=segment.vectors[EXIT],
        feel=song.feel,
        tempo_bpm=tempo_from_payload(payload),
        camelot=payload.get("camelot") or None,
        energy=float(segment.payload.get("energy", 0.0)),
        song_id=song.song_id,
        model_version=payload.get("model_version") or None,
        exit_time_s=float(segment.payload["end_s"]),
        exit_segment=exit_index,
    )


def resolve_source(library: SongLibrary, request: matcher_pb2.NextSegmentRequest) -> Source:
    kind = request.WhichOneof("from")
    if kind == "position":
        position = request.position
        song = library.song(position.song_id, field="position.song_id", with_feel=True)
        at = position.WhichOneof("at")
        if at == "time_s":
            check_number(position.time_s, "position.time_s", 0.0, MAX_DURATION_S)
            index = exit_segment_index(song, position.time_s)
        else:
            index = exit_segment_index(song, None)
        return source_from_song(library, song, index)
    if kind == "vectors":
        return _raw_source(request.vectors, library.store.dims)
    raise InvalidArgumentError("from", "set position or vectors")


def _raw_source(raw: matcher_pb2.RawQuery, dims: VectorDims) -> Source:
    """A query of raw vectors and facts, each checked."""
    check_vector(raw.exit, dims.transition, "vectors.exit")
    if raw.feel:
        check_vector(raw.feel, dims.feel, "vectors.feel")
    tempo = check_optional_number(raw.tempo_bpm, "vectors.tempo_bpm", MIN_BPM, MAX_BPM)
    camelot: str | None = None
    if raw.HasField("key"):
        check_key(raw.key, "vectors.key")
        camelot = check_camelot(raw.key.camelot, "vectors.key.camelot") if raw.key.camelot else None
    energy = check_number(raw.energy, "vectors.energy", 0.0, 1.0)
    return Source(
        exit=list(raw.exit),
        feel=list(raw.feel) or None,
        tempo_bpm=tempo or None,
        camelot=camelot,
        energy=energy if energy > 0 else None,
    )


def check_k(k: int) -> int:
    if k == 0:
        return DEFAULT_K
    if k > MAX_K:
        raise InvalidArgumentError("k", f"must be 1 to {MAX_K}, got {k}")
    return k


@dataclass
class NextSegmentFinder:
    """Runs candidate search and re-scoring on a library."""

    library: SongLibrary
    overfetch: int = 5
    min_candidates: int = 50

    def candidate_limit(self, k: int, allow_multiple: bool) -> int:
        per_result = 2 if allow_multiple else self.overfetch
        return min(MAX_CANDIDATES, max(self.min_candidates, k * per_result))

    @staticmethod
    def _servable(facts: SegmentFacts | None, source: Source) -> bool:
        """Live segments of other songs from the same model version."""
        if facts is None or not facts.live or facts.song_id == source.song_id:
            return False
        return source.model_version is None or facts.model_version == source.model_version

    def find(
        self,
        source: Source,
        *,
        k: int,
        weights: scoring.Weights,
        user_filter: Condition | None = None,
        allow_multiple: bool = False,
        target_energy: float | None = None,
        limit: int | None = None,
        full_payload: bool = True,
    ) -> list[ScoredCandidate]:
        """The k best candidates; `full_payload` also reads their songs' payloads (metadata,
        key, tempo) for display, else `payload` is empty."""
        found = self.library.store.search(
            ENTRY,
            source.exit,
            user_filter,
            limit or self.candidate_limit(k, allow_multiple),
            with_payload=(),
        )
        all_facts = self.library.segment_facts([h.id for h in found])
        kept = [
            (hit, facts)
            for hit, facts in zip(found, all_facts, strict=True)
            if facts is not None and self._servable(facts, source)
        ]
        if not kept:
            return []
        hits = [hit for hit, _ in kept]
        facts_list = [facts for _, facts in kept]
        components = self._components(source, hits, facts_list, target_energy)
        out = self._best(hits, facts_list, components, weights, k, allow_multiple)
        if full_payload and out:
            # Only what results show: the song point's segments and analysis stay unread.
            songs = self.library.song_payloads({c.song_id for c in out}, schema.SHOWN_IN_RESULTS)
            for c in out:
                c.payload = songs.get(c.song_id, {})
        return out

    @staticmethod
    def _best(
        hits: list[StoredRecord],
        facts_list: list[SegmentFacts],
        components: npt.NDArray[np.float64],
        weights: scoring.Weights,
        k: int,
        allow_multiple: bool,
    ) -> list[ScoredCandidate]:
        """The k best-scored candidates (the best segment per song unless `allow_multiple`),
        without payloads."""
        weighted, total = scoring.combine(components, weights)
        order = np.argsort(-total, kind="stable")
        out: list[ScoredCandidate] = []
        seen: set[str] = set()
        for i in order:
            facts = facts_list[i]
            song_id = facts.song_id
            if not allow_multiple:
                if song_id in seen:
                    continue
                seen.add(song_id)
            out.append(
                ScoredCandidate(
                    point_id=hits[i].id,
                    song_id=song_id,
                    segment_index=facts.segment_index,
                    start_s=facts.start_s,
                    end_s=facts.end_s,
                    score=float(total[i]),
                    components=components[i],
                    weighted=weighted[i],
                    payload={},
                )
            )
            if len(out) == k:
                break
        return out

    def _components(
        self,
        source: Source,
        hits: list[StoredRecord],
        facts_list: list[SegmentFacts],
        target_energy: float | None,
    ) -> npt.NDArray[np.float64]:
        """The score components [candidates, 5] of the kept hits."""
        n = len(hits)
        components = np.empty((n, len(scoring.COMPONENTS)), dtype=np.float64)
        components[:, 0] = scoring.cosine_component(np.array([h.score for h in hits]))
        if source.feel is not None:
            song_feels = self.library.feels({(f.song_id, f.generation) for f in facts_list})
            query = np.asarray(source.feel, dtype=np.float64)
            feels = np.zeros((n, query.size), dtype=np.float64)
            for i, f in enumerate(facts_list):
                feel = song_feels.get(f.song_id)
                if feel is not None:
                    feels[i] = feel
            norms = np.linalg.norm(feels, axis=1) * np.linalg.norm(query)
            components[:, 1] = scoring.cosine_component(feels @ query / np.maximum(norms, 1e-12))
        else:
            components[:, 1] = scoring.NEUTRAL
        tempos = np.array([f.tempo_bpm for f in facts_list], dtype=np.float64)
        components[:, 2] = scoring.tempo_component(source.tempo_bpm, tempos)
        components[:, 3] = scoring.key_component(source.camelot, [f.camelot for f in facts_list])
        energy_ref = target_energy if target_energy is not None else source.energy
        components[:, 4] = scoring.energy_component(
            energy_ref, np.array([f.energy for f in facts_list], dtype=np.float64)
        )
        return components


def user_filter_for(
    spec: matcher_pb2.Filter, source: Source, required: Sequence[str] = ()
) -> Condition | None:
    return build_filter(
        spec,
        source_tempo_bpm=source.tempo_bpm,
        source_camelot=source.camelot,
        required_song_ids=required,
    )
