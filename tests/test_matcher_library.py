"""Songs in the store: idempotent writes, clean replacement and deletion, crash recovery.

Every test runs on both backends: the embedded engine and qdrant-client (local mode)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
from matcher_fixtures import make_song, metadata_for, open_store

from segue.v1 import common_pb2, matcher_pb2
from services.matcher import payload as pl
from services.matcher.conditions import Match, all_of
from services.matcher.errors import InvalidArgumentError, NotFoundError
from services.matcher.library import SongLibrary
from services.matcher.next_segment import NextSegmentFinder, resolve_source
from services.matcher.point_ids import (
    generation_of,
    segment_point_id,
    segment_point_ids,
    song_point_id,
)
from services.matcher.scoring import Weights
from services.matcher.store import ENTRY, EXIT, FEEL, PointData

BACKENDS = ["edge", "client"]


@pytest.fixture(params=BACKENDS)
def library(request: pytest.FixtureRequest, tmp_path: Path) -> SongLibrary:
    store = open_store(request.param, tmp_path)
    lib = SongLibrary(store)
    request.addfinalizer(store.close)
    return lib


def segments_of(library: SongLibrary, song_id: str) -> list[dict[str, object]]:
    records = library.store.scroll(all_of(Match("song_id", song_id), Match("kind", pl.SEGMENT)))
    return [r.payload for r in records]


def test_upserted_song_reads_back_with_metadata_tempo_key_and_segments(
    library: SongLibrary,
) -> None:
    song = make_song("a", np.random.default_rng(1), tempo_bpm=126.0, camelot="5A")
    result = library.upsert(song, metadata_for(3))
    stored = library.song("a", with_feel=True)
    assert result.segments_stored == 6 and not result.replaced
    assert stored.payload["artist"] == "artist-3"
    assert stored.payload["extra"] == {"mood": "happy"}
    assert stored.payload["tempo_bpm"] == 126.0 and stored.payload["camelot"] == "5A"
    assert [s[0] for s in stored.segments] == [s.start_s for s in song.segments]
    assert stored.feel is not None
    assert np.allclose(stored.feel, song.feel, atol=1e-5)


def test_upserting_the_same_song_twice_stores_one_copy(library: SongLibrary) -> None:
    song = make_song("a", np.random.default_rng(1))
    library.upsert(song, metadata_for(0))
    second = library.upsert(song, metadata_for(0))
    assert second.replaced
    assert library.point_count() == 1 + len(song.segments)


def test_replacing_a_song_leaves_no_segments_of_the_old_version(library: SongLibrary) -> None:
    rng = np.random.default_rng(2)
    library.upsert(make_song("a", rng, segments=8), metadata_for(0))
    replacement = make_song("a", rng, segments=3)
    result = library.upsert(replacement, metadata_for(1))
    segments = segments_of(library, "a")
    assert result.replaced
    assert len(segments) == 3
    assert {s["generation"] for s in segments} == {generation_of(replacement, metadata_for(1))}
    assert {s["state"] for s in segments} == {pl.LIVE}
    assert library.song("a").payload["artist"] == "artist-1"


def test_deleting_a_song_removes_every_point_of_it(library: SongLibrary) -> None:
    rng = np.random.default_rng(3)
    library.upsert(make_song("a", rng), metadata_for(0))
    library.upsert(make_song("b", rng), metadata_for(1))
    removed = library.delete("a")
    assert removed == 6
    assert library.find("a") is None
    assert segments_of(library, "a") == []
    assert library.point_count() == 7


def test_deleting_an_unknown_song_is_not_found(library: SongLibrary) -> None:
    with pytest.raises(NotFoundError):
        library.delete("nope")


def test_a_vector_of_the_wrong_dimension_is_rejected_naming_the_field(
    library: SongLibrary,
) -> None:
    song = make_song("a", np.random.default_rng(4))
    song.segments[2].entry.append(0.5)
    with pytest.raises(InvalidArgumentError, match=r"analysis.segments\[2\].entry"):
        library.upsert(song, matcher_pb2.SongMetadata())


def test_recovery_commits_a_replacement_whose_song_point_was_written(
    library: SongLibrary,
) -> None:
    rng = np.random.default_rng(5)
    library.upsert(make_song("a", rng), metadata_for(0))
    new = make_song("a", rng, segments=4)
    generation = generation_of(new, metadata_for(0))
    _write_pending(library, new, generation)  # crash after steps 1 and 2 of a replacement
    library.store.upsert(
        [
            PointData(
                song_point_id("a"),
                {FEEL: list(new.feel)},
                pl.song_payload(new, metadata_for(0), generation),
            )
        ]
    )
    assert library.recover() == 1
    segments = segments_of(library, "a")
    assert len(segments) == 4
    assert {(s["generation"], s["state"]) for s in segments} == {(generation, pl.LIVE)}


def test_recovery_rolls_back_a_replacement_that_never_committed(library: SongLibrary) -> None:
    rng = np.random.default_rng(6)
    old = make_song("a", rng)
    library.upsert(old, metadata_for(0))
    new = make_song("a", rng, segments=2)
    _write_pending(library, new, generation_of(new, metadata_for(0)))  # crash after step 1
    assert library.recover() == 1
    segments = segments_of(library, "a")
    assert {s["generation"] for s in segments} == {generation_of(old, metadata_for(0))}
    assert len(segments) == 6


def test_concurrent_upserts_of_one_song_leave_exactly_one_consistent_copy(
    library: SongLibrary,
) -> None:
    rng = np.random.default_rng(7)
    versions = [make_song("a", rng, segments=n) for n in (2, 3, 4, 5, 6, 7)]
    threads = [
        threading.Thread(target=library.upsert, args=(v, metadata_for(i)))
        for i, v in enumerate(versions)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    song = library.song("a")
    segments = segments_of(library, "a")
    assert {s["generation"] for s in segments} == {song.generation}
    assert len(segments) == song.payload["segment_count"]
    assert {s["state"] for s in segments} == {pl.LIVE}


def _write_pending(
    library: SongLibrary,
    song: common_pb2.SongAnalysis,
    generation: str,
    metadata: matcher_pb2.SongMetadata | None = None,
    *,
    with_song_point: bool = False,
) -> None:
    """The first write of a version, as a crash right after it leaves the store."""
    library.store.ensure_ready()
    metadata = metadata or metadata_for(0)
    points = [
        PointData(
            segment_point_id(song.song_id, generation, s.index),
            {ENTRY: list(s.entry), EXIT: list(s.exit)},
            pl.segment_payload(song, metadata, generation, s, live=False),
        )
        for s in song.segments
    ]
    if with_song_point:
        points.append(
            PointData(
                song_point_id(song.song_id),
                {FEEL: list(song.feel)},
                pl.song_payload(song, metadata, generation),
            )
        )
    library.store.upsert(points)


def test_point_ids_are_uuid5_of_the_song_and_segment_names() -> None:
    namespace = uuid.UUID("6f1d2c59-3a7e-5b0e-9d43-5e6775650a01")
    for song_id in ("a", "song-00042", "Ünïcode 曲"):
        assert song_point_id(song_id) == str(uuid.uuid5(namespace, f"song\x00{song_id}"))
        assert segment_point_ids(song_id, "0123456789abcdef", 12) == [
            str(uuid.uuid5(namespace, f"segment\x00{song_id}\x000123456789abcdef\x00{i}"))
            for i in range(12)
        ]
        assert segment_point_id(song_id, "g", 3) == segment_point_ids(song_id, "g", 4)[3]


@pytest.mark.parametrize(("position", "vector", "value"), [(1, "exit", np.nan), (3, "entry", 0.0)])
def test_a_segment_vector_with_nan_or_only_zeros_is_rejected_naming_it(
    library: SongLibrary, position: int, vector: str, value: float
) -> None:
    song = make_song("a", np.random.default_rng(8))
    values = getattr(song.segments[position], vector)
    values[:] = [value] * len(values)
    with pytest.raises(InvalidArgumentError, match=rf"analysis.segments\[{position}\].{vector}"):
        library.upsert(song, metadata_for(0))
    assert library.find("a") is None


def test_recovery_commits_a_new_song_whose_first_write_landed_before_its_commit(
    library: SongLibrary,
) -> None:
    song = make_song("a", np.random.default_rng(9), tempo_bpm=124.0, camelot="9B")
    generation = generation_of(song, metadata_for(2))
    _write_pending(library, song, generation, metadata_for(2), with_song_point=True)
    assert segments_of(library, "a") == []  # pending segments are not committed ones
    assert library.recover() == 1
    segments = segments_of(library, "a")
    assert len(segments) == len(song.segments)
    for s in segments:
        assert (s["state"], s["artist"], s["tempo_bpm"], s["camelot"]) == (
            pl.LIVE, "artist-2", 124.0, "9B"
        )  # fmt: skip


def test_a_replaced_song_is_never_served_from_another_matchers_cached_facts(
    library: SongLibrary,
) -> None:
    # Two libraries on one store stand for two matcher processes on one Qdrant server.
    other = SongLibrary(library.store)
    rng = np.random.default_rng(10)
    source = make_song("from", rng)
    lead_in = np.array(source.segments[-1].exit)
    library.upsert(source, metadata_for(0))
    library.upsert(make_song("to", rng, first_entry=lead_in, segment_s=8.0), metadata_for(1))
    request = matcher_pb2.NextSegmentRequest(
        position=matcher_pb2.SongPosition(song_id="from", song_end=True)
    )

    def best(lib: SongLibrary) -> tuple[str, float, float]:
        found = NextSegmentFinder(lib).find(resolve_source(lib, request), k=1, weights=Weights())
        return found[0].song_id, found[0].start_s, found[0].end_s

    assert best(other) == ("to", 0.0, 8.0)  # `other` now holds facts of the first version
    library.upsert(make_song("to", rng, first_entry=lead_in, segment_s=5.0), metadata_for(1))
    assert best(other) == ("to", 0.0, 5.0)
    assert best(library) == ("to", 0.0, 5.0)
