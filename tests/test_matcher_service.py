"""The Matcher over real gRPC on loopback, on the embedded store."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from matcher_fixtures import (
    DIMS,
    edge_store,
    make_library,
    make_song,
    metadata_for,
    running_matcher,
)

from segue.v1 import common_pb2, matcher_pb2, matcher_pb2_grpc
from services.matcher.library import SongLibrary

SONGS = 40

Scenario = Callable[["matcher_pb2_grpc.MatcherAsyncStub"], Awaitable[None]]


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> SongLibrary:
    store = edge_store(tmp_path_factory.mktemp("matcher") / "edge")
    lib = SongLibrary(store)
    for i, song in enumerate(make_library(SONGS)):
        lib.upsert(song, metadata_for(i))
    return lib


def run(library: SongLibrary, scenario: Scenario) -> None:
    async def main() -> None:
        async with running_matcher(library) as (stub, _):
            await scenario(stub)

    asyncio.run(main())


def expect_code(library: SongLibrary, code: grpc.StatusCode, call: Callable[[Any], Any]) -> str:
    details: list[str] = []

    async def scenario(stub: matcher_pb2_grpc.MatcherAsyncStub) -> None:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call(stub)
        assert error.value.code() == code, error.value.details()
        details.append(error.value.details() or "")

    run(library, scenario)
    return details[0]


def next_from(song_id: str, **kwargs: Any) -> matcher_pb2.NextSegmentRequest:
    return matcher_pb2.NextSegmentRequest(
        position=matcher_pb2.SongPosition(song_id=song_id, song_end=True), **kwargs
    )


def test_the_true_continuation_ranks_first_when_its_pieces_are_separate_songs(
    library: SongLibrary, tmp_path: Path
) -> None:
    rng = np.random.default_rng(42)
    whole = make_song("whole", rng, segments=8)
    first = common_pb2.SongAnalysis()
    first.CopyFrom(whole)
    first.song_id = "piece-1"
    del first.segments[4:]
    second = common_pb2.SongAnalysis()
    second.CopyFrom(whole)
    second.song_id = "piece-2"
    del second.segments[:4]
    for i, s in enumerate(second.segments):
        s.index = i
    library.upsert(first, matcher_pb2.SongMetadata(title="piece 1"))
    library.upsert(second, matcher_pb2.SongMetadata(title="piece 2"))

    async def scenario(stub: matcher_pb2_grpc.MatcherAsyncStub) -> None:
        response = await stub.NextSegment(next_from("piece-1", k=5))
        best = response.candidates[0]
        assert (best.song_id, best.segment_index) == ("piece-2", 0)
        assert best.metadata.title == "piece 2"
        assert response.exit_time_s == pytest.approx(first.segments[-1].end_s)

    try:
        run(library, scenario)
    finally:
        library.delete("piece-1")
        library.delete("piece-2")


def test_results_hold_one_segment_per_song_and_exclude_the_song_being_left(
    library: SongLibrary,
) -> None:
    async def scenario(stub: matcher_pb2_grpc.MatcherAsyncStub) -> None:
        response = await stub.NextSegment(next_from("song-000", k=20))
        songs = [c.song_id for c in response.candidates]
        assert len(songs) == 20 and len(set(songs)) == 20
        assert "song-000" not in songs
        several = await stub.NextSegment(next_from("song-000", k=30, allow_multiple_per_song=True))
        assert len({c.song_id for c in several.candidates}) < 30

    run(library, scenario)


def test_each_score_is_the_sum_of_its_weighted_components(library: SongLibrary) -> None:
    weights = matcher_pb2.ScoreWeights(transition=1.0, feel=0.0, tempo=0.5, key=0.0, energy=0.0)

    async def scenario(stub: matcher_pb2_grpc.MatcherAsyncStub) -> None:
        response = await stub.NextSegment(next_from("song-001", k=10, weights=weights))
        scores = [c.score for c in response.candidates]
        assert scores == sorted(scores, reverse=True)
        for c in response.candidates:
            b = c.breakdown
            assert b.weighted_transition == pytest.approx(b.transition)
            assert b.weighted_tempo == pytest.approx(0.5 * b.tempo)
            assert b.weighted_feel == 0.0
            assert c.score == pytest.approx(b.weighted_transition + b.weighted_tempo, abs=1e-5)

    run(library, scenario)


def test_filters_exclude_artists_and_played_songs_and_keep_compatible_tempo_and_key(
    library: SongLibrary,
) -> None:
    source = library.song("song-002").payload
    played = ["song-003", "song-004", "song-005"]
    spec = matcher_pb2.Filter(
        exclude_artists=["artist-1"],
        played_song_ids=played,
        tempo_compatible=True,
        key_compatible=True,
    )

    async def scenario(stub: matcher_pb2_grpc.MatcherAsyncStub) -> None:
        response = await stub.NextSegment(next_from("song-002", k=50, filter=spec))
        assert response.candidates
        for c in response.candidates:
            assert c.metadata.artist != "artist-1"
            assert c.song_id not in played
            ratios = [c.tempo_bpm / (m * source["tempo_bpm"]) for m in (0.5, 1, 2)]
            assert any(0.94 <= r <= 1.06 for r in ratios)
            assert c.breakdown.key >= 0.8

    run(library, scenario)


def test_payload_conditions_filter_on_extra_metadata_and_numeric_ranges(
    library: SongLibrary,
) -> None:
    spec = matcher_pb2.Filter(
        conditions=[
            matcher_pb2.PayloadCondition(field="extra.mood", equals="calm"),
            matcher_pb2.PayloadCondition(
                field="energy", range=matcher_pb2.NumericRange(gte=0.3, lte=0.8)
            ),
        ]
    )

    async def scenario(stub: matcher_pb2_grpc.MatcherAsyncStub) -> None:
        response = await stub.NextSegment(next_from("song-001", k=30, filter=spec))
        assert response.candidates
        for c in response.candidates:
            assert c.metadata.extra["mood"] == "calm"

    run(library, scenario)


def test_a_raw_exit_vector_finds_the_segment_entered_from_it(library: SongLibrary) -> None:
    target = library.song("song-010")
    entry = library.segments_with_vectors(target)[3].vectors["entry"]

    async def scenario(stub: matcher_pb2_grpc.MatcherAsyncStub) -> None:
        response = await stub.NextSegment(
            matcher_pb2.NextSegmentRequest(vectors=matcher_pb2.RawQuery(exit=entry), k=3)
        )
        assert (response.candidates[0].song_id, response.candidates[0].segment_index) == (
            "song-010",
            3,
        )

    run(library, scenario)


def test_unknown_song_is_not_found(library: SongLibrary) -> None:
    expect_code(library, grpc.StatusCode.NOT_FOUND, lambda s: s.NextSegment(next_from("nope")))
    expect_code(
        library,
        grpc.StatusCode.NOT_FOUND,
        lambda s: s.GetSong(matcher_pb2.GetSongRequest(song_id="nope")),
    )


def test_a_vector_of_the_wrong_dimension_is_invalid(library: SongLibrary) -> None:
    request = matcher_pb2.NextSegmentRequest(vectors=matcher_pb2.RawQuery(exit=[1.0] * 7))
    details = expect_code(
        library, grpc.StatusCode.INVALID_ARGUMENT, lambda s: s.NextSegment(request)
    )
    assert "vectors.exit" in details


def test_a_tempo_range_with_min_above_max_is_invalid(library: SongLibrary) -> None:
    spec = matcher_pb2.Filter(tempo_range=matcher_pb2.TempoRange(min_bpm=130, max_bpm=120))
    details = expect_code(
        library,
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda s: s.NextSegment(next_from("song-001", filter=spec)),
    )
    assert "tempo_range" in details


def test_a_song_both_required_and_excluded_is_invalid(library: SongLibrary) -> None:
    spec = matcher_pb2.Filter(
        exclude_song_ids=["song-007"],
        conditions=[matcher_pb2.PayloadCondition(field="song_id", equals="song-007")],
    )
    expect_code(
        library,
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda s: s.NextSegment(next_from("song-001", filter=spec)),
    )
    playlist = matcher_pb2.PlanPlaylistRequest(
        seed_song_ids=["song-001"],
        num_songs=3,
        filter=matcher_pb2.Filter(played_song_ids=["song-001"]),
    )
    expect_code(library, grpc.StatusCode.INVALID_ARGUMENT, lambda s: s.PlanPlaylist(playlist))


def test_get_song_returns_segments_and_vectors_when_asked(library: SongLibrary) -> None:
    async def scenario(stub: matcher_pb2_grpc.MatcherAsyncStub) -> None:
        bare = await stub.GetSong(matcher_pb2.GetSongRequest(song_id="song-004"))
        full = await stub.GetSong(matcher_pb2.GetSongRequest(song_id="song-004", with_vectors=True))
        assert len(bare.segments) == 6 and not bare.segments[0].entry and not bare.feel
        assert len(full.segments[5].exit) == DIMS.transition and len(full.feel) == DIMS.feel
        assert full.metadata.artist == "artist-4" and full.key.camelot

    run(library, scenario)


def test_similar_songs_are_nearest_by_feel_one_per_song(library: SongLibrary) -> None:
    async def scenario(stub: matcher_pb2_grpc.MatcherAsyncStub) -> None:
        response = await stub.SimilarSongs(
            matcher_pb2.SimilarSongsRequest(song_id="song-000", k=10)
        )
        ids = [s.song_id for s in response.songs]
        assert len(ids) == 10 and len(set(ids)) == 10 and "song-000" not in ids
        sims = [s.similarity for s in response.songs]
        assert sims == sorted(sims, reverse=True)
        feel = library.song("song-000", with_feel=True).feel
        assert feel is not None
        exact = {
            s.song_id: float(np.dot(feel, library.song(s.song_id, with_feel=True).feel or []))
            for s in response.songs
        }
        for s in response.songs:
            assert s.similarity == pytest.approx(exact[s.song_id], abs=1e-4)

    run(library, scenario)


def test_a_planned_playlist_has_the_asked_length_no_repeats_and_all_seeds(
    library: SongLibrary,
) -> None:
    request = matcher_pb2.PlanPlaylistRequest(
        seed_song_ids=["song-000", "song-020"], num_songs=6, beam_width=4,
        energy_curve=[0.2, 0.9],
    )  # fmt: skip

    async def scenario(stub: matcher_pb2_grpc.MatcherAsyncStub) -> None:
        response = await stub.PlanPlaylist(request)
        ids = [s.song_id for s in response.steps]
        assert len(ids) == 6 and len(set(ids)) == 6
        assert ids[0] == "song-000" and "song-020" in ids
        assert response.steps[0].transition_score == 0
        for step in response.steps[1:]:
            assert step.transition_score > 0
            assert step.entry_time_s < step.exit_time_s
        assert response.total_score == pytest.approx(
            sum(s.transition_score for s in response.steps), abs=1e-4
        )

    run(library, scenario)


def test_clustering_is_identical_across_runs_with_the_same_seed(library: SongLibrary) -> None:
    async def scenario(stub: matcher_pb2_grpc.MatcherAsyncStub) -> None:
        first = await stub.Cluster(matcher_pb2.ClusterRequest(seed=7))
        second = await stub.Cluster(matcher_pb2.ClusterRequest(seed=7))
        assert first == second
        assert len(first.clusters) >= 2
        assert sum(len(c.song_ids) for c in first.clusters) == SONGS
        fixed = await stub.Cluster(matcher_pb2.ClusterRequest(seed=7, num_clusters=3))
        assert len(fixed.clusters) == 3

    run(library, scenario)


def test_a_playlist_by_duration_plays_at_least_that_long(library: SongLibrary) -> None:
    request = matcher_pb2.PlanPlaylistRequest(seed_song_ids=["song-005"], duration_s=150.0)

    async def scenario(stub: matcher_pb2_grpc.MatcherAsyncStub) -> None:
        response = await stub.PlanPlaylist(request)
        played = sum(s.exit_time_s - s.entry_time_s for s in response.steps)
        assert played >= 150.0
        assert played - (response.steps[-1].exit_time_s - response.steps[-1].entry_time_s) < 150
        assert len({s.song_id for s in response.steps}) == len(response.steps)

    run(library, scenario)


def test_results_show_their_songs_whole_metadata_tempo_and_key(library: SongLibrary) -> None:
    songs = {s.song_id: (i, s) for i, s in enumerate(make_library(SONGS))}

    async def scenario(stub: matcher_pb2_grpc.MatcherAsyncStub) -> None:
        found = await stub.NextSegment(next_from("song-003", k=5))
        planned = await stub.PlanPlaylist(
            matcher_pb2.PlanPlaylistRequest(seed_song_ids=["song-003"], num_songs=3)
        )
        similar = await stub.SimilarSongs(matcher_pb2.SimilarSongsRequest(song_id="song-003", k=5))
        shown: list[matcher_pb2.Candidate | matcher_pb2.PlaylistStep] = [
            *found.candidates,
            *planned.steps,
        ]
        assert len(shown) == 8 and len(similar.songs) == 5
        for result in shown:
            index, song = songs[result.song_id]
            assert result.metadata == metadata_for(index)
            assert (result.tempo_bpm, result.key) == (song.tempo.bpm, song.key)
        for similar_song in similar.songs:
            assert similar_song.metadata == metadata_for(songs[similar_song.song_id][0])

    run(library, scenario)
