"""The Matcher gRPC servicer: request/response mapping around the matcher's core.

Store calls are blocking (qdrant-edge runs in-process, qdrant-client's sync API), so each RPC
runs its work in a worker thread and the event loop stays free. CPU-heavy calls (PlanPlaylist,
Cluster) run on their own bounded pool with a bounded queue (admission), so cheap calls never
wait behind them. Expected failures map to status codes in one place (`_run`): NOT_FOUND,
INVALID_ARGUMENT, RESOURCE_EXHAUSTED (the heavy queue is full) and UNAVAILABLE; anything
else is a fault (INTERNAL).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
import numpy as np
import structlog

from segue.log import get_logger
from segue.metrics import MATCHER_POINTS
from segue.v1 import matcher_pb2, matcher_pb2_grpc
from services.matcher import payload as pl
from services.matcher.admission import HeavyCalls
from services.matcher.clustering import MAX_CLUSTERS, cluster
from services.matcher.conditions import Match, all_of
from services.matcher.config import (
    DEFAULT_HEAVY_QUEUE,
    DEFAULT_HEAVY_WORKERS,
    DEFAULT_MAX_PLAN_COST,
    MatcherConfig,
)
from services.matcher.errors import (
    InvalidArgumentError,
    MatcherError,
    NotFoundError,
    OverloadedError,
    StoreUnavailableError,
)
from services.matcher.filters import build_filter, check_filter_size
from services.matcher.library import SongLibrary
from services.matcher.listing import list_songs
from services.matcher.next_segment import (
    NextSegmentFinder,
    ScoredCandidate,
    check_k,
    resolve_source,
    user_filter_for,
)
from services.matcher.playlist import PlaylistPlanner
from services.matcher.scoring import Weights
from services.matcher.similar import similar_songs
from services.matcher.store import FEEL

T = TypeVar("T")
log = get_logger("segue.matcher")

SERVICE_NAME = matcher_pb2.DESCRIPTOR.services_by_name["Matcher"].full_name
# Points written since the last index build that trigger a background optimize.
OPTIMIZE_AFTER_POINTS = 5_000
OPTIMIZE_IDLE_S = 2.0
# Longest status message sent back (messages quote request values, cut short already).
MAX_DETAILS = 1_000
# Characters of a song id bound to the call's log lines.
LOGGED_ID_CHARACTERS = 128

_STATUS = (
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    (OverloadedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (StoreUnavailableError, grpc.StatusCode.UNAVAILABLE),
)


def _status_of(error: MatcherError) -> grpc.StatusCode:
    for kind, code in _STATUS:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.INTERNAL


def _bind_song_id(song_id: str) -> None:
    """Binds (the start of) the call's song id to its log lines."""
    structlog.contextvars.bind_contextvars(song_id=song_id[:LOGGED_ID_CHARACTERS])


def _candidate(c: ScoredCandidate) -> matcher_pb2.Candidate:
    out = matcher_pb2.Candidate(
        song_id=c.song_id,
        segment_index=c.segment_index,
        entry_time_s=c.start_s,
        segment_end_s=c.end_s,
        score=c.score,
        breakdown=c.breakdown(),
    )
    pl.show_song(c.payload, out)
    return out


class BackgroundOptimizer:
    """Builds search indexes in a thread once enough points were written and writes pause."""

    def __init__(self, library: SongLibrary) -> None:
        self._library = library
        # Starts due: whatever an earlier process wrote may not be indexed yet.
        self._pending = OPTIMIZE_AFTER_POINTS
        self._last_write = 0.0
        self._lock = threading.Lock()
        self._running = False

    def note_write(self, points: int) -> None:
        with self._lock:
            self._pending += points
            self._last_write = time.monotonic()

    def maybe_run(self) -> None:
        with self._lock:
            idle = time.monotonic() - self._last_write >= OPTIMIZE_IDLE_S
            if self._running or self._pending < OPTIMIZE_AFTER_POINTS or not idle:
                return
            self._running = True
            self._pending = 0
        threading.Thread(target=self._run, name="matcher-optimize", daemon=True).start()

    async def run_periodically(self, interval_s: float = OPTIMIZE_IDLE_S) -> None:
        """Checks every interval whether an index build is due, and settles failed writes
        that could not be settled when they failed (cancel the task to stop)."""
        while True:
            await asyncio.sleep(interval_s)
            self.maybe_run()
            if self._library.unsettled_count():
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self._library.settle_unsettled)

    def _run(self) -> None:
        try:
            started = time.perf_counter()
            changed = self._library.store.optimize()
            log.info("optimized", changed=changed, seconds=round(time.perf_counter() - started, 2))
            MATCHER_POINTS.set(self._library.point_count())
        except Exception:
            log.exception("optimize failed")
        finally:
            with self._lock:
                self._running = False


class MatcherServicer(matcher_pb2_grpc.MatcherServicer):
    def __init__(
        self,
        library: SongLibrary,
        *,
        overfetch: int = 5,
        min_candidates: int = 50,
        beam_width: int = 8,
        max_plan_cost: int = DEFAULT_MAX_PLAN_COST,
        heavy_workers: int = DEFAULT_HEAVY_WORKERS,
        heavy_queue: int = DEFAULT_HEAVY_QUEUE,
    ) -> None:
        self.library = library
        self.finder = NextSegmentFinder(library, overfetch, min_candidates)
        self.beam_width = beam_width
        self.max_plan_cost = max_plan_cost
        self.heavy = HeavyCalls(heavy_workers, heavy_queue)
        self.optimizer = BackgroundOptimizer(library)

    @classmethod
    def from_config(cls, library: SongLibrary, config: MatcherConfig) -> MatcherServicer:
        """A servicer with every setting of `config`."""
        return cls(
            library,
            overfetch=config.overfetch,
            min_candidates=config.min_candidates,
            beam_width=config.beam_width,
            max_plan_cost=config.max_plan_cost,
            heavy_workers=config.heavy_workers,
            heavy_queue=config.heavy_queue,
        )

    async def _run(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        fn: Callable[[], T],
        *,
        heavy: bool = False,
    ) -> T:
        """Runs `fn` in a worker thread (on the heavy pool when `heavy`), mapping the
        matcher's errors to status codes. The call is aborted outside the `except` block and
        the error's traceback dropped, so that nothing a refused request allocated stays
        alive through a chained exception."""
        try:
            if heavy:
                return await self.heavy.run(fn)
            return await asyncio.to_thread(fn)
        except MatcherError as e:
            code, details = _status_of(e), str(e)[:MAX_DETAILS]
            e.__traceback__ = None
            if isinstance(e, StoreUnavailableError):
                log.warning("qdrant unavailable", error=details)
            elif isinstance(e, OverloadedError):
                log.warning("heavy call refused", error=details)
        await context.abort(code, details)

    async def UpsertSong(  # noqa: N802 (gRPC method name)
        self,
        request: matcher_pb2.UpsertSongRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> matcher_pb2.UpsertSongResponse:
        _bind_song_id(request.analysis.song_id)

        def work() -> matcher_pb2.UpsertSongResponse:
            result = self.library.upsert(request.analysis, request.metadata)
            self.optimizer.note_write(result.segments_stored + 1)
            return matcher_pb2.UpsertSongResponse(
                song_id=result.song_id,
                segments_stored=result.segments_stored,
                replaced=result.replaced,
            )

        response = await self._run(context, work)
        self.optimizer.maybe_run()
        return response

    async def DeleteSong(  # noqa: N802 (gRPC method name)
        self,
        request: matcher_pb2.DeleteSongRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> matcher_pb2.DeleteSongResponse:
        _bind_song_id(request.song_id)
        removed = await self._run(context, lambda: self.library.delete(request.song_id))
        return matcher_pb2.DeleteSongResponse(song_id=request.song_id, segments_removed=removed)

    async def GetSong(  # noqa: N802 (gRPC method name)
        self,
        request: matcher_pb2.GetSongRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> matcher_pb2.StoredSong:
        def work() -> matcher_pb2.StoredSong:
            song = self.library.song(request.song_id, with_feel=request.with_vectors)
            analysis = self.library.analysis(song, with_vectors=request.with_vectors)
            out = matcher_pb2.StoredSong(
                song_id=song.song_id,
                duration_s=float(song.payload.get("duration_s", 0.0)),
                model_version=str(song.payload.get("model_version", "")),
                # Older clients read segments and feel here rather than in the analysis.
                segments=analysis.segments,
                feel=analysis.feel,
                analysis=analysis,
            )
            pl.show_song(song.payload, out)
            return out

        return await self._run(context, work)

    async def ListSongs(  # noqa: N802 (gRPC method name)
        self,
        request: matcher_pb2.ListSongsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> matcher_pb2.ListSongsResponse:
        return await self._run(context, lambda: list_songs(self.library, request))

    async def NextSegment(  # noqa: N802 (gRPC method name)
        self,
        request: matcher_pb2.NextSegmentRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> matcher_pb2.NextSegmentResponse:
        def work() -> matcher_pb2.NextSegmentResponse:
            k = check_k(request.k)
            weights = Weights.from_proto(request.weights)
            source = resolve_source(self.library, request)
            user = user_filter_for(request.filter, source)
            found = self.finder.find(
                source,
                k=k,
                weights=weights,
                user_filter=user,
                allow_multiple=request.allow_multiple_per_song,
            )
            return matcher_pb2.NextSegmentResponse(
                candidates=[_candidate(c) for c in found], exit_time_s=source.exit_time_s
            )

        return await self._run(context, work)

    async def SimilarSongs(  # noqa: N802 (gRPC method name)
        self,
        request: matcher_pb2.SimilarSongsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> matcher_pb2.SimilarSongsResponse:
        def work() -> matcher_pb2.SimilarSongsResponse:
            results = similar_songs(self.library, request)
            return matcher_pb2.SimilarSongsResponse(
                songs=[
                    matcher_pb2.SimilarSong(
                        song_id=r.song_id,
                        similarity=r.similarity,
                        metadata=pl.metadata_from_payload(r.payload),
                    )
                    for r in results
                ]
            )

        return await self._run(context, work)

    async def PlanPlaylist(  # noqa: N802 (gRPC method name)
        self,
        request: matcher_pb2.PlanPlaylistRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> matcher_pb2.PlanPlaylistResponse:
        def work() -> matcher_pb2.PlanPlaylistResponse:
            planner = PlaylistPlanner(self.finder, self.beam_width, self.max_plan_cost)
            plan = planner.plan(request)
            response = matcher_pb2.PlanPlaylistResponse(total_score=plan.total_score)
            for position, step in enumerate(plan.steps):
                song = plan.songs[step.song_id]
                last = position == len(plan.steps) - 1
                payload = song.payload
                exit_time = (
                    float(payload.get("duration_s", 0.0)) if last else float(song.segments[-1][1])
                )
                out = matcher_pb2.PlaylistStep(
                    song_id=step.song_id, entry_time_s=step.entry_time_s, exit_time_s=exit_time
                )
                pl.show_song(payload, out)
                if step.candidate is not None:
                    out.transition_score = step.candidate.score
                    out.breakdown.CopyFrom(step.candidate.breakdown())
                response.steps.append(out)
            return response

        return await self._run(context, work, heavy=True)

    async def Cluster(  # noqa: N802 (gRPC method name)
        self,
        request: matcher_pb2.ClusterRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> matcher_pb2.ClusterResponse:
        def work() -> matcher_pb2.ClusterResponse:
            if request.num_clusters > MAX_CLUSTERS:
                raise InvalidArgumentError(
                    "num_clusters", f"must be 0 (automatic) to {MAX_CLUSTERS}"
                )
            check_filter_size(request.filter)
            if request.filter.tempo_compatible or request.filter.key_compatible:
                raise InvalidArgumentError(
                    "filter", "tempo_compatible and key_compatible need a song to compare with"
                )
            user = build_filter(request.filter)
            self.library.ensure_ready()
            records = self.library.store.scroll(
                all_of(Match("kind", pl.SONG), user),
                with_vectors=(FEEL,),
                with_payload=("song_id",),
            )
            records = [r for r in records if FEEL in r.vectors]
            records.sort(key=lambda r: str(r.payload["song_id"]))  # order-independent result
            if not records:
                return matcher_pb2.ClusterResponse()
            feels = np.array([r.vectors[FEEL] for r in records], dtype=np.float64)
            result = cluster(feels, request.num_clusters, request.seed)
            response = matcher_pb2.ClusterResponse(silhouette=result.silhouette)
            for cluster_id in range(len(result.centroids)):
                members = [
                    str(records[i].payload["song_id"])
                    for i in np.flatnonzero(result.labels == cluster_id)
                ]
                if members:
                    response.clusters.append(
                        matcher_pb2.SongCluster(
                            cluster_id=len(response.clusters),
                            song_ids=members,
                            centroid=[float(v) for v in result.centroids[cluster_id]],
                        )
                    )
            return response

        return await self._run(context, work, heavy=True)

    def close(self) -> None:
        """Drops heavy calls still waiting (at shutdown)."""
        self.heavy.close()

    def refresh_point_gauge(self) -> None:
        with contextlib.suppress(StoreUnavailableError):
            MATCHER_POINTS.set(self.library.point_count())


def register(servicer: MatcherServicer) -> Callable[[grpc.aio.Server], list[str]]:
    def add(server: grpc.aio.Server) -> list[str]:
        matcher_pb2_grpc.add_MatcherServicer_to_server(servicer, server)
        return [SERVICE_NAME]

    return add
