"""Songs stored as points, with replacements that are never served half-written.

A song not stored yet is written with one upsert of its song point and live segment points:
one write-ahead-log entry, so it appears whole or not at all.

Replacing a song with version G:
1. upsert its segment points with `generation=G, state="pending"` (ids depend on G, so the
   old version's points stay untouched and served);
2. upsert the song point with `generation=G` (the commit record);
3. delete the song's segments of any other generation;
4. mark its G segments "live".
Queries serve only live segments, so a reader sees the old version, briefly no segments, or
the new version, never a mix. `recover()` (run at start-up) finishes or rolls back writes a
crash interrupted: pending segments whose generation is the song point's are committed, others
deleted. A delete is one filter delete, atomic in the write-ahead log.

Feel vectors of songs are cached by (song id, generation): a generation is a content hash,
so a cached entry can never be stale.

Writes of one song are serialised by a lock stripe, so concurrent upserts of one song in this
process leave exactly one version.
"""

from __future__ import annotations

import threading
import zlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from segue.v1 import common_pb2, matcher_pb2
from services.matcher import payload as pl
from services.matcher.conditions import Condition, Match, Not, all_of
from services.matcher.errors import NotFoundError
from services.matcher.point_ids import generation_of, segment_point_id, song_point_id
from services.matcher.store import ENTRY, EXIT, FEEL, PointData, SegmentStore, StoredRecord
from services.matcher.validation import check_analysis, check_song_id

_LOCK_STRIPES = 64


@dataclass(frozen=True)
class UpsertResult:
    song_id: str
    segments_stored: int
    replaced: bool


@dataclass(frozen=True)
class SongRecord:
    """The song point of a stored song."""

    song_id: str
    payload: dict[str, Any]
    feel: list[float] | None

    @property
    def generation(self) -> str:
        return str(self.payload["generation"])

    @property
    def segments(self) -> list[list[Any]]:
        """[start_s, end_s, energy, section_letter] per segment, in song order."""
        return list(self.payload.get("segments", []))


def live_segments() -> Condition:
    return all_of(Match("kind", pl.SEGMENT), Match("state", pl.LIVE))


def _of_song(song_id: str) -> Condition:
    return Match("song_id", song_id)


class SongLibrary:
    """Song-level reads and crash-consistent writes over a SegmentStore."""

    def __init__(
        self,
        store: SegmentStore,
        *,
        flush_each_write: bool = False,
        feel_cache_size: int = 200_000,
    ) -> None:
        self.store = store
        self._flush_each_write = flush_each_write
        self._locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]
        self._recovered = False
        self._feel_cache: dict[tuple[str, str], list[float]] = {}
        self._feel_cache_limit = feel_cache_size

    def preload_feels(self) -> int:
        """Fills the feel cache with every stored song (one scroll over song points), so the
        first queries do not pay for fetching candidates' feel vectors; returns songs loaded."""
        self.ensure_ready()
        records = self.store.scroll(Match("kind", pl.SONG), (FEEL,))
        for record in records[: self._feel_cache_limit]:
            feel = record.vectors.get(FEEL)
            if feel is not None:
                key = (str(record.payload["song_id"]), str(record.payload["generation"]))
                self._feel_cache[key] = feel
        return min(len(records), self._feel_cache_limit)

    def feels(self, keys: set[tuple[str, str]]) -> dict[str, list[float]]:
        """Feel vector per song id for (song id, generation) pairs, from cache or the store."""
        out: dict[str, list[float]] = {}
        missing: list[str] = []
        for song_id, generation in keys:
            cached = self._feel_cache.get((song_id, generation))
            if cached is None:
                missing.append(song_id)
            else:
                out[song_id] = cached
        if missing:
            records = self.store.retrieve([song_point_id(s) for s in missing], (FEEL,))
            if len(self._feel_cache) + len(records) > self._feel_cache_limit:
                self._feel_cache.clear()  # crude but bounded; refills with what is queried
            for record in records:
                feel = record.vectors.get(FEEL)
                if feel is not None:
                    song_id = str(record.payload["song_id"])
                    out[song_id] = feel
                    self._feel_cache[(song_id, str(record.payload["generation"]))] = feel
        return out

    def ensure_ready(self) -> None:
        """Readies the store, and on its first success repairs what a crash left behind."""
        self.store.ensure_ready()
        if not self._recovered:
            self._recovered = True
            self.recover()

    def _lock(self, song_id: str) -> threading.Lock:
        return self._locks[zlib.crc32(song_id.encode()) % _LOCK_STRIPES]

    def song(self, song_id: str, *, with_feel: bool = False) -> SongRecord:
        """The stored song; NotFoundError when absent."""
        check_song_id(song_id)
        found = self.find(song_id, with_feel=with_feel)
        if found is None:
            raise NotFoundError(song_id)
        return found

    def find(self, song_id: str, *, with_feel: bool = False) -> SongRecord | None:
        self.ensure_ready()
        records = self.store.retrieve([song_point_id(song_id)], (FEEL,) if with_feel else ())
        if not records:
            return None
        record = records[0]
        return SongRecord(song_id, record.payload, record.vectors.get(FEEL))

    def segment(self, song: SongRecord, index: int, *, vectors: tuple[str, ...]) -> StoredRecord:
        """One segment of the song's current version."""
        records = self.store.retrieve(
            [segment_point_id(song.song_id, song.generation, index)], vectors
        )
        if not records:
            # Only possible while a replacement is being committed, or after a crash.
            raise NotFoundError(song.song_id)
        return records[0]

    def segments_with_vectors(self, song: SongRecord) -> list[StoredRecord]:
        ids = [
            segment_point_id(song.song_id, song.generation, i) for i in range(len(song.segments))
        ]
        records = self.store.retrieve(ids, (ENTRY, EXIT))
        return sorted(records, key=lambda r: int(r.payload["segment_index"]))

    def upsert(
        self, analysis: common_pb2.SongAnalysis, metadata: matcher_pb2.SongMetadata
    ) -> UpsertResult:
        check_analysis(analysis, self.store.dims)
        self.ensure_ready()
        song_id = analysis.song_id
        generation = generation_of(analysis, metadata)
        count = len(analysis.segments)
        with self._lock(song_id):
            existing = self.find(song_id)
            if existing is not None and existing.generation == generation:
                live = self.store.count(
                    all_of(_of_song(song_id), live_segments(), Match("generation", generation))
                )
                if live == count:
                    return UpsertResult(song_id, count, replaced=True)  # already stored
            new = existing is None
            points = [
                PointData(
                    segment_point_id(song_id, generation, segment.index),
                    {
                        FEEL: list(analysis.feel),
                        ENTRY: list(segment.entry),
                        EXIT: list(segment.exit),
                    },
                    pl.segment_payload(analysis, metadata, generation, segment, live=new),
                )
                for segment in analysis.segments
            ]
            song_point = PointData(
                song_point_id(song_id),
                {FEEL: list(analysis.feel)},
                pl.song_payload(analysis, metadata, generation),
            )
            if new:
                self.store.upsert([*points, song_point])
            else:
                self.store.upsert(points)
                self.store.upsert([song_point])
                self._commit(song_id, generation)
            if self._flush_each_write:
                self.store.flush()
        return UpsertResult(song_id, count, replaced=existing is not None)

    def _commit(self, song_id: str, generation: str) -> None:
        self.store.delete(
            all_of(
                _of_song(song_id), Match("kind", pl.SEGMENT), Not(Match("generation", generation))
            )
        )
        self.store.set_payload(
            all_of(_of_song(song_id), Match("kind", pl.SEGMENT), Match("generation", generation)),
            {"state": pl.LIVE},
        )

    def delete(self, song_id: str) -> int:
        """Removes the song and all its points; returns the segments removed."""
        check_song_id(song_id)
        self.ensure_ready()
        with self._lock(song_id):
            if self.find(song_id) is None:
                raise NotFoundError(song_id)
            removed = self.store.count(all_of(_of_song(song_id), Match("kind", pl.SEGMENT)))
            self.store.delete(_of_song(song_id))
            if self._flush_each_write:
                self.store.flush()
        return removed

    def recover(self) -> int:
        """Finishes or rolls back writes a crash interrupted; returns the songs repaired."""
        self.store.ensure_ready()
        self._recovered = True
        pending = self.store.scroll(all_of(Match("kind", pl.SEGMENT), Match("state", pl.PENDING)))
        generations: dict[str, set[str]] = defaultdict(set)
        for record in pending:
            generations[str(record.payload["song_id"])].add(str(record.payload["generation"]))
        for song_id, gens in generations.items():
            with self._lock(song_id):
                current = self.find(song_id)
                for generation in gens:
                    if current is not None and current.generation == generation:
                        self._commit(song_id, generation)
                    else:
                        self.store.delete(
                            all_of(
                                _of_song(song_id),
                                Match("generation", generation),
                                Match("state", pl.PENDING),
                            )
                        )
        if generations:
            self.store.flush()
        return len(generations)

    def song_count(self) -> int:
        self.ensure_ready()
        return self.store.count(Match("kind", pl.SONG))

    def point_count(self) -> int:
        self.ensure_ready()
        return self.store.count(None)
