"""The whole SongAnalysis is stored by UpsertSong and returned by GetSong, over real gRPC on
loopback, on the embedded store and on a Qdrant server (the stand-in of
matcher_qdrant_standin), with real songs analysed by the real model."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from matcher_fixtures import (
    analysed_song,
    edge_store,
    free_port,
    make_song,
    metadata_for,
    running_matcher,
    server_store,
)
from matcher_qdrant_standin import QdrantStandIn

from segue.v1 import common_pb2, matcher_pb2, matcher_pb2_grpc
from services.matcher import payload as pl
from services.matcher.conditions import Match
from services.matcher.library import SongLibrary
from services.matcher.point_ids import generation_of, song_point_id
from services.matcher.store import FEEL, PointData
from services.matcher.validation import MAX_BEATS, MAX_CUE_POINTS, MAX_SECTIONS

BACKENDS = ["edge", "server"]


@pytest.fixture(scope="module")
def real_songs(stream_model: Any, music_tracks: list[Path]) -> list[common_pb2.SongAnalysis]:
    """Two real songs as the embedder analyses them, each with beats, downbeats, sections and
    cue points (so that every comparison below compares something)."""
    songs = [analysed_song(stream_model, music_tracks[i], f"real-{i}") for i in (0, 3)]
    for song in songs:
        assert downbeats(song) and len(song.sections) > 1 and song.cue_points
    assert songs[0].beats != songs[1].beats
    return songs


@pytest.fixture(params=BACKENDS)
def library(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SongLibrary]:
    if request.param == "edge":
        store = edge_store(tmp_path / "edge")
        yield SongLibrary(store)
        store.close()
        return
    qdrant = QdrantStandIn(free_port()).start()
    server = server_store(qdrant)
    yield SongLibrary(server)
    server.close()
    qdrant.close()


def serve(
    library: SongLibrary, scenario: Callable[[matcher_pb2_grpc.MatcherAsyncStub], Awaitable[None]]
) -> None:
    async def main() -> None:
        async with running_matcher(library) as (stub, _):
            await scenario(stub)

    asyncio.run(main())


def downbeats(analysis: common_pb2.SongAnalysis) -> list[float]:
    return [b.time_s for b in analysis.beats if b.position_in_bar == 1]


def without_vectors(analysis: common_pb2.SongAnalysis) -> common_pb2.SongAnalysis:
    out = common_pb2.SongAnalysis()
    out.CopyFrom(analysis)
    out.ClearField("feel")
    for segment in out.segments:
        segment.ClearField("entry")
        segment.ClearField("exit")
    return out


def renamed(analysis: common_pb2.SongAnalysis, song_id: str) -> common_pb2.SongAnalysis:
    out = common_pb2.SongAnalysis()
    out.CopyFrom(analysis)
    out.song_id = song_id
    return out


def without_structure(analysis: common_pb2.SongAnalysis) -> common_pb2.SongAnalysis:
    out = common_pb2.SongAnalysis()
    out.CopyFrom(analysis)
    for name in ("beats", "sections", "cue_points"):
        out.ClearField(name)
    return out


async def get(
    stub: matcher_pb2_grpc.MatcherAsyncStub, song_id: str, *, with_vectors: bool = False
) -> matcher_pb2.StoredSong:
    return await stub.GetSong(
        matcher_pb2.GetSongRequest(song_id=song_id, with_vectors=with_vectors)
    )


async def upsert(
    stub: matcher_pb2_grpc.MatcherAsyncStub, song: common_pb2.SongAnalysis
) -> matcher_pb2.UpsertSongResponse:
    request = matcher_pb2.UpsertSongRequest(analysis=song, metadata=metadata_for(1))
    return await stub.UpsertSong(request)


def test_get_song_returns_the_beats_downbeats_sections_and_cues_that_were_upserted(
    library: SongLibrary, real_songs: list[common_pb2.SongAnalysis]
) -> None:
    sent = real_songs[0]

    async def scenario(stub: matcher_pb2_grpc.MatcherAsyncStub) -> None:
        await upsert(stub, sent)
        got = (await get(stub, sent.song_id)).analysis
        assert list(got.beats) == list(sent.beats)
        assert downbeats(got) == downbeats(sent)
        assert list(got.sections) == list(sent.sections)
        assert list(got.cue_points) == list(sent.cue_points)
        # And everything else: ids, model, duration, tempo, key, loudness, segments.
        assert got == without_vectors(sent)

    serve(library, scenario)


def test_get_song_with_vectors_also_returns_the_feel_and_segment_vectors(
    library: SongLibrary, real_songs: list[common_pb2.SongAnalysis]
) -> None:
    sent = real_songs[0]

    async def scenario(stub: matcher_pb2_grpc.MatcherAsyncStub) -> None:
        await upsert(stub, sent)
        stored = await get(stub, sent.song_id, with_vectors=True)
        got = stored.analysis
        assert without_vectors(got) == without_vectors(sent)
        # Qdrant normalises cosine vectors on write: equal to float32 rounding.
        assert np.allclose(got.feel, sent.feel, atol=1e-6)
        for mine, theirs in zip(got.segments, sent.segments, strict=True):
            assert np.allclose(mine.entry, theirs.entry, atol=1e-6)
            assert np.allclose(mine.exit, theirs.exit, atol=1e-6)
        # Older clients read the same segments and feel from StoredSong's own fields.
        assert list(stored.segments) == list(got.segments) and stored.feel == got.feel

    serve(library, scenario)


def test_replacing_a_song_replaces_its_stored_analysis(
    library: SongLibrary, real_songs: list[common_pb2.SongAnalysis]
) -> None:
    first, second = (renamed(s, "replaced") for s in real_songs)

    async def scenario(stub: matcher_pb2_grpc.MatcherAsyncStub) -> None:
        await upsert(stub, first)
        assert (await upsert(stub, second)).replaced
        assert (await get(stub, "replaced")).analysis == without_vectors(second)
        await upsert(stub, without_structure(second))
        got = (await get(stub, "replaced")).analysis
        assert not got.beats and not got.sections and not got.cue_points

    serve(library, scenario)


def test_deleting_a_song_deletes_its_stored_analysis(
    library: SongLibrary, real_songs: list[common_pb2.SongAnalysis]
) -> None:
    sent = real_songs[1]

    async def scenario(stub: matcher_pb2_grpc.MatcherAsyncStub) -> None:
        await upsert(stub, sent)
        await stub.DeleteSong(matcher_pb2.DeleteSongRequest(song_id=sent.song_id))
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await get(stub, sent.song_id)
        assert error.value.code() == grpc.StatusCode.NOT_FOUND

    serve(library, scenario)
    assert library.store.count(Match("song_id", sent.song_id)) == 0


def store_as_the_previous_version_did(library: SongLibrary, song: common_pb2.SongAnalysis) -> None:
    """Writes `song` as matchers did before they kept whole analyses: the same points, and no
    `analysis` field on the song point."""
    metadata = metadata_for(1)
    library.upsert(song, metadata)
    payload = pl.song_payload(song, metadata, generation_of(song, metadata))
    del payload[pl.ANALYSIS]
    point = PointData(song_point_id(song.song_id), {FEEL: list(song.feel)}, payload)
    library.store.upsert([point])
    assert not pl.stores_whole_analysis(library.song(song.song_id).payload)


def test_a_song_stored_by_the_previous_version_answers_get_song_with_what_it_kept(
    library: SongLibrary, real_songs: list[common_pb2.SongAnalysis]
) -> None:
    sent = real_songs[0]
    store_as_the_previous_version_did(library, sent)
    kept = common_pb2.SongAnalysis(
        song_id=sent.song_id,
        model_name=sent.model_name,
        model_version=sent.model_version,
        duration_s=sent.duration_s,
        tempo=common_pb2.Tempo(bpm=sent.tempo.bpm),
        key=sent.key,
        loudness_lufs=sent.loudness_lufs,
        segments=without_vectors(sent).segments,
    )

    async def scenario(stub: matcher_pb2_grpc.MatcherAsyncStub) -> None:
        stored = await get(stub, sent.song_id)
        assert stored.analysis == kept
        assert stored.tempo_bpm == sent.tempo.bpm and stored.key == sent.key

    serve(library, scenario)


def test_upserting_again_a_song_the_previous_version_stored_keeps_its_whole_analysis(
    library: SongLibrary, real_songs: list[common_pb2.SongAnalysis]
) -> None:
    sent = real_songs[0]
    store_as_the_previous_version_did(library, sent)

    async def scenario(stub: matcher_pb2_grpc.MatcherAsyncStub) -> None:
        assert (await upsert(stub, sent)).replaced
        assert (await get(stub, sent.song_id)).analysis == without_vectors(sent)

    serve(library, scenario)


LIMITS = {"beats": MAX_BEATS, "sections": MAX_SECTIONS, "cue_points": MAX_CUE_POINTS}


def with_entries(name: str, count: int, time_s: float = 1.0) -> common_pb2.SongAnalysis:
    """A synthetic song with `count` beats, sections or cue points at `time_s`."""
    song = make_song("structured", np.random.default_rng(0))
    if name == "beats":
        song.beats.extend(common_pb2.Beat(time_s=time_s) for _ in range(count))
    elif name == "sections":
        song.sections.extend(common_pb2.Section(start_s=time_s, end_s=2.0) for _ in range(count))
    else:
        song.cue_points.extend(common_pb2.CuePoint(time_s=time_s) for _ in range(count))
    return song


@pytest.fixture
def edge_library(tmp_path: Path) -> Iterator[SongLibrary]:
    store = edge_store(tmp_path / "edge")
    yield SongLibrary(store)
    store.close()


async def expect_invalid(
    stub: matcher_pb2_grpc.MatcherAsyncStub, song: common_pb2.SongAnalysis, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await upsert(stub, song)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"analysis.{field}" in (error.value.details() or "")


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_an_analysis_over_a_limit_is_invalid_naming_the_field_and_one_at_it_is_stored(
    edge_library: SongLibrary, name: str
) -> None:
    async def scenario(stub: matcher_pb2_grpc.MatcherAsyncStub) -> None:
        await expect_invalid(stub, with_entries(name, LIMITS[name] + 1), name)
        assert edge_library.find("structured") is None
        await upsert(stub, with_entries(name, LIMITS[name]))
        got = (await get(stub, "structured")).analysis
        assert len(getattr(got, name)) == LIMITS[name]

    serve(edge_library, scenario)


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_a_beat_section_or_cue_at_a_time_that_is_not_finite_is_invalid(
    edge_library: SongLibrary, name: str
) -> None:
    async def scenario(stub: matcher_pb2_grpc.MatcherAsyncStub) -> None:
        await expect_invalid(stub, with_entries(name, 3, time_s=float("nan")), name)

    serve(edge_library, scenario)
