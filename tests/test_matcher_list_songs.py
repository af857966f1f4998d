"""ListSongs over real gRPC on loopback, on the embedded store: the library a page at a time.

Pages follow song id order (by code point) and cover every stored song the filter keeps
exactly once; a page token marks a position in that order and nothing else.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np
import pytest
from matcher_fixtures import edge_store, make_song, metadata_for, running_matcher

from segue.client import InvalidArgumentError, MatcherClient
from segue.v1 import common_pb2, matcher_pb2, matcher_pb2_grpc
from services.matcher.library import SongLibrary
from services.matcher.listing import MAX_PAGE_BYTES, page_token

if TYPE_CHECKING:  # the async stub's type exists in the type stubs only
    Stub = matcher_pb2_grpc.MatcherAsyncStub
# More songs than a default page (100) holds; ids whose code-point order is not the order
# they were stored in, nor their numeric order.
SONG_IDS = [f"song-{i}" for i in range(100)] + ["Zed", "a", "é-song", "song-9a", "_x"]
MOOD_KEY = "mood"


def _analysis(song_id: str, seed: int) -> common_pb2.SongAnalysis:
    return make_song(song_id, np.random.default_rng(seed), segments=1)


def _store(library: SongLibrary, ids: list[str]) -> None:
    for i, song_id in enumerate(ids):
        library.upsert(_analysis(song_id, i), metadata_for(i))


def _new_library(path: Path, ids: list[str]) -> SongLibrary:
    library = SongLibrary(edge_store(path / "edge"))
    _store(library, ids)
    return library


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> SongLibrary:
    return _new_library(tmp_path_factory.mktemp("list-songs"), list(reversed(SONG_IDS)))


def run(library: SongLibrary, scenario: Callable[[Stub], Awaitable[None]]) -> None:
    async def main() -> None:
        async with running_matcher(library) as (stub, _):
            await scenario(stub)

    asyncio.run(main())


async def all_pages(stub: Stub, **request: Any) -> list[matcher_pb2.ListSongsResponse]:
    """Every page of one listing, following next_page_token from the first page."""
    pages = [await stub.ListSongs(matcher_pb2.ListSongsRequest(**request))]
    while pages[-1].next_page_token:
        token = pages[-1].next_page_token
        pages.append(await stub.ListSongs(matcher_pb2.ListSongsRequest(page_token=token,
                                                                       **request)))
    return pages


def ids_of(pages: list[matcher_pb2.ListSongsResponse]) -> list[str]:
    return [song.song_id for page in pages for song in page.songs]


def refusal(library: SongLibrary, request: matcher_pb2.ListSongsRequest) -> str:
    """The details of ListSongs' INVALID_ARGUMENT for `request`."""
    details: list[str] = []

    async def scenario(stub: Stub) -> None:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.ListSongs(request)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
        details.append(error.value.details() or "")

    run(library, scenario)
    return details[0]


def test_pages_cover_every_song_exactly_once_in_song_id_order(library: SongLibrary) -> None:
    async def scenario(stub: Stub) -> None:
        pages = await all_pages(stub, page_size=7)
        assert ids_of(pages) == sorted(SONG_IDS)
        assert [len(p.songs) for p in pages] == [7] * 15
        assert all(p.next_page_token for p in pages[:-1]) and pages[-1].next_page_token == ""

    run(library, scenario)


def test_a_page_size_of_zero_means_pages_of_100(library: SongLibrary) -> None:
    async def scenario(stub: Stub) -> None:
        pages = await all_pages(stub)
        assert [len(p.songs) for p in pages] == [100, len(SONG_IDS) - 100]
        assert ids_of(pages) == sorted(SONG_IDS)

    run(library, scenario)


def test_a_listed_song_is_what_get_song_returns_without_segments_and_analysis(
    library: SongLibrary,
) -> None:
    async def scenario(stub: Stub) -> None:
        page = await stub.ListSongs(matcher_pb2.ListSongsRequest(page_size=3))
        for listed in page.songs:
            stored = await stub.GetSong(matcher_pb2.GetSongRequest(song_id=listed.song_id))
            stored.ClearField("segments")
            stored.ClearField("analysis")
            assert listed == stored
            assert listed.metadata.uri and listed.duration_s > 0 and listed.tempo_bpm > 0
            assert listed.key.camelot and listed.model_version == "test-1"
            assert not listed.feel

    run(library, scenario)


def test_with_vectors_each_song_comes_with_its_feel(library: SongLibrary) -> None:
    async def scenario(stub: Stub) -> None:
        page = await stub.ListSongs(matcher_pb2.ListSongsRequest(page_size=4, with_vectors=True))
        for listed in page.songs:
            stored = await stub.GetSong(
                matcher_pb2.GetSongRequest(song_id=listed.song_id, with_vectors=True))
            assert list(listed.feel) == list(stored.feel) and len(listed.feel) > 0
            assert not listed.segments and not listed.HasField("analysis")

    run(library, scenario)


def test_a_filter_keeps_only_the_songs_it_matches_across_pages(library: SongLibrary) -> None:
    # metadata_for(i): genre cycles house/ambient/rock, artist artist-(i % 5), mood calm/happy.
    stored_as = {song_id: metadata_for(i) for i, song_id in enumerate(reversed(SONG_IDS))}
    spec = matcher_pb2.Filter(
        exclude_artists=["artist-0"],
        conditions=[
            matcher_pb2.PayloadCondition(field="genre", equals="house"),
            matcher_pb2.PayloadCondition(field=f"extra.{MOOD_KEY}", equals="calm"),
        ],
    )
    expected = sorted(
        song_id for song_id, m in stored_as.items()
        if m.genre == "house" and m.extra[MOOD_KEY] == "calm" and m.artist != "artist-0"
    )

    async def scenario(stub: Stub) -> None:
        pages = await all_pages(stub, page_size=3, filter=spec)
        assert ids_of(pages) == expected and len(expected) > 3

    run(library, scenario)


def test_a_tempo_range_filter_keeps_songs_by_their_tempo(library: SongLibrary) -> None:
    spec = matcher_pb2.Filter(tempo_range=matcher_pb2.TempoRange(min_bpm=500.0))

    async def scenario(stub: Stub) -> None:
        assert ids_of(await all_pages(stub, filter=spec)) == []
        everything = matcher_pb2.Filter(tempo_range=matcher_pb2.TempoRange(max_bpm=500.0))
        assert ids_of(await all_pages(stub, filter=everything)) == sorted(SONG_IDS)

    run(library, scenario)


@pytest.mark.parametrize("page_size", [1_001, 2**32 - 1])
def test_a_page_size_over_1000_is_invalid_naming_page_size(
    library: SongLibrary, page_size: int
) -> None:
    details = refusal(library, matcher_pb2.ListSongsRequest(page_size=page_size))
    assert details.startswith("page_size"), details


@pytest.mark.parametrize(
    "token",
    [
        "not a token",
        page_token("song-1")[:-1] + "!",
        page_token("song-1") + "=",
        base64.urlsafe_b64encode(b"\x02song-1").decode().rstrip("="),
        page_token("bad\x00id"),
        "A" * 5_000,
        "é",
    ],
    ids=["garbage", "bad-character", "padded", "other-version", "not-a-song-id", "huge",
         "non-ascii"],
)
def test_a_page_token_the_server_did_not_issue_is_invalid_naming_page_token(
    library: SongLibrary, token: str
) -> None:
    details = refusal(library, matcher_pb2.ListSongsRequest(page_token=token))
    assert details.startswith("page_token"), details


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (matcher_pb2.Filter(tempo_compatible=True), "filter.tempo_compatible"),
        (matcher_pb2.Filter(key_compatible=True), "filter.key_compatible"),
        (matcher_pb2.Filter(conditions=[
            matcher_pb2.PayloadCondition(field="section_letter", equals="A")]),
         "filter.conditions[0].field"),
        (matcher_pb2.Filter(conditions=[
            matcher_pb2.PayloadCondition(field="no_such_field", equals="x")]),
         "filter.conditions[0].field"),
        (matcher_pb2.Filter(exclude_song_ids=["a\x00b"]), "filter.exclude_song_ids[0]"),
    ],
    ids=["tempo-compatible", "key-compatible", "segment-field", "unknown-field", "bad-id"],
)
def test_a_filter_that_needs_a_song_or_segment_or_is_malformed_is_invalid_naming_its_field(
    library: SongLibrary, spec: matcher_pb2.Filter, field: str
) -> None:
    details = refusal(library, matcher_pb2.ListSongsRequest(filter=spec))
    assert details.startswith(field), details


def test_an_empty_library_gives_no_songs_and_no_next_page(tmp_path: Path) -> None:
    async def scenario(stub: Stub) -> None:
        page = await stub.ListSongs(matcher_pb2.ListSongsRequest())
        assert list(page.songs) == [] and page.next_page_token == ""

    run(_new_library(tmp_path, []), scenario)


def test_a_song_deleted_between_pages_is_not_listed(tmp_path: Path) -> None:
    ids = [f"s{i}" for i in range(8)]
    library = _new_library(tmp_path, ids)

    async def scenario(stub: Stub) -> None:
        first = await stub.ListSongs(matcher_pb2.ListSongsRequest(page_size=3))
        assert [s.song_id for s in first.songs] == ids[:3]
        # One on the next page, and the one the token marks.
        for gone in ("s4", "s2"):
            await stub.DeleteSong(matcher_pb2.DeleteSongRequest(song_id=gone))
        second = await stub.ListSongs(
            matcher_pb2.ListSongsRequest(page_size=3, page_token=first.next_page_token))
        assert [s.song_id for s in second.songs] == ["s3", "s5", "s6"]
        third = await stub.ListSongs(
            matcher_pb2.ListSongsRequest(page_size=3, page_token=second.next_page_token))
        assert [s.song_id for s in third.songs] == ["s7"] and third.next_page_token == ""

    run(library, scenario)


def test_a_song_stored_between_pages_is_listed_when_its_id_follows_the_token(
    tmp_path: Path,
) -> None:
    library = _new_library(tmp_path, ["b", "d", "f"])

    async def scenario(stub: Stub) -> None:
        first = await stub.ListSongs(matcher_pb2.ListSongsRequest(page_size=2))
        for i, song_id in enumerate(["a", "e"]):
            await stub.UpsertSong(matcher_pb2.UpsertSongRequest(
                analysis=_analysis(song_id, 50 + i), metadata=metadata_for(i)))
        second = await stub.ListSongs(
            matcher_pb2.ListSongsRequest(page_size=2, page_token=first.next_page_token))
        assert [s.song_id for s in first.songs] == ["b", "d"]
        assert [s.song_id for s in second.songs] == ["e", "f"]
        assert second.next_page_token == ""

    run(library, scenario)


def test_a_page_of_large_songs_is_cut_short_to_stay_under_a_mebibyte(tmp_path: Path) -> None:
    library = SongLibrary(edge_store(tmp_path / "edge"))
    ids = [f"big-{i}" for i in range(6)]
    for i, song_id in enumerate(ids):  # about 270 KB of metadata each
        extra = {f"k{j}": chr(ord("a") + i) * 4_096 for j in range(64)}
        library.upsert(_analysis(song_id, i), matcher_pb2.SongMetadata(extra=extra))

    async def scenario(stub: Stub) -> None:
        pages = await all_pages(stub, page_size=1_000)
        assert ids_of(pages) == ids and len(pages) > 1
        assert all(p.ByteSize() <= MAX_PAGE_BYTES + 1_024 for p in pages)

    run(library, scenario)


def test_the_sdk_iterates_every_song_across_pages_and_raises_for_a_bad_page_size(
    library: SongLibrary,
) -> None:
    async def main() -> None:
        async with (
            running_matcher(library) as (_, server),
            MatcherClient(f"127.0.0.1:{server.port}") as matcher,
        ):
            listed = [s async for s in matcher.list_songs(page_size=9, with_vectors=True)]
            assert [s.song_id for s in listed] == sorted(SONG_IDS)
            assert all(len(s.feel) > 0 for s in listed)
            first = await matcher.list_songs_page(page_size=2)
            assert [s.song_id for s in first.songs] == sorted(SONG_IDS)[:2]
            with pytest.raises(InvalidArgumentError) as error:
                await matcher.list_songs_page(page_size=5_000)
            assert (error.value.details() or "").startswith("page_size")

    asyncio.run(main())
