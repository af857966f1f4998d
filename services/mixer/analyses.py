"""Songs' stored analyses, fetched from the matcher by song id instead of analysing again."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import grpc

from segue.v1 import common_pb2, matcher_pb2, matcher_pb2_grpc

# GetSong calls in flight at once for one render (a mix may name 200 songs).
_PARALLEL_FETCHES = 8
# Matcher answers that a retry may cure: the mixer reports them as UNAVAILABLE.
_TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.CANCELLED,
}


class StoredAnalysisError(Exception):
    """A stored analysis could not be had; `code` is the status the client gets."""

    code = grpc.StatusCode.INTERNAL


class NoMatcherError(StoredAnalysisError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class NotStoredError(StoredAnalysisError):
    code = grpc.StatusCode.NOT_FOUND


class MatcherUnavailableError(StoredAnalysisError):
    code = grpc.StatusCode.UNAVAILABLE


def require_matcher(address: str, field: str) -> None:
    """Raises NoMatcherError naming `field` when the mixer has no matcher to ask."""
    if not address:
        raise NoMatcherError(
            f"{field} is set without an analysis, but this mixer has no matcher to fetch the "
            "stored analysis from: send the analysis, or set SEGUE_MIXER_MATCHER_ADDR"
        )


class StoredAnalyses:
    """Fetches analyses from the matcher's GetSong; one channel, opened on first use."""

    def __init__(self, address: str, timeout_s: float) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._channel: grpc.aio.Channel | None = None
        self._matcher: matcher_pb2_grpc.MatcherAsyncStub | None = None

    def _stub(self) -> matcher_pb2_grpc.MatcherAsyncStub:
        if self._matcher is None:
            # Opened here, inside the serving event loop, which the channel is bound to.
            channel = grpc.aio.insecure_channel(self.address)
            self._channel, self._matcher = channel, matcher_pb2_grpc.MatcherStub(channel)
        return self._matcher

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = self._matcher = None

    async def fetch(self, field: str, song_id: str) -> common_pb2.SongAnalysis:
        """The stored analysis of `song_id` (song seconds); errors name `field`."""
        require_matcher(self.address, field)
        try:
            stored = await self._stub().GetSong(
                matcher_pb2.GetSongRequest(song_id=song_id), timeout=self.timeout_s
            )
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                raise NotStoredError(f"{field} {song_id!r} is not stored in the matcher") from e
            detail = f"{e.code().name}: {e.details()}"
            if e.code() in _TRANSIENT:
                raise MatcherUnavailableError(
                    f"the matcher at {self.address} did not give the analysis of {field} "
                    f"{song_id!r} ({detail}); retry later"
                ) from e
            raise MatcherUnavailableError(
                f"the matcher at {self.address} refused GetSong for {field} {song_id!r} ({detail})"
            ) from e
        analysis = common_pb2.SongAnalysis()
        analysis.CopyFrom(stored.analysis)
        analysis.song_id = analysis.song_id or song_id
        return analysis

    async def fetch_all(self, wanted: Mapping[str, str]) -> dict[str, common_pb2.SongAnalysis]:
        """Analyses by field name for {field: song id}, a few calls at a time."""
        if not wanted:
            return {}
        slots = asyncio.Semaphore(_PARALLEL_FETCHES)

        async def one(field: str, song_id: str) -> common_pb2.SongAnalysis:
            async with slots:
                return await self.fetch(field, song_id)

        fields = list(wanted)
        found = await asyncio.gather(*(one(f, wanted[f]) for f in fields))
        return dict(zip(fields, found, strict=True))


def in_excerpt_time(
    analysis: common_pb2.SongAnalysis, start_s: float, duration_s: float
) -> common_pb2.SongAnalysis:
    """A song's analysis (song seconds) moved into an excerpt that starts at `start_s` in the
    song and lasts `duration_s`: beats, sections and cue points outside it are dropped."""
    end_s = start_s + duration_s
    moved = common_pb2.SongAnalysis()
    moved.CopyFrom(analysis)
    moved.duration_s = duration_s
    del moved.beats[:], moved.sections[:], moved.cue_points[:], moved.segments[:]
    for beat in analysis.beats:
        if start_s <= beat.time_s <= end_s:
            moved.beats.add(time_s=beat.time_s - start_s, position_in_bar=beat.position_in_bar)
    for section in analysis.sections:
        if section.end_s > start_s and section.start_s < end_s:
            s = moved.sections.add()
            s.CopyFrom(section)
            s.start_s = max(section.start_s, start_s) - start_s
            s.end_s = min(section.end_s, end_s) - start_s
    for cue in analysis.cue_points:
        if start_s <= cue.time_s <= end_s:
            c = moved.cue_points.add()
            c.CopyFrom(cue)
            c.time_s = cue.time_s - start_s
    return moved
