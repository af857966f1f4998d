"""Typed async client of the Matcher service.

Example::

    from segue.client import EmbedderClient, MatcherClient, make_metadata

    async with EmbedderClient("127.0.0.1:50051") as embedder:
        analysis = (await embedder.analyze_file("song.mp3", song_id="song-1")).analysis
    async with MatcherClient("127.0.0.1:50052") as matcher:
        await matcher.upsert_song(analysis, make_metadata(title="Song", artist="Someone"))
        response = await matcher.next_segment("song-1", k=5)
        for candidate in response.candidates:
            print(candidate.song_id, candidate.entry_time_s, candidate.score)
        stored = await matcher.get_song("song-1")
        print(stored.metadata.title, stored.tempo_bpm, len(stored.segments))

Responses are the protobuf messages that `segue.client.types` describes. Failures raise
`segue.client.errors` exceptions: NotFoundError for a song id that is not stored,
InvalidArgumentError for a malformed filter or vector, UnavailableError when the matcher (or
its store) cannot be reached. Every call's deadline is the unary one of
`segue.client.timeouts` (30 s) unless `timeout_s` says otherwise.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence

import grpc

from segue.client.channel import ServiceClient
from segue.client.timeouts import USE_CLIENT_TIMEOUT, CallTimeout
from segue.client.types import (
    ClusterResponse,
    DeleteSongResponse,
    Filter,
    Key,
    ListSongsResponse,
    NextSegmentResponse,
    PlanPlaylistResponse,
    ScoreWeights,
    SimilarSongsResponse,
    SongAnalysis,
    SongMetadata,
    StoredSong,
    UpsertSongResponse,
)
from segue.v1 import matcher_pb2, matcher_pb2_grpc


def make_metadata(
    *,
    title: str = "",
    artist: str = "",
    album: str = "",
    genre: str = "",
    uri: str = "",
    extra: Mapping[str, str] | None = None,
) -> SongMetadata:
    """A SongMetadata from keyword arguments; `extra` holds any other filterable pairs."""
    return matcher_pb2.SongMetadata(
        title=title, artist=artist, album=album, genre=genre, uri=uri, extra=dict(extra or {})
    )


class MatcherClient(ServiceClient):
    """Async client; use as `async with MatcherClient(address) as client:`.

    Every method raises `segue.client.errors.SegueError` subclasses on failure and takes a
    `timeout_s` overriding the client's (see `segue.client.timeouts`).
    """

    SERVICE = "Matcher"

    def _bind(self, channel: grpc.aio.Channel) -> None:
        self._stub: matcher_pb2_grpc.MatcherAsyncStub = matcher_pb2_grpc.MatcherStub(channel)

    async def upsert_song(
        self,
        analysis: SongAnalysis,
        metadata: SongMetadata | None = None,
        *,
        timeout_s: CallTimeout = USE_CLIENT_TIMEOUT,
    ) -> UpsertSongResponse:
        """Stores or replaces a song (idempotent); `metadata` from make_metadata()."""
        request = matcher_pb2.UpsertSongRequest(analysis=analysis, metadata=metadata)
        return await self._unary("UpsertSong", self._stub.UpsertSong, request, timeout_s)

    async def delete_song(
        self, song_id: str, *, timeout_s: CallTimeout = USE_CLIENT_TIMEOUT
    ) -> DeleteSongResponse:
        """Removes a song and all of its segments; NotFoundError when it is not stored."""
        request = matcher_pb2.DeleteSongRequest(song_id=song_id)
        return await self._unary("DeleteSong", self._stub.DeleteSong, request, timeout_s)

    async def get_song(
        self, song_id: str, *, with_vectors: bool = False,
        timeout_s: CallTimeout = USE_CLIENT_TIMEOUT,
    ) -> StoredSong:
        """What is stored for a song (vectors only when asked); NotFoundError when absent."""
        request = matcher_pb2.GetSongRequest(song_id=song_id, with_vectors=with_vectors)
        return await self._unary("GetSong", self._stub.GetSong, request, timeout_s)

    async def list_songs_page(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        filter: Filter | None = None,
        with_vectors: bool = False,
        timeout_s: CallTimeout = USE_CLIENT_TIMEOUT,
    ) -> ListSongsResponse:
        """One page of stored songs in song id order, from `page_token` (the previous page's
        next_page_token; "" for the first page). `page_size` 1 to 1,000 (0: the server's 100);
        a page may hold fewer songs, so read on while next_page_token is set."""
        request = matcher_pb2.ListSongsRequest(
            page_size=page_size, page_token=page_token, filter=filter, with_vectors=with_vectors
        )
        return await self._unary("ListSongs", self._stub.ListSongs, request, timeout_s)

    async def list_songs(
        self,
        *,
        page_size: int = 0,
        filter: Filter | None = None,
        with_vectors: bool = False,
        timeout_s: CallTimeout = USE_CLIENT_TIMEOUT,
    ) -> AsyncIterator[StoredSong]:
        """Every stored song `filter` keeps, in song id order, read page by page (each page
        one ListSongs call under its own deadline): `async for song in client.list_songs():`.
        Songs come as get_song returns them without segments and analysis; their feel only
        `with_vectors`. A song stored or deleted while this runs is listed as the page that
        its id falls in finds it."""
        token = ""
        while True:
            page = await self.list_songs_page(
                page_size=page_size,
                page_token=token,
                filter=filter,
                with_vectors=with_vectors,
                timeout_s=timeout_s,
            )
            for song in page.songs:
                yield song
            token = page.next_page_token
            if not token:
                return

    async def next_segment(
        self,
        song_id: str,
        *,
        time_s: float | None = None,
        k: int = 10,
        filter: Filter | None = None,
        weights: ScoreWeights | None = None,
        allow_multiple_per_song: bool = False,
        timeout_s: CallTimeout = USE_CLIENT_TIMEOUT,
    ) -> NextSegmentResponse:
        """Best segments to move into when leaving `song_id` at `time_s` (None: its end)."""
        position = (
            matcher_pb2.SongPosition(song_id=song_id, song_end=True)
            if time_s is None
            else matcher_pb2.SongPosition(song_id=song_id, time_s=time_s)
        )
        request = matcher_pb2.NextSegmentRequest(
            position=position,
            k=k,
            filter=filter,
            weights=weights,
            allow_multiple_per_song=allow_multiple_per_song,
        )
        return await self._unary("NextSegment", self._stub.NextSegment, request, timeout_s)

    async def next_from_vectors(
        self,
        exit: Sequence[float],
        *,
        feel: Sequence[float] = (),
        tempo_bpm: float = 0.0,
        key: Key | None = None,
        energy: float = 0.0,
        k: int = 10,
        filter: Filter | None = None,
        weights: ScoreWeights | None = None,
        timeout_s: CallTimeout = USE_CLIENT_TIMEOUT,
    ) -> NextSegmentResponse:
        """NextSegment for music that is not stored, from its raw exit vector."""
        raw = matcher_pb2.RawQuery(
            exit=list(exit), feel=list(feel), tempo_bpm=tempo_bpm, key=key, energy=energy
        )
        request = matcher_pb2.NextSegmentRequest(vectors=raw, k=k, filter=filter, weights=weights)
        return await self._unary("NextSegment", self._stub.NextSegment, request, timeout_s)

    async def similar_songs(
        self, song_id: str, *, k: int = 10, filter: Filter | None = None,
        timeout_s: CallTimeout = USE_CLIENT_TIMEOUT,
    ) -> SimilarSongsResponse:
        """The `k` stored songs whose feel is nearest to `song_id`'s, one result per song."""
        request = matcher_pb2.SimilarSongsRequest(song_id=song_id, k=k, filter=filter)
        return await self._unary("SimilarSongs", self._stub.SimilarSongs, request, timeout_s)

    async def similar_to_feel(
        self, feel: Sequence[float], *, k: int = 10, filter: Filter | None = None,
        timeout_s: CallTimeout = USE_CLIENT_TIMEOUT,
    ) -> SimilarSongsResponse:
        """The `k` stored songs nearest to a raw feel vector (length ModelInfo.feel_dim)."""
        request = matcher_pb2.SimilarSongsRequest(
            feel=matcher_pb2.FloatList(values=list(feel)), k=k, filter=filter
        )
        return await self._unary("SimilarSongs", self._stub.SimilarSongs, request, timeout_s)

    async def plan_playlist(
        self,
        seeds: Iterable[str],
        *,
        num_songs: int | None = None,
        duration_s: float | None = None,
        energy_curve: Sequence[float] = (),
        filter: Filter | None = None,
        weights: ScoreWeights | None = None,
        beam_width: int = 0,
        timeout_s: CallTimeout = USE_CLIENT_TIMEOUT,
    ) -> PlanPlaylistResponse:
        """An ordered playlist from the first seed; set num_songs or duration_s (not both)."""
        if num_songs is not None and duration_s is not None:
            raise ValueError("set num_songs or duration_s, not both")
        request = matcher_pb2.PlanPlaylistRequest(
            seed_song_ids=list(seeds),
            energy_curve=list(energy_curve),
            filter=filter,
            weights=weights,
            beam_width=beam_width,
        )
        if num_songs is not None:
            request.num_songs = num_songs
        if duration_s is not None:
            request.duration_s = duration_s
        return await self._unary("PlanPlaylist", self._stub.PlanPlaylist, request, timeout_s)

    async def cluster(
        self,
        *,
        num_clusters: int = 0,
        seed: int = 0,
        filter: Filter | None = None,
        timeout_s: CallTimeout = USE_CLIENT_TIMEOUT,
    ) -> ClusterResponse:
        """Groups the library by feel (`num_clusters` 0: chosen by silhouette)."""
        request = matcher_pb2.ClusterRequest(num_clusters=num_clusters, seed=seed, filter=filter)
        return await self._unary("Cluster", self._stub.Cluster, request, timeout_s)


__all__ = ["MatcherClient", "make_metadata"]
