"""The Embedder gRPC servicer: Analyze streams, EmbedClip and ModelInfo."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn, TypeVar

import grpc
import numpy as np
import structlog

from segue.audio import pcm_to_mono, validate_format
from segue.embedding.analysis import build_analysis
from segue.embedding.model import FloatArray, ModelOutputs, StreamModel
from segue.embedding.stream_state import PendingWindow, SongStream, StreamSettings
from segue.log import get_logger
from segue.metrics import EMBEDDER_ACTIVE_STREAMS, EMBEDDER_AUDIO_SECONDS, EMBEDDER_CHUNK_DURATION
from segue.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc
from services.embedder.batcher import Batcher, BatcherClosedError
from services.embedder.config import EmbedderConfig
from services.embedder.resume_token import TokenCodec, TokenContents, TokenError

log = get_logger("segue.embedder")

R = TypeVar("R")
Context = grpc.aio.ServicerContext[Any, Any]
RequestIterator = AsyncIterator[embedder_pb2.AnalyzeRequest]

MAX_SONG_ID_CHARS = 256
# Room for the AnalyzeRequest framing around a chunk's bytes.
MESSAGE_OVERHEAD_BYTES = 1024
# After `end`, how long the server waits for the client's half-close before answering anyway.
END_GRACE_S = 1.0


async def _refuse(requests: RequestIterator, context: Context, code: grpc.StatusCode,
                  message: str) -> None:
    """Refuses a stream after reading its config message.

    Clients write the config, then wait for the stream to be accepted. Taking that one message
    first lets their write complete, so they see this status rather than a failed write
    (which grpc-python reports as INTERNAL "Internal error from Core").
    """
    with contextlib.suppress(Exception):
        await asyncio.wait_for(anext(aiter(requests)), timeout=1.0)
    await _abort(context, code, message)


async def _abort(context: Context, code: grpc.StatusCode, message: str) -> NoReturn:
    if context.cancelled() or context.done():
        # The client went away (e.g. cancelled): nobody is left to tell.
        log.info("stream cancelled by the client")
        raise asyncio.CancelledError
    log.info("stream rejected", code=code.name, reason=message)
    await context.abort(code, message)
    raise AssertionError("unreachable: abort raises")


class EmbedderServicer(embedder_pb2_grpc.EmbedderServicer):
    """Serves one model to many concurrent streams through a shared batcher."""

    def __init__(self, model: StreamModel, config: EmbedderConfig,
                 max_message_bytes: int = 4 * 1024 * 1024) -> None:
        self.model = model
        self.config = config
        self.max_chunk_bytes = min(
            config.max_chunk_bytes, max_message_bytes - MESSAGE_OVERHEAD_BYTES
        )
        self.codec = TokenCodec(config.token_key.encode())
        self.settings = StreamSettings(segment_s=config.segment_s, min_tail_s=config.min_tail_s)
        self._active = 0
        self.streams_accepted = 0  # Analyze streams taken since start
        self._clips = 0
        self._draining = False
        self.batcher = Batcher(
            model,
            max_size=config.batch_max_size,
            max_delay_s=config.batch_max_delay_ms / 1000.0,
            workers=config.batch_workers,
        )

    @property
    def active_streams(self) -> int:
        return self._active

    async def drain(self) -> None:
        """Refuses new streams from now on; streams already open continue."""
        self._draining = True
        log.info("draining", active_streams=self._active)

    async def close(self) -> None:
        await self.batcher.close()

    # ---- ModelInfo -----------------------------------------------------------------------

    def model_info(self) -> embedder_pb2.ModelInfoResponse:
        spec = self.model.spec
        return embedder_pb2.ModelInfoResponse(
            name=spec.name,
            version=spec.version,
            embedding_dim=spec.embedding_dim,
            feel_dim=spec.feel_dim,
            transition_dim=spec.transition_dim,
            native_sample_rate_hz=spec.sample_rate_hz,
            window_s=spec.window_s,
            sha256=spec.sha256,
            execution_provider=self.model.provider,
            max_chunk_bytes=self.max_chunk_bytes,
            max_song_s=self.config.max_song_s,
            max_clip_s=self.config.max_clip_s,
            max_concurrent_streams=self.config.max_concurrent_streams,
        )

    async def ModelInfo(  # noqa: N802 (gRPC method name)
        self, request: embedder_pb2.ModelInfoRequest, context: Context
    ) -> embedder_pb2.ModelInfoResponse:
        return self.model_info()

    # ---- EmbedClip -----------------------------------------------------------------------

    async def EmbedClip(  # noqa: N802
        self, request: embedder_pb2.EmbedClipRequest, context: Context
    ) -> embedder_pb2.EmbedClipResponse:
        fmt = request.format
        try:
            validate_format(fmt)
            mono = pcm_to_mono(request.pcm, fmt)
        except ValueError as e:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(e))
        duration = mono.size / fmt.sample_rate_hz
        spec = self.model.spec
        if duration < spec.window_s:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                         f"clip of {duration:.3f} s is shorter than one model window "
                         f"({spec.window_s:.3f} s)")
        if duration > self.config.max_clip_s:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                         f"clip of {duration:.3f} s exceeds max_clip_s "
                         f"({self.config.max_clip_s:g} s); use Analyze for songs")
        if self._clips >= self.config.max_concurrent_streams:
            await _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                         "too many EmbedClip calls in progress; retry with backoff")
        self._clips += 1
        try:
            stream = SongStream(spec, "clip", fmt, self.settings)
            windows = stream.push(mono) + stream.finish()
            pcm = np.concatenate([w.pcm for w in windows])
            try:
                out = await self.batcher.run(pcm, stream.state)
            except BatcherClosedError as e:
                await _abort(context, grpc.StatusCode.UNAVAILABLE, str(e))
        finally:
            self._clips -= 1
        return embedder_pb2.EmbedClipResponse(
            feel=out.feel[0].tolist(),
            windows=[
                stream.window_embedding(w, out.embedding[0, k], out.entry[0, k], out.exit[0, k])
                for k, w in enumerate(windows)
            ],
            duration_s=duration,
        )

    # ---- Analyze -------------------------------------------------------------------------

    async def Analyze(  # noqa: N802
        self, request_iterator: RequestIterator, context: Context
    ) -> AsyncIterator[embedder_pb2.AnalyzeResponse]:
        if self._draining:
            await _refuse(request_iterator, context, grpc.StatusCode.UNAVAILABLE,
                          "the embedder is shutting down; resume the stream on another replica "
                          "with its last checkpoint token")
        if self._active >= self.config.max_concurrent_streams:
            await _refuse(request_iterator, context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"the embedder is at its limit of {self.config.max_concurrent_streams} "
                          "concurrent streams; retry with backoff or use another replica")
        self._active += 1
        self.streams_accepted += 1
        EMBEDDER_ACTIVE_STREAMS.inc()
        # Tells clients the stream was accepted before they send audio (see the client SDK).
        await context.send_initial_metadata((("segue-stream", "accepted"),))
        stream_id = uuid.uuid4().hex[:16]
        try:
            with structlog.contextvars.bound_contextvars(stream_id=stream_id):
                async for response in _AnalyzeCall(self, request_iterator, context).run():
                    yield response
        finally:
            self._active -= 1
            EMBEDDER_ACTIVE_STREAMS.dec()

    def run_windows(self, stream: SongStream, windows: list[PendingWindow],
                    respond: Callable[[embedder_pb2.WindowEmbedding], R]) -> AsyncIterator[R]:
        """Runs a stream's windows through the batcher in order (each needs the last state).

        The stream's bookkeeping (`commit`) and `respond` run in the batcher's worker thread.
        """

        def prepare(window: PendingWindow) -> tuple[FloatArray, FloatArray]:
            return window.pcm, stream.state

        def after(window: PendingWindow, out: ModelOutputs) -> R:
            return respond(stream.commit(window, out))

        return self.batcher.stream(windows, prepare, after)


def _no_response(window: embedder_pb2.WindowEmbedding) -> None:
    return None


class _AnalyzeCall:
    """One Analyze RPC: reads requests, drives its SongStream, writes responses."""

    def __init__(self, servicer: EmbedderServicer, requests: RequestIterator,
                 context: Context) -> None:
        self.servicer = servicer
        self.config = servicer.config
        self.context = context
        self._requests = requests.__aiter__()
        self.song_id = ""
        self.stream_windows = True
        self.checkpoint_interval_s = self.config.checkpoint_interval_s
        self.next_checkpoint_s = 0.0

    async def _next(self) -> embedder_pb2.AnalyzeRequest | None:
        """The next request; None when the client half-closed. Evicts idle streams."""
        try:
            async with asyncio.timeout(self.config.stream_idle_ttl_s):
                return await anext(self._requests)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            await _abort(self.context, grpc.StatusCode.DEADLINE_EXCEEDED,
                         f"stream idle for more than {self.config.stream_idle_ttl_s:g} s; "
                         "it was closed: resume from its last checkpoint token")

    async def _fail(self, code: grpc.StatusCode, message: str) -> NoReturn:
        await _abort(self.context, code, message)

    async def _open(self) -> SongStream:
        first = await self._next()
        if first is None:
            await self._fail(grpc.StatusCode.FAILED_PRECONDITION,
                             "empty stream: send a config, audio chunks and an end")
        if first.WhichOneof("kind") != "config":
            await self._fail(grpc.StatusCode.FAILED_PRECONDITION,
                             f"the first message must be a config, got {first.WhichOneof('kind')}")
        config = first.config
        if not 1 <= len(config.song_id) <= MAX_SONG_ID_CHARS:
            await self._fail(grpc.StatusCode.INVALID_ARGUMENT,
                             f"song_id must be 1 to {MAX_SONG_ID_CHARS} characters, "
                             f"got {len(config.song_id)}")
        self.song_id = config.song_id
        structlog.contextvars.bind_contextvars(song_id=self.song_id)
        try:
            validate_format(config.format)
        except ValueError as e:
            await self._fail(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        if config.checkpoint_interval_s < 0 or not np.isfinite(config.checkpoint_interval_s):
            await self._fail(grpc.StatusCode.INVALID_ARGUMENT,
                             "checkpoint_interval_s must be a finite number >= 0")
        if config.checkpoint_interval_s > 0:
            self.checkpoint_interval_s = config.checkpoint_interval_s
        self.stream_windows = config.stream_windows if config.HasField("stream_windows") else True
        spec = self.servicer.model.spec
        if config.resume_token:
            stream = await self._resume(config)
        else:
            stream = SongStream(spec, self.song_id, config.format, self.servicer.settings)
        self.next_checkpoint_s = self._after(stream.position_s)
        log.info("stream started", resumed_at_s=stream.position_s,
                 sample_rate_hz=config.format.sample_rate_hz, channels=config.format.channels)
        return stream

    def _after(self, position_s: float) -> float:
        step = self.checkpoint_interval_s
        return float((np.floor(position_s / step + 1e-9) + 1) * step)

    async def _resume(self, config: embedder_pb2.StreamConfig) -> SongStream:
        spec = self.servicer.model.spec
        try:
            contents = self.servicer.codec.decode(config.resume_token)
        except TokenError as e:
            await self._fail(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        if contents.model_sha256 != spec.sha256:
            await self._fail(grpc.StatusCode.INVALID_ARGUMENT,
                             f"resume token is from model {contents.model_name} "
                             f"{contents.model_version}, this server runs {spec.name} "
                             f"{spec.version}: restart the song from the beginning")
        if contents.song_id != self.song_id:
            await self._fail(grpc.StatusCode.INVALID_ARGUMENT,
                             f"resume token belongs to song_id {contents.song_id!r}, "
                             f"not {self.song_id!r}")
        try:
            stream = SongStream.restore(spec, self.song_id, contents.arrays)
        except ValueError as e:
            await self._fail(grpc.StatusCode.INVALID_ARGUMENT, f"resume token is corrupt: {e}")
        fmt = stream.audio_format
        if (fmt.sample_rate_hz, fmt.channels, fmt.sample_format) != (
            config.format.sample_rate_hz, config.format.channels, config.format.sample_format
        ):
            await self._fail(grpc.StatusCode.INVALID_ARGUMENT,
                             "resume token was issued for another audio format "
                             f"({fmt.sample_rate_hz} Hz, {fmt.channels} channel(s), "
                             f"{common_pb2.SampleFormat.Name(fmt.sample_format)})")
        if stream.finished:
            await self._fail(grpc.StatusCode.INVALID_ARGUMENT,
                             "resume token is from a stream that had already ended")
        return stream

    def _windows_response(self, window: embedder_pb2.WindowEmbedding
                          ) -> embedder_pb2.AnalyzeResponse:
        response = embedder_pb2.AnalyzeResponse(song_id=self.song_id)
        response.windows.windows.append(window)
        return response

    def _checkpoint(self, stream: SongStream) -> embedder_pb2.AnalyzeResponse:
        spec = self.servicer.model.spec
        # About 0.1 ms for a 2-minute song: cheaper inline than a hand-off to a thread.
        token = self.servicer.codec.encode(TokenContents(
            song_id=self.song_id, model_name=spec.name, model_version=spec.version,
            model_sha256=spec.sha256, arrays=stream.snapshot()))
        self.next_checkpoint_s = self._after(stream.position_s)
        return embedder_pb2.AnalyzeResponse(
            song_id=self.song_id,
            checkpoint=embedder_pb2.Checkpoint(
                resume_token=token, position_s=stream.position_s,
                position_frames=stream.frames_consumed))

    async def _process(self, stream: SongStream, windows: list[PendingWindow]
                       ) -> AsyncIterator[embedder_pb2.AnalyzeResponse]:
        respond: Callable[[embedder_pb2.WindowEmbedding], embedder_pb2.AnalyzeResponse | None] = (
            self._windows_response if self.stream_windows else _no_response)
        try:
            async for response in self.servicer.run_windows(stream, windows, respond):
                if response is not None:
                    yield response
        except BatcherClosedError as e:
            await self._fail(grpc.StatusCode.UNAVAILABLE,
                             f"{e}; resume on another replica with the last checkpoint token")

    async def run(self) -> AsyncIterator[embedder_pb2.AnalyzeResponse]:
        stream = await self._open()
        fmt = stream.audio_format
        max_frames = int(self.config.max_song_s * fmt.sample_rate_hz)
        while True:
            request = await self._next()
            if request is None:
                await self._fail(grpc.StatusCode.FAILED_PRECONDITION,
                                 "the client closed the stream without an end message")
            kind = request.WhichOneof("kind")
            if kind == "config":
                await self._fail(grpc.StatusCode.FAILED_PRECONDITION,
                                 "a second config was sent; a stream takes exactly one")
            if kind == "end":
                break
            if kind != "chunk":
                await self._fail(grpc.StatusCode.INVALID_ARGUMENT, "request holds no message")
            arrived = time.perf_counter()
            pcm = request.chunk.pcm
            if len(pcm) > self.servicer.max_chunk_bytes:
                await self._fail(grpc.StatusCode.INVALID_ARGUMENT,
                                 f"oversized chunk: {len(pcm)} bytes exceeds the limit of "
                                 f"{self.servicer.max_chunk_bytes} bytes; send smaller chunks")
            try:
                mono = pcm_to_mono(pcm, fmt)
            except ValueError as e:
                await self._fail(grpc.StatusCode.INVALID_ARGUMENT, str(e))
            if stream.frames_consumed + mono.size > max_frames:
                await self._fail(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                 f"song exceeds the maximum length of {self.config.max_song_s:g} s")
            if mono.size == 0:
                continue
            async for response in self._process(stream, stream.push(mono)):
                yield response
            EMBEDDER_AUDIO_SECONDS.inc(mono.size / fmt.sample_rate_hz)
            EMBEDDER_CHUNK_DURATION.observe(time.perf_counter() - arrived)
            if stream.position_s + 1e-9 >= self.next_checkpoint_s:
                yield self._checkpoint(stream)
        if stream.frames_consumed == 0:
            await self._fail(grpc.StatusCode.FAILED_PRECONDITION,
                             "empty stream: end was sent before any audio")
        async for response in self._process(stream, stream.finish()):
            yield response
        # A message after `end` is an error. Look for one (or the client's half-close) while
        # the analysis is built, and a little longer for clients that keep the stream open.
        trailing = asyncio.ensure_future(self._peek_after_end())
        analysis = await asyncio.to_thread(build_analysis, stream)
        done, _ = await asyncio.wait({trailing}, timeout=END_GRACE_S)
        if done and trailing.exception() is None and trailing.result() is not None:
            await self._fail(grpc.StatusCode.FAILED_PRECONDITION,
                             "a message was sent after end; end must be the last message")
        trailing.cancel()
        log.info("stream finished", duration_s=analysis.duration_s,
                 windows=stream.windows_committed)
        yield embedder_pb2.AnalyzeResponse(song_id=self.song_id, analysis=analysis)

    async def _peek_after_end(self) -> embedder_pb2.AnalyzeRequest | None:
        try:
            return await anext(self._requests)
        except StopAsyncIteration:
            return None


__all__ = ["EmbedderServicer"]
