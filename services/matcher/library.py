"""Songs stored as points, with replacements that are never served half-written.

Writing version G of a song:
1. upsert its segment points with `generation=G, state="pending"` and only their own fields
   (ids depend on G, so an old version's points stay untouched and served); a song not
   stored yet gets its song point in the same upsert: one write-ahead-log entry;
2. (replacement) upsert the song point with `generation=G` (the commit record);
3. (replacement) delete the song's segments of any other generation;
4. commit: set `state="live"`, `kind` and the song fields filters use on the G segments.
Queries serve only live segments, so a reader sees the old version, briefly no segments, or
the new version, never a mix. `recover()` (run at start-up) finishes or rolls back writes a
crash interrupted: pending segments whose generation is the song point's are committed (the
fields to set derive from the song point), others deleted. A delete is one filter delete,
atomic in the write-ahead log.

Everything a write needs is checked and built before its first step, so a bad request writes
nothing. A write that fails part-way (the store refuses or cannot be reached) is settled at
once the same way `recover()` settles a crashed one, so no orphan points of it stay behind
until a restart: before step 2 its segment points are deleted and the previous version stays
whole; from step 2 on it is finished, and the new version is whole. When the store cannot be
reached for that either, the version is remembered and `settle_unsettled()` (run
periodically by the service) settles it once the store answers again.

The song point also keeps the rest of the song's analysis (beats, sections, cue points; see
payload): step 2 replaces it with the song point, and a delete removes it with the point.

Feel vectors of songs are cached by (song id, generation): a generation is a content hash,
so a cached entry can never be stale. Facts of live segments are cached by point id for the
same reason (see segment_facts).

Writes of one song are serialised by a lock stripe, so concurrent upserts of one song in this
process leave exactly one version.
"""

from __future__ import annotations

import heapq
import math
import threading
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from segue.log import get_logger
from segue.v1 import common_pb2, matcher_pb2
from services.matcher import payload as pl
from services.matcher import schema
from services.matcher.conditions import Condition, Match, Not, all_of
from services.matcher.errors import NotFoundError, mask_urls
from services.matcher.point_ids import (
    generation_of,
    segment_point_id,
    segment_point_ids,
    song_point_id,
)
from services.matcher.segment_facts import DEFAULT_LIMIT, SegmentFacts, SegmentFactsCache
from services.matcher.store import ENTRY, EXIT, FEEL, PointData, SegmentStore, StoredRecord
from services.matcher.validation import check_analysis, check_metadata, check_song_id

_LOCK_STRIPES = 64
log = get_logger("segue.matcher")


@dataclass(frozen=True)
class UpsertResult:
    song_id: str
    segments_stored: int
    replaced: bool


@dataclass(frozen=True)
class _Version:
    """Everything one UpsertSong writes, built before anything is written."""

    song_id: str
    generation: str
    ids: list[str]
    points: list[PointData]
    song: dict[str, Any]
    song_point: PointData

    @classmethod
    def build(
        cls,
        analysis: common_pb2.SongAnalysis,
        metadata: matcher_pb2.SongMetadata,
        rows: list[list[float]],
    ) -> _Version:
        song_id = analysis.song_id
        generation = generation_of(analysis, metadata)
        ids = segment_point_ids(song_id, generation, len(analysis.segments))
        points = [
            PointData(point_id, {ENTRY: rows[2 * i], EXIT: rows[2 * i + 1]}, payload)
            for i, (point_id, payload) in enumerate(
                zip(ids, pl.pending_segment_payloads(analysis, generation), strict=True)
            )
        ]
        song = pl.song_payload(analysis, metadata, generation)
        song_point = PointData(song_point_id(song_id), {FEEL: analysis.feel}, song)
        return cls(song_id, generation, ids, points, song, song_point)


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


@dataclass(frozen=True)
class SongPage:
    """Stored songs in song id order (`SongLibrary.list_songs`): `songs` with the fields asked
    for, `last_id` the last id the page covers ("" for none; a song deleted while the page was
    read is covered but not in `songs`), `more` whether matching songs follow it."""

    songs: list[SongRecord]
    last_id: str
    more: bool


def live_segments() -> Condition:
    return all_of(Match("kind", pl.SEGMENT), Match("state", pl.LIVE))


def _of_song(song_id: str) -> Condition:
    return Match("song_id", song_id)


def _live_facts(
    ids: list[str], analysis: common_pb2.SongAnalysis, song: dict[str, Any]
) -> list[tuple[str, SegmentFacts]]:
    """Facts of a just-committed version, as `SegmentFacts.from_payload` would read them."""
    tempo = pl.tempo_from_payload(song)
    camelot = song.get("camelot") or None
    model_version = song.get("model_version") or None
    return [
        (
            point_id,
            SegmentFacts(
                song_id=analysis.song_id,
                generation=str(song["generation"]),
                segment_index=segment.index,
                start_s=segment.start_s,
                end_s=segment.end_s,
                energy=segment.energy,
                tempo_bpm=math.nan if tempo is None else tempo,
                camelot=camelot,
                model_version=model_version,
                live=True,
            ),
        )
        for point_id, segment in zip(ids, analysis.segments, strict=True)
    ]


class SongLibrary:
    """Song-level reads and crash-consistent writes over a SegmentStore."""

    def __init__(
        self,
        store: SegmentStore,
        *,
        flush_each_write: bool = False,
        feel_cache_size: int = 200_000,
        segment_cache_size: int = DEFAULT_LIMIT,
    ) -> None:
        self.store = store
        self._flush_each_write = flush_each_write
        self._locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]
        self._recovered = False
        self._feel_cache: dict[tuple[str, str], list[float]] = {}
        self._feel_cache_limit = feel_cache_size
        self._segment_facts = SegmentFactsCache(segment_cache_size)
        # (song id, generation) of failed writes not settled yet (see settle_unsettled).
        self._unsettled: set[tuple[str, str]] = set()
        self._unsettled_lock = threading.Lock()

    def preload(self) -> tuple[int, int]:
        """Fills the feel and segment caches from the store (at start-up, so that the first
        queries pay for no store reads); returns (songs, segments) loaded."""
        songs = self.preload_feels()
        room = self._segment_facts.room()
        if room == 0:
            return songs, 0
        records = self.store.scroll(
            live_segments(), page_size=5000, with_payload=schema.SCORED_SEGMENT_FIELDS, limit=room
        )
        self._segment_facts.put_live((r.id, SegmentFacts.from_payload(r.payload)) for r in records)
        return songs, len(records)

    def segment_facts(self, point_ids: Sequence[str]) -> list[SegmentFacts | None]:
        """Facts of the given segment points, from the cache or else the store; None for a
        point that is gone."""
        cache = self._segment_facts
        out = [cache.get(point_id) for point_id in point_ids]
        missing = [point_id for point_id, facts in zip(point_ids, out, strict=True) if not facts]
        if missing:
            read = {
                r.id: SegmentFacts.from_payload(r.payload) for r in self.store.retrieve(missing)
            }
            cache.put_live(read.items())
            out = [
                facts or read.get(point_id) for point_id, facts in zip(point_ids, out, strict=True)
            ]
        return out

    def preload_feels(self) -> int:
        """Fills the feel cache with every stored song (one scroll over song points), so the
        first queries do not pay for fetching candidates' feel vectors; returns songs loaded."""
        self.ensure_ready()
        records = self.store.scroll(
            Match("kind", pl.SONG),
            (FEEL,),
            page_size=5000,
            with_payload=("song_id", "generation"),
            limit=self._feel_cache_limit,
        )
        for record in records:
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

    def song(self, song_id: str, *, field: str = "song_id", with_feel: bool = False) -> SongRecord:
        """The stored song; NotFoundError when absent (InvalidArgumentError naming `field`
        for an id no song can have)."""
        check_song_id(song_id, field)
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

    def list_songs(
        self,
        after: str,
        limit: int,
        where: Condition | None,
        *,
        fields: Sequence[str],
        with_feel: bool = False,
    ) -> SongPage:
        """Up to `limit` stored songs matching `where` whose ids follow `after` ("": from the
        first), in song id order, with `fields` of their payloads (and song_id). The store
        keeps no song-id order, so this reads the id of every matching song, then the page."""
        self.ensure_ready()
        records = self.store.scroll(
            all_of(Match("kind", pl.SONG), where), page_size=5000, with_payload=("song_id",)
        )
        ids = (str(r.payload["song_id"]) for r in records)
        following = heapq.nsmallest(limit + 1, (s for s in ids if s > after))
        page = following[:limit]
        found = {
            str(r.payload["song_id"]): r
            for r in self.store.retrieve(
                [song_point_id(s) for s in page],
                (FEEL,) if with_feel else (),
                with_payload=("song_id", *fields),
            )
        }
        songs = [
            SongRecord(s, found[s].payload, found[s].vectors.get(FEEL)) for s in page if s in found
        ]
        return SongPage(songs, page[-1] if page else "", len(following) > limit)

    def song_payloads(
        self, song_ids: set[str], fields: Sequence[str] | None = None
    ) -> dict[str, dict[str, Any]]:
        """Song-point payloads by song id (only `fields` and song_id, when given); absent
        songs are left out."""
        selected = None if fields is None else ["song_id", *fields]
        records = self.store.retrieve(
            [song_point_id(s) for s in sorted(song_ids)], with_payload=selected
        )
        return {str(r.payload["song_id"]): r.payload for r in records}

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
        records = self.store.retrieve(self._segment_ids(song), (ENTRY, EXIT))
        return sorted(records, key=lambda r: int(r.payload["segment_index"]))

    def analysis(self, song: SongRecord, *, with_vectors: bool) -> common_pb2.SongAnalysis:
        """The song's stored analysis; its feel (read with the song) and its segments' entry
        and exit vectors only `with_vectors`."""
        out = pl.analysis_from_payload(song.payload)
        if not with_vectors:
            return out
        if song.feel is not None:
            out.feel.extend(song.feel)
        vectors = {
            int(r.payload["segment_index"]): r.vectors for r in self.segments_with_vectors(song)
        }
        for segment in out.segments:
            found = vectors.get(segment.index, {})
            segment.entry.extend(found.get(ENTRY, []))
            segment.exit.extend(found.get(EXIT, []))
        return out

    def upsert(
        self, analysis: common_pb2.SongAnalysis, metadata: matcher_pb2.SongMetadata
    ) -> UpsertResult:
        """Stores or replaces a song. Everything is checked and every point built before
        anything is written; a write that fails part-way is settled at once (see `_settle`),
        or, when the store cannot be reached for that either, by `settle_unsettled`."""
        rows = check_analysis(analysis, self.store.dims)
        check_metadata(metadata)
        version = _Version.build(analysis, metadata, rows)
        self.ensure_ready()
        song_id = version.song_id
        count = len(version.ids)
        with self._lock(song_id):
            existing = self.find(song_id)
            if self._already_stored(existing, version):
                return UpsertResult(song_id, count, replaced=True)
            try:
                self._write(version, existing)
            except BaseException:
                self._settle_after_failure(song_id, version.generation)
                raise
            if existing is not None and existing.generation != version.generation:
                self._segment_facts.evict(self._segment_ids(existing))
            self._segment_facts.put_live(_live_facts(version.ids, analysis, version.song))
        return UpsertResult(song_id, count, replaced=existing is not None)

    def _already_stored(self, existing: SongRecord | None, version: _Version) -> bool:
        """This very version is stored whole (a song stored before whole analyses were kept
        is rewritten to keep its analysis)."""
        if (
            existing is None
            or existing.generation != version.generation
            or not pl.stores_whole_analysis(existing.payload)
        ):
            return False
        live = self.store.count(
            all_of(
                _of_song(version.song_id), live_segments(), Match("generation", version.generation)
            )
        )
        return live == len(version.ids)

    def _write(self, version: _Version, existing: SongRecord | None) -> None:
        """The write steps of the module docstring."""
        if existing is None:
            self.store.upsert([*version.points, version.song_point])
        else:
            self.store.upsert(version.points)
            self.store.upsert([version.song_point])
            self._drop_other_generations(version.song_id, version.generation)
        self.store.set_payload_by_ids(version.ids, pl.committed_segment_fields(version.song))
        if self._flush_each_write:
            self.store.flush()

    def _settle_after_failure(self, song_id: str, generation: str) -> None:
        """Settles a write that failed part-way; when that fails too, remembers it for
        `settle_unsettled` (and start-up recovery settles it after a restart)."""
        try:
            self._settle(song_id, generation)
        except Exception as e:  # the write's own error is what the caller sees
            with self._unsettled_lock:
                self._unsettled.add((song_id, generation))
            error = mask_urls(str(e))
            log.warning("could not settle a failed write yet", song_id=song_id[:64], error=error)

    def _settle(self, song_id: str, generation: str) -> None:
        """Finishes or rolls back one song version whose write stopped part-way, as `recover`
        does after a crash: if the song point names this generation (the commit record was
        written), its segments are committed and other generations dropped; otherwise every
        segment point of this generation is deleted, and the previous version stays whole."""
        current = self.find(song_id)
        if current is not None and current.generation == generation:
            self._drop_other_generations(song_id, generation)
            self.store.set_payload_by_ids(
                self._segment_ids(current), pl.committed_segment_fields(current.payload)
            )
        else:
            self.store.delete(
                all_of(
                    _of_song(song_id), Not(Match("kind", pl.SONG)), Match("generation", generation)
                )
            )
        if self._flush_each_write:
            self.store.flush()

    def unsettled_count(self) -> int:
        """Failed writes waiting to be settled."""
        with self._unsettled_lock:
            return len(self._unsettled)

    def settle_unsettled(self) -> int:
        """Settles the failed writes that could not be settled when they failed (the store
        was unreachable); returns how many still wait."""
        with self._unsettled_lock:
            waiting = sorted(self._unsettled)
        for song_id, generation in waiting:
            with self._lock(song_id):
                try:
                    self._settle(song_id, generation)
                except Exception:
                    continue
            with self._unsettled_lock:
                self._unsettled.discard((song_id, generation))
        with self._unsettled_lock:
            return len(self._unsettled)

    @staticmethod
    def _segment_ids(song: SongRecord) -> list[str]:
        return segment_point_ids(song.song_id, song.generation, len(song.segments))

    def _drop_other_generations(self, song_id: str, generation: str) -> None:
        """Deletes the song's segment points, committed or not, of other generations."""
        self.store.delete(
            all_of(
                _of_song(song_id), Not(Match("kind", pl.SONG)), Not(Match("generation", generation))
            )
        )

    def delete(self, song_id: str) -> int:
        """Removes the song and all its points; returns the segments removed."""
        check_song_id(song_id)
        self.ensure_ready()
        with self._lock(song_id):
            found = self.find(song_id)
            if found is None:
                raise NotFoundError(song_id)
            removed = self.store.count(all_of(_of_song(song_id), Match("kind", pl.SEGMENT)))
            self.store.delete(_of_song(song_id))
            self._segment_facts.evict(self._segment_ids(found))
            if self._flush_each_write:
                self.store.flush()
        return removed

    def recover(self) -> int:
        """Finishes or rolls back writes a crash interrupted; returns the songs repaired."""
        self.store.ensure_ready()
        self._recovered = True
        pending = self.store.scroll(Match("state", pl.PENDING))  # song points are never pending
        by_version: dict[tuple[str, str], list[str]] = defaultdict(list)
        for record in pending:
            key = (str(record.payload["song_id"]), str(record.payload["generation"]))
            by_version[key].append(record.id)
        for (song_id, generation), ids in sorted(by_version.items()):
            with self._lock(song_id):
                current = self.find(song_id)
                if current is not None and current.generation == generation:
                    self._drop_other_generations(song_id, generation)
                    self.store.set_payload_by_ids(ids, pl.committed_segment_fields(current.payload))
                else:
                    self.store.delete(
                        all_of(
                            _of_song(song_id),
                            Match("generation", generation),
                            Match("state", pl.PENDING),
                        )
                    )
        if by_version:
            self.store.flush()
        return len({song_id for song_id, _ in by_version})

    def song_count(self) -> int:
        self.ensure_ready()
        return self.store.count(Match("kind", pl.SONG))

    def point_count(self) -> int:
        self.ensure_ready()
        return self.store.count(None)
