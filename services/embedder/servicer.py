"""The Embedder gRPC servicer: Analyze streams, EmbedClip and ModelInfo.

Defences against bad input and hostile clients (embedder.proto documents the status codes):
- A stream's config is read and checked whole (song id, format, checkpoint interval, resume
  token and the state inside it) before the stream is accepted with its initial metadata
  (`segue-stream: accepted`); the client SDK sends audio only after that, so a bad config
  always reaches it as a clean INVALID_ARGUMENT. Every refusal names the offending field.
- Float samples must be finite and within ±MAX_ABS_SAMPLE; song ids are printable text.
- Responses are written with `context.write` under SEGUE_STREAM_WRITE_TIMEOUT_S, and the
  batcher runs at most a few windows ahead of the writes, so a client that stops reading
  holds a bounded amount of memory (gRPC's flow-control window plus a few responses) and
  loses its stream after the timeout. (A yield is awaited by gRPC without any time limit.)
- A stream must deliver SEGUE_MIN_AUDIO_RATE seconds of audio per second the server waits
  for it, or it is closed, so trickling clients cannot hold the stream slots.
- A failing stream raises `_StreamError`, caught at the top of Analyze: the frames that held
  its audio and state are gone before its status is set. The status is set rather than
  aborted with, because an abort waits until the client has read everything before it,
  which a client that does not read never does.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
import numpy as np
import structlog

from segue.audio import frame_bytes, pcm_to_mono, validate_format
from segue.embedding.analysis import build_analysis
from segue.embedding.model import FloatArray, ModelOutputs, StreamModel
from segue.embedding.stream_state import PendingWindow, SongStream, StreamSettings
from segue.log import get_logger
from segue.metrics import (
    EMBEDDER_ACTIVE_STREAMS,
    EMBEDDER_AUDIO_SECONDS,
    EMBEDDER_CHECKPOINT_BYTES,
    EMBEDDER_CHUNK_DURATION,
)
from segue.song_ids import song_id_problem
from segue.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc
from services.embedder.batcher import Batcher, BatcherClosedError
from services.embedder.config import MAX_ABS_SAMPLE, MIN_CHECKPOINT_INTERVAL_S, EmbedderConfig
from services.embedder.resume_token import TokenCodec, TokenContents, TokenError, check_snapshot

log = get_logger("segue.embedder")

R = TypeVar("R")
Context = grpc.aio.ServicerContext[Any, Any]
RequestIterator = AsyncIterator[embedder_pb2.AnalyzeRequest]
Code = grpc.StatusCode

# Room for the AnalyzeRequest framing around a chunk's bytes.
MESSAGE_OVERHEAD_BYTES = 1024
# After `end`, how long the server waits for the client's half-close before answering anyway.
END_GRACE_S = 1.0
ACCEPTED = (("segue-stream", "accepted"),)


class _StreamError(Exception):
    """Ends a call with `code` and `message` (see the module docstring)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _NonFiniteOutputError(RuntimeError):
    """The model returned NaN or Inf for a stream's window."""


def _fail(code: grpc.StatusCode, message: str) -> NoReturn:
    raise _StreamError(code, message)


def format_problem(fmt: common_pb2.AudioFormat, field: str) -> str | None:
    """Why the audio format `fmt` is not supported (naming `field`); None when it is."""
    try:
        validate_format(fmt)
    except ValueError as e:
        return f"{field}: {e}"
    return None


def pcm_problem(pcm: bytes, fmt: common_pb2.AudioFormat, field: str) -> str | None:
    """Why `pcm` (in the supported format `fmt`) cannot be analysed: partial frames, or float
    samples that are NaN, Inf or beyond ±MAX_ABS_SAMPLE; naming `field`. None when it can."""
    size = frame_bytes(fmt)
    if len(pcm) % size:
        return (f"{field} of {len(pcm)} bytes is not a whole number of {size}-byte frames "
                f"({fmt.channels} channel(s) of {size // fmt.channels} bytes)")
    if fmt.sample_format != common_pb2.SAMPLE_FORMAT_F32LE or not pcm:
        return None
    samples = np.frombuffer(pcm, dtype="<f4")
    magnitude = np.abs(samples)
    if magnitude.max() <= MAX_ABS_SAMPLE:  # False for NaN too
        return None
    first = int(np.flatnonzero(~(magnitude <= MAX_ABS_SAMPLE))[0])
    value, frame = float(samples[first]), first // fmt.channels
    if not math.isfinite(value):
        return f"{field} holds NaN or Inf samples (first at frame {frame})"
    return (f"{field} holds a sample of {value:g} at frame {frame}: float samples must be "
            f"finite and within ±{MAX_ABS_SAMPLE:g} (full scale is ±1.0)")


def _finite(out: ModelOutputs) -> bool:
    return all(np.isfinite(a).all() for a in (out.state, out.feel, out.embedding, out.entry,
                                              out.exit))


async def _refuse(requests: RequestIterator, context: Context, code: grpc.StatusCode,
                  message: str) -> NoReturn:
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


def _end(context: Context, code: grpc.StatusCode, message: str) -> None:
    """Sets a stream's final status; gRPC sends it once the handler has returned."""
    if context.cancelled() or context.done():
        log.info("stream cancelled by the client")
        return
    log.info("stream rejected", code=code.name, reason=message)
    context.set_code(code)
    context.set_details(message)


class EmbedderServicer(embedder_pb2_grpc.EmbedderServicer):
    """Serves one model to many concurrent streams through a shared batcher."""

    def __init__(self, model: StreamModel, config: EmbedderConfig,
                 max_message_bytes: int = 4 * 1024 * 1024) -> None:
        self.model = model
        self.config = config
        self.max_chunk_bytes = min(
            config.max_chunk_bytes, max_message_bytes - MESSAGE_OVERHEAD_BYTES
        )
        self.codec = TokenCodec(config.token_key.encode(), ttl_s=config.token_ttl_s,
                                accept_legacy=config.token_accept_legacy)
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
        try:
            return await self._embed_clip(request)
        except _StreamError as e:  # the decoded clip went with _embed_clip's frame
            code, message = e.code, e.message
        await _abort(context, code, message)

    def _check_clip(self, request: embedder_pb2.EmbedClipRequest) -> float:
        """The clip's duration, once its format, length and samples are checked."""
        fmt = request.format
        problem = format_problem(fmt, "EmbedClipRequest.format")
        if problem:
            _fail(Code.INVALID_ARGUMENT, problem)
        duration = len(request.pcm) // frame_bytes(fmt) / fmt.sample_rate_hz
        window_s = self.model.spec.window_s
        if duration < window_s:
            _fail(Code.INVALID_ARGUMENT,
                  f"EmbedClipRequest.pcm: clip of {duration:.3f} s is shorter than one model "
                  f"window ({window_s:.3f} s)")
        if duration > self.config.max_clip_s:
            _fail(Code.INVALID_ARGUMENT,
                  f"EmbedClipRequest.pcm: clip of {duration:.3f} s exceeds max_clip_s "
                  f"({self.config.max_clip_s:g} s); use Analyze for songs")
        problem = pcm_problem(request.pcm, fmt, "EmbedClipRequest.pcm")
        if problem:
            _fail(Code.INVALID_ARGUMENT, problem)
        return duration

    async def _embed_clip(self, request: embedder_pb2.EmbedClipRequest
                          ) -> embedder_pb2.EmbedClipResponse:
        duration = self._check_clip(request)
        if self._clips >= self.config.max_concurrent_streams:
            _fail(Code.RESOURCE_EXHAUSTED,
                  "too many EmbedClip calls in progress; retry with backoff")
        self._clips += 1
        try:
            stream = SongStream(self.model.spec, "clip", request.format, self.settings)
            windows = stream.push(pcm_to_mono(request.pcm, request.format)) + stream.finish()
            pcm = np.concatenate([w.pcm for w in windows])
            try:
                out = await self.batcher.run(pcm, stream.state)
            except BatcherClosedError as e:
                _fail(Code.UNAVAILABLE, str(e))
        finally:
            self._clips -= 1
        if not _finite(out):
            _fail(Code.INTERNAL, "the model returned non-finite values for this clip")
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
        """Serves one stream. Responses are written with `context.write` under the write
        timeout, not yielded; this stays an async generator because the service interceptor
        (segue/interceptor.py) iterates its handlers."""
        if self._draining:
            await _refuse(request_iterator, context, Code.UNAVAILABLE,
                          "the embedder is shutting down; resume the stream on another replica "
                          "with its last checkpoint token")
        if self._active >= self.config.max_concurrent_streams:
            await _refuse(request_iterator, context, Code.RESOURCE_EXHAUSTED,
                          f"the embedder is at its limit of {self.config.max_concurrent_streams} "
                          "concurrent streams; retry with backoff or use another replica")
        self._active += 1
        self.streams_accepted += 1
        EMBEDDER_ACTIVE_STREAMS.inc()
        outcome: tuple[grpc.StatusCode, str] | None = None
        with structlog.contextvars.bound_contextvars(stream_id=uuid.uuid4().hex[:16]):
            try:
                await _AnalyzeCall(self, request_iterator, context).run()
            except _StreamError as e:  # the stream's buffers went with the call's frames
                outcome = (e.code, e.message)
            finally:
                self._active -= 1
                EMBEDDER_ACTIVE_STREAMS.dec()
            if outcome is not None:
                _end(context, *outcome)
        return
        yield  # never reached: makes Analyze an async generator

    def run_windows(self, stream: SongStream, windows: list[PendingWindow],
                    respond: Callable[[embedder_pb2.WindowEmbedding], R] | None
                    ) -> AsyncGenerator[R | None, None]:
        """Runs a stream's windows through the batcher in order (each needs the last state).

        The stream's bookkeeping (`commit`) and `respond` run in the batcher's worker thread;
        with `respond` None no window message is built and each result is None.
        Non-finite model outputs raise _NonFiniteOutputError before they reach the stream.
        """

        def prepare(window: PendingWindow) -> tuple[FloatArray, FloatArray]:
            return window.pcm, stream.state

        def after(window: PendingWindow, out: ModelOutputs) -> R | None:
            if not _finite(out):
                raise _NonFiniteOutputError(f"non-finite model outputs at window {window.index}")
            stream.commit(window, out)
            if respond is None:
                return None
            return respond(stream.window_embedding(window, out.embedding[0, 0], out.entry[0, 0],
                                                   out.exit[0, 0]))

        return self.batcher.stream(windows, prepare, after)


class _AnalyzeCall:
    """One Analyze RPC: reads requests, drives its SongStream, writes responses."""

    def __init__(self, servicer: EmbedderServicer, requests: RequestIterator,
                 context: Context) -> None:
        self.servicer = servicer
        self.config = servicer.config
        self.context = context
        self._requests = requests.__aiter__()
        self.song_id = ""
        self.resumed = False
        self.stream_windows = True
        self.checkpoint_interval_s = self.config.checkpoint_interval_s
        self.next_checkpoint_s = 0.0
        # For SEGUE_MIN_AUDIO_RATE, from the stream's acceptance on: the time spent waiting
        # for the client's messages, and the audio they brought.
        self.waited_s = 0.0
        self.audio_s = 0.0

    async def _next(self) -> embedder_pb2.AnalyzeRequest | None:
        """The next request; None when the client half-closed. Evicts idle streams."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.config.stream_idle_ttl_s):
                return await anext(self._requests)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            pass
        finally:
            self.waited_s += time.monotonic() - started
        _fail(Code.DEADLINE_EXCEEDED,
              f"stream idle for more than {self.config.stream_idle_ttl_s:g} s "
              "(SEGUE_STREAM_IDLE_TTL_S); it was closed: resume from its last checkpoint token")

    async def _bounded(self, operation: Awaitable[None]) -> None:
        """Awaits a write to the client, ending the stream if the client takes none for
        SEGUE_STREAM_WRITE_TIMEOUT_S (flow control holds writes while it does not read)."""
        timeout = self.config.stream_write_timeout_s
        try:
            async with asyncio.timeout(timeout):
                await operation
            return
        except TimeoutError:
            pass
        _fail(Code.DEADLINE_EXCEEDED,
              f"the client accepted no response for {timeout:g} s "
              "(SEGUE_STREAM_WRITE_TIMEOUT_S): read the responses as they come. The stream "
              "was closed; resume it from its last checkpoint token")

    async def _write(self, response: embedder_pb2.AnalyzeResponse) -> None:
        await self._bounded(self.context.write(response))

    async def _open(self) -> SongStream:
        """Reads and checks the whole config; the stream it describes (new or resumed)."""
        first = await self._next()
        if first is None:
            _fail(Code.FAILED_PRECONDITION, "empty stream: send a config, audio chunks and an end")
        kind = first.WhichOneof("kind")
        if kind != "config":
            _fail(Code.FAILED_PRECONDITION, f"the first message must be a config, got {kind}")
        config = first.config
        _check_config(config, self.config.checkpoint_interval_s)
        self.song_id = config.song_id
        structlog.contextvars.bind_contextvars(song_id=self.song_id)
        if config.checkpoint_interval_s > 0:
            self.checkpoint_interval_s = config.checkpoint_interval_s
        self.stream_windows = config.stream_windows if config.HasField("stream_windows") else True
        if config.resume_token:
            stream = self._resume(config)
        else:
            stream = SongStream(self.servicer.model.spec, self.song_id, config.format,
                                self.servicer.settings)
        self.next_checkpoint_s = self._after(stream.position_s, len(config.resume_token))
        return stream

    def _after(self, position_s: float, token_bytes: int) -> float:
        """When the checkpoint after one at `position_s` (s of audio) is due: at the next
        multiple of the interval, and no sooner than a token of `token_bytes` (the last one
        sent; the next is a little larger) fits SEGUE_CHECKPOINT_BYTES_PER_S."""
        step = self.checkpoint_interval_s
        due = float((np.floor(position_s / step + 1e-9) + 1) * step)
        budget = self.config.checkpoint_bytes_per_s
        return max(due, position_s + token_bytes / budget) if budget > 0 else due

    def _resume(self, config: embedder_pb2.StreamConfig) -> SongStream:
        try:
            stream = self._restore(config)
        except TokenError as e:  # the token's arrays went with _restore's frame
            message = f"config.resume_token refused: {e}"
        else:
            self.resumed = True
            return stream
        _fail(Code.INVALID_ARGUMENT, message)

    def _restore(self, config: embedder_pb2.StreamConfig) -> SongStream:
        """The stream a resume token holds; TokenError when it cannot continue this one."""
        spec = self.servicer.model.spec
        contents = self.servicer.codec.decode(config.resume_token)
        if contents.model_sha256 != spec.sha256:
            raise TokenError(f"resume token is from model {contents.model_name} "
                             f"{contents.model_version}, this server runs {spec.name} "
                             f"{spec.version}: restart the song from the beginning")
        if contents.song_id != self.song_id:
            raise TokenError(f"resume token belongs to another song than config.song_id "
                             f"{self.song_id!r}")
        check_snapshot(contents.arrays, spec, self.config.max_song_s)
        try:
            stream = SongStream.restore(spec, self.song_id, contents.arrays)
        except ValueError as e:
            raise TokenError(f"resume token state is invalid: {e}") from None
        fmt, want = stream.audio_format, config.format
        if (fmt.sample_rate_hz, fmt.channels, fmt.sample_format) != (
            want.sample_rate_hz, want.channels, want.sample_format
        ):
            raise TokenError("resume token was issued for another audio format than "
                             f"config.format ({fmt.sample_rate_hz} Hz, {fmt.channels} "
                             f"channel(s), {common_pb2.SampleFormat.Name(fmt.sample_format)})")
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
        self.next_checkpoint_s = self._after(stream.position_s, len(token))
        EMBEDDER_CHECKPOINT_BYTES.inc(len(token))
        return embedder_pb2.AnalyzeResponse(
            song_id=self.song_id,
            checkpoint=embedder_pb2.Checkpoint(
                resume_token=token, position_s=stream.position_s,
                position_frames=stream.frames_consumed))

    async def _process(self, stream: SongStream, windows: list[PendingWindow]) -> None:
        """Runs `windows` and writes their responses (each write awaited)."""
        respond = self._windows_response if self.stream_windows else None
        try:
            async with contextlib.aclosing(
                    self.servicer.run_windows(stream, windows, respond)) as responses:
                async for response in responses:
                    if response is not None:
                        await self._write(response)
        except BatcherClosedError as e:
            message = f"{e}; resume on another replica with the last checkpoint token"
        except _NonFiniteOutputError:
            self._non_finite()
        else:
            return
        _fail(Code.UNAVAILABLE, message)

    def _non_finite(self) -> NoReturn:
        if self.resumed:
            _fail(Code.INVALID_ARGUMENT,
                  "config.resume_token refused: the model returns non-finite values from the "
                  "state it holds; restart the song from the beginning")
        _fail(Code.INTERNAL, "the model returned non-finite values for this stream's audio")

    def _check_rate(self) -> None:
        """Ends the stream if it brings less audio than SEGUE_MIN_AUDIO_RATE."""
        rate = self.config.min_audio_rate
        if (rate <= 0 or self.waited_s < self.config.min_audio_rate_grace_s
                or self.audio_s >= rate * self.waited_s):
            return
        _fail(Code.RESOURCE_EXHAUSTED,
              f"stream too slow: {self.audio_s:.2f} s of audio arrived in the "
              f"{self.waited_s:.1f} s the server waited for it, below the minimum of "
              f"{rate:g} s of audio per second (SEGUE_MIN_AUDIO_RATE); it was closed to free "
              f"its slot. Send audio at {rate:g}x real time or faster, and resume from the "
              "last checkpoint token")

    def _audio(self, request: embedder_pb2.AnalyzeRequest | None,
               stream: SongStream) -> FloatArray | None:
        """A chunk's mono audio, checked; None at `end`."""
        if request is None:
            _fail(Code.FAILED_PRECONDITION, "the client closed the stream without an end message")
        kind = request.WhichOneof("kind")
        if kind == "config":
            _fail(Code.FAILED_PRECONDITION, "a second config was sent; a stream takes exactly one")
        if kind == "end":
            return None
        if kind != "chunk":
            _fail(Code.INVALID_ARGUMENT, "request holds no message: set config, chunk or end")
        pcm, fmt = request.chunk.pcm, stream.audio_format
        if len(pcm) > self.servicer.max_chunk_bytes:
            _fail(Code.INVALID_ARGUMENT,
                  f"chunk.pcm: oversized chunk: {len(pcm)} bytes exceeds the limit of "
                  f"{self.servicer.max_chunk_bytes} bytes; send smaller chunks")
        problem = pcm_problem(pcm, fmt, "chunk.pcm")
        if problem:
            _fail(Code.INVALID_ARGUMENT, problem)
        mono = pcm_to_mono(pcm, fmt)
        if stream.frames_consumed + mono.size > self.config.max_song_s * fmt.sample_rate_hz:
            _fail(Code.RESOURCE_EXHAUSTED,
                  f"song exceeds the maximum length of {self.config.max_song_s:g} s "
                  "(SEGUE_MAX_SONG_S)")
        self.audio_s += mono.size / fmt.sample_rate_hz
        self._check_rate()
        return mono

    async def run(self) -> None:
        stream = await self._open()
        await self._bounded(self.context.send_initial_metadata(ACCEPTED))
        self.waited_s = 0.0
        fmt = stream.audio_format
        log.info("stream started", resumed_at_s=stream.position_s,
                 sample_rate_hz=fmt.sample_rate_hz, channels=fmt.channels)
        while (mono := self._audio(await self._next(), stream)) is not None:
            if mono.size == 0:
                continue
            arrived = time.perf_counter()
            await self._process(stream, stream.push(mono))
            EMBEDDER_AUDIO_SECONDS.inc(mono.size / fmt.sample_rate_hz)
            EMBEDDER_CHUNK_DURATION.observe(time.perf_counter() - arrived)
            del mono
            if stream.position_s + 1e-9 >= self.next_checkpoint_s:
                await self._write(self._checkpoint(stream))
        await self._finish(stream)

    async def _finish(self, stream: SongStream) -> None:
        if stream.frames_consumed == 0:
            _fail(Code.FAILED_PRECONDITION, "empty stream: end was sent before any audio")
        await self._process(stream, stream.finish())
        # A message after `end` is an error. Look for one (or the client's half-close) while
        # the analysis is built, and a little longer for clients that keep the stream open.
        trailing = asyncio.ensure_future(self._peek_after_end())
        try:
            analysis = await asyncio.to_thread(build_analysis, stream)
            done, _ = await asyncio.wait({trailing}, timeout=END_GRACE_S)
            if done and trailing.exception() is None and trailing.result() is not None:
                _fail(Code.FAILED_PRECONDITION,
                      "a message was sent after end; end must be the last message")
        finally:
            trailing.cancel()
        log.info("stream finished", duration_s=analysis.duration_s,
                 windows=stream.windows_committed)
        await self._write(embedder_pb2.AnalyzeResponse(song_id=self.song_id, analysis=analysis))

    async def _peek_after_end(self) -> embedder_pb2.AnalyzeRequest | None:
        try:
            return await anext(self._requests)
        except StopAsyncIteration:
            return None


def _check_config(config: embedder_pb2.StreamConfig, default_interval_s: float) -> None:
    """Refuses a config whose song id, format or checkpoint interval is invalid."""
    problem = (song_id_problem(config.song_id, "config.song_id")
               or format_problem(config.format, "config.format"))
    if problem:
        _fail(Code.INVALID_ARGUMENT, problem)
    interval = config.checkpoint_interval_s
    if interval != 0 and not (math.isfinite(interval) and interval >= MIN_CHECKPOINT_INTERVAL_S):
        _fail(Code.INVALID_ARGUMENT,
              f"config.checkpoint_interval_s must be 0 (the server default, "
              f"{default_interval_s:g} s) or a finite number of seconds of at least "
              f"{MIN_CHECKPOINT_INTERVAL_S:g}, got {interval}")


__all__ = ["EmbedderServicer", "format_problem", "pcm_problem"]
