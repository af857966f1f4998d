"""Typed async client of the Matcher service.

    from segue.client.matcher import MatcherClient

    async with MatcherClient("127.0.0.1:50052") as matcher:
        await matcher.upsert_song(analysis, title="Song", artist="Someone")
        response = await matcher.next_segment("song-1", k=5)
        for candidate in response.candidates:
            print(candidate.song_id, candidate.entry_time_s, candidate.score)

Errors are grpc.aio.AioRpcError with the codes the proto documents (NOT_FOUND,
INVALID_ARGUMENT, UNAVAILABLE).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import grpc

from segue.client.channel import DEFAULT_MAX_MESSAGE_BYTES, ServiceClient
from segue.v1 import common_pb2, matcher_pb2, matcher_pb2_grpc


def make_metadata(
    *,
    title: str = "",
    artist: str = "",
    album: str = "",
    genre: str = "",
    uri: str = "",
    extra: Mapping[str, str] | None = None,
) -> matcher_pb2.SongMetadata:
    return matcher_pb2.SongMetadata(
        title=title, artist=artist, album=album, genre=genre, uri=uri, extra=dict(extra or {})
    )


class MatcherClient(ServiceClient):
    """Async client; use as `async with MatcherClient(address) as client:`."""

    def __init__(
        self,
        address: str,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        timeout_s: float | None = 30.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        super().__init__(address, credentials=credentials, timeout_s=timeout_s,
                         max_message_bytes=max_message_bytes)
        self._stub = matcher_pb2_grpc.MatcherStub(self._channel)

    async def upsert_song(
        self,
        analysis: common_pb2.SongAnalysis,
        metadata: matcher_pb2.SongMetadata | None = None,
    ) -> matcher_pb2.UpsertSongResponse:
        """Stores or replaces a song (idempotent)."""
        request = matcher_pb2.UpsertSongRequest(analysis=analysis, metadata=metadata)
        return await self._stub.UpsertSong(request, timeout=self.timeout_s)

    async def delete_song(self, song_id: str) -> matcher_pb2.DeleteSongResponse:
        request = matcher_pb2.DeleteSongRequest(song_id=song_id)
        return await self._stub.DeleteSong(request, timeout=self.timeout_s)

    async def get_song(self, song_id: str, *, with_vectors: bool = False) -> matcher_pb2.StoredSong:
        request = matcher_pb2.GetSongRequest(song_id=song_id, with_vectors=with_vectors)
        return await self._stub.GetSong(request, timeout=self.timeout_s)

    async def next_segment(
        self,
        song_id: str,
        *,
        time_s: float | None = None,
        k: int = 10,
        filter: matcher_pb2.Filter | None = None,
        weights: matcher_pb2.ScoreWeights | None = None,
        allow_multiple_per_song: bool = False,
    ) -> matcher_pb2.NextSegmentResponse:
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
        return await self._stub.NextSegment(request, timeout=self.timeout_s)

    async def next_from_vectors(
        self,
        exit: Sequence[float],
        *,
        feel: Sequence[float] = (),
        tempo_bpm: float = 0.0,
        key: common_pb2.Key | None = None,
        energy: float = 0.0,
        k: int = 10,
        filter: matcher_pb2.Filter | None = None,
        weights: matcher_pb2.ScoreWeights | None = None,
    ) -> matcher_pb2.NextSegmentResponse:
        """NextSegment for music that is not stored, from its raw exit vector."""
        raw = matcher_pb2.RawQuery(
            exit=list(exit), feel=list(feel), tempo_bpm=tempo_bpm, key=key, energy=energy
        )
        request = matcher_pb2.NextSegmentRequest(vectors=raw, k=k, filter=filter, weights=weights)
        return await self._stub.NextSegment(request, timeout=self.timeout_s)

    async def similar_songs(
        self, song_id: str, *, k: int = 10, filter: matcher_pb2.Filter | None = None
    ) -> matcher_pb2.SimilarSongsResponse:
        request = matcher_pb2.SimilarSongsRequest(song_id=song_id, k=k, filter=filter)
        return await self._stub.SimilarSongs(request, timeout=self.timeout_s)

    async def similar_to_feel(
        self, feel: Sequence[float], *, k: int = 10, filter: matcher_pb2.Filter | None = None
    ) -> matcher_pb2.SimilarSongsResponse:
        request = matcher_pb2.SimilarSongsRequest(
            feel=matcher_pb2.FloatList(values=list(feel)), k=k, filter=filter
        )
        return await self._stub.SimilarSongs(request, timeout=self.timeout_s)

    async def plan_playlist(
        self,
        seeds: Iterable[str],
        *,
        num_songs: int | None = None,
        duration_s: float | None = None,
        energy_curve: Sequence[float] = (),
        filter: matcher_pb2.Filter | None = None,
        weights: matcher_pb2.ScoreWeights | None = None,
        beam_width: int = 0,
    ) -> matcher_pb2.PlanPlaylistResponse:
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
        return await self._stub.PlanPlaylist(request, timeout=self.timeout_s)

    async def cluster(
        self,
        *,
        num_clusters: int = 0,
        seed: int = 0,
        filter: matcher_pb2.Filter | None = None,
    ) -> matcher_pb2.ClusterResponse:
        request = matcher_pb2.ClusterRequest(num_clusters=num_clusters, seed=seed, filter=filter)
        return await self._stub.Cluster(request, timeout=self.timeout_s)


__all__ = ["MatcherClient", "make_metadata"]
