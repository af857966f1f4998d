"""What NextSegment needs to know about a candidate segment, kept in memory by point id.

Reading a segment's payload back from qdrant-edge costs about 6 us per point (the whole
payload is decoded even when a few fields are asked for): with 50 candidates per query that was
a third of the engine's time. Searches therefore return only ids and scores, and the facts come
from this cache, filled when segments are written and, on a miss, read from the store.

The cache can never serve stale facts: a segment point's id is derived from its song version's
content hash (`point_ids`), so an id always names the same content. The one mutable field is
`state`, and only live facts are cached: a version is live once committed and stays so until
deleted (rewriting the same version briefly marks it pending again, with the same facts, and
serving it meanwhile is harmless). A deleted point
leaves an entry behind until its song is rewritten or deleted here, but the engine no longer
returns its id, so it is never looked up. This holds across processes too (several matchers on
one Qdrant server): another writer's segments are simply misses here.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.matcher.payload import LIVE

DEFAULT_LIMIT = 1_000_000  # ~300 bytes each: ~300 MB at the limit


@dataclass(frozen=True, slots=True)
class SegmentFacts:
    song_id: str
    generation: str
    segment_index: int
    start_s: float
    end_s: float
    energy: float  # NaN when unknown
    tempo_bpm: float  # NaN when unknown
    camelot: str | None
    model_version: str | None
    live: bool

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> SegmentFacts:
        """Reads the fields `schema.SCORED_SEGMENT_FIELDS` names."""
        tempo = payload.get("tempo_bpm")
        energy = payload.get("energy")
        return cls(
            song_id=str(payload["song_id"]),
            generation=str(payload["generation"]),
            segment_index=int(payload["segment_index"]),
            start_s=float(payload["start_s"]),
            end_s=float(payload["end_s"]),
            energy=float(energy) if isinstance(energy, int | float) else math.nan,
            tempo_bpm=float(tempo) if isinstance(tempo, int | float) and tempo > 0 else math.nan,
            camelot=str(payload["camelot"]).strip().upper() if payload.get("camelot") else None,
            model_version=str(payload["model_version"]) if payload.get("model_version") else None,
            live=payload.get("state") == LIVE,
        )


class SegmentFactsCache:
    """Facts of live segments by point id, bounded: once full, new ones are not kept."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self._facts: dict[str, SegmentFacts] = {}
        self._limit = limit
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._facts)

    def room(self) -> int:
        """How many more segments fit."""
        return max(0, self._limit - len(self._facts))

    def get(self, point_id: str) -> SegmentFacts | None:
        return self._facts.get(point_id)

    def put_live(self, items: Iterable[tuple[str, SegmentFacts]]) -> None:
        with self._lock:
            room = self._limit - len(self._facts)
            for point_id, facts in items:
                if facts.live and (point_id in self._facts or room > 0):
                    if point_id not in self._facts:
                        room -= 1
                    self._facts[point_id] = facts

    def evict(self, point_ids: Iterable[str]) -> None:
        with self._lock:
            for point_id in point_ids:
                self._facts.pop(point_id, None)
