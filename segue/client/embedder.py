"""Typed client of the Segue Embedder service.

Example::

    from segue.client import EmbedderClient

    async with EmbedderClient("127.0.0.1:50051") as embedder:
        result = await embedder.analyze_file("song.mp3", song_id="song-1")
        print(result.analysis.tempo.bpm, result.analysis.key.camelot)
        print(len(result.windows), "windows,", len(result.checkpoints), "checkpoints")

`analyze_pcm` streams any iterable of raw PCM chunks; `resume` continues a stream from a
checkpoint token. `EmbedderSyncClient` wraps the same calls for scripts without asyncio.
Failures raise `segue.client.errors` exceptions; deadlines follow `segue.client.timeouts`
(an Analyze stream's grows with the audio it carries).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

import grpc
import numpy as np
import numpy.typing as npt

from segue.audio import decode, mono_to_pcm
from segue.client.channel import ServiceClient
from segue.client.errors import InternalError
from segue.client.timeouts import (
    USE_CLIENT_TIMEOUT,
    CallTimeout,
    chunks_seconds,
    stream_deadline,
)
from segue.client.types import (
    AnalyzeResponse,
    AudioFormat,
    Checkpoint,
    EmbedClipResponse,
    ModelInfo,
    SongAnalysis,
    WindowEmbedding,
)
from segue.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc

T = TypeVar("T")
FloatArray = npt.NDArray[np.float32]
PcmSource = Iterable[bytes] | AsyncIterable[bytes]

DEFAULT_CHUNK_S = 1.0
# End-of-stream marker of grpc.aio reads (absent from the type stubs).
_EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]


@dataclass(repr=False)
class AnalyzeResult:
    """What one Analyze stream returned: the song's analysis, and the windows and checkpoints
    sent before it (windows only when the stream asked for them; checkpoints all, or only the
    last with `keep_checkpoints="last"`)."""

    analysis: SongAnalysis
    windows: list[WindowEmbedding] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)

    @property
    def last_checkpoint(self) -> Checkpoint | None:
        return self.checkpoints[-1] if self.checkpoints else None

    def __repr__(self) -> str:
        # A summary: the full repr prints every token (megabytes for a long stream) as text,
        # and asyncio.run formats its main task's result (CPython 3.11), so it paid that
        # cost (measured: 2 s for a 6-minute stream's 9 MB of tokens).
        last = self.last_checkpoint
        return (f"AnalyzeResult(song_id={self.analysis.song_id!r}, "
                f"duration_s={self.analysis.duration_s:g}, windows={len(self.windows)}, "
                f"checkpoints={len(self.checkpoints)}, "
                f"last_checkpoint_s={last.position_s if last else None})")


def f32_mono_format(sample_rate_hz: int) -> AudioFormat:
    """The AudioFormat of mono float32 PCM at `sample_rate_hz` Hz."""
    return common_pb2.AudioFormat(
        sample_rate_hz=sample_rate_hz, channels=1, sample_format=common_pb2.SAMPLE_FORMAT_F32LE
    )


def chunk_audio(audio: FloatArray, sample_rate_hz: int, chunk_s: float = DEFAULT_CHUNK_S,
                sample_format: int = common_pb2.SAMPLE_FORMAT_F32LE) -> list[bytes]:
    """Mono float audio as raw PCM chunks of chunk_s seconds."""
    step = max(1, round(chunk_s * sample_rate_hz))
    return [mono_to_pcm(audio[i : i + step], sample_format) for i in range(0, len(audio), step)]


async def _aiter(source: PcmSource) -> AsyncIterator[bytes]:
    if isinstance(source, AsyncIterable):
        async for item in source:
            yield item
    else:
        for item in source:
            yield item


class EmbedderClient(ServiceClient):
    """Async client; use as `async with EmbedderClient(address) as client:`.

    Every method raises `segue.client.errors.SegueError` subclasses on failure and takes a
    `timeout_s` overriding the client's (see `segue.client.timeouts`).
    """

    SERVICE = "Embedder"

    def _bind(self, channel: grpc.aio.Channel) -> None:
        self._stub: embedder_pb2_grpc.EmbedderAsyncStub = embedder_pb2_grpc.EmbedderStub(channel)

    async def model_info(self, *, timeout_s: CallTimeout = USE_CLIENT_TIMEOUT) -> ModelInfo:
        """The model being served and the server's limits."""
        return await self._unary(
            "ModelInfo", self._stub.ModelInfo, embedder_pb2.ModelInfoRequest(), timeout_s)

    async def embed_clip(self, pcm: bytes, audio_format: AudioFormat, *,
                         timeout_s: CallTimeout = USE_CLIENT_TIMEOUT) -> EmbedClipResponse:
        """Embeds one short clip (one model window up to ModelInfo.max_clip_s seconds)."""
        request = embedder_pb2.EmbedClipRequest(format=audio_format, pcm=pcm)
        return await self._unary("EmbedClip", self._stub.EmbedClip, request, timeout_s)

    def stream(
        self,
        song_id: str,
        audio_format: AudioFormat,
        chunks: PcmSource,
        *,
        resume_token: bytes = b"",
        stream_windows: bool = True,
        checkpoint_interval_s: float = 0.0,
        timeout_s: CallTimeout = USE_CLIENT_TIMEOUT,
    ) -> AsyncIterator[AnalyzeResponse]:
        """The raw Analyze stream: every response as it arrives.

        Audio is written only once the server has accepted the stream (its initial metadata),
        so a refusal (limits, shutdown) reaches the caller as the server's own status.
        The deadline grows with the audio in `chunks` when it is a list or tuple; an iterator
        gets the policy's unknown-length deadline.
        """
        deadline = stream_deadline(self.timeout_s, timeout_s,
                                   chunks_seconds(chunks, audio_format))
        analyze: Any = self._stub.Analyze  # reader/writer style: no request iterator
        call: Any = analyze(timeout=deadline)
        config = embedder_pb2.StreamConfig(
            song_id=song_id, format=audio_format, resume_token=resume_token,
            stream_windows=stream_windows, checkpoint_interval_s=checkpoint_interval_s,
        )
        return self._responses("Analyze", deadline, _read_while_writing(call, config, chunks))

    async def analyze_pcm(
        self,
        song_id: str,
        audio_format: AudioFormat,
        chunks: PcmSource,
        *,
        resume_token: bytes = b"",
        stream_windows: bool = True,
        checkpoint_interval_s: float = 0.0,
        keep_checkpoints: Literal["all", "last"] = "all",
        on_response: Callable[[AnalyzeResponse], None] | None = None,
        timeout_s: CallTimeout = USE_CLIENT_TIMEOUT,
    ) -> AnalyzeResult:
        """Streams raw PCM chunks; returns the analysis with the windows and checkpoints.

        `keep_checkpoints="last"` keeps only the latest checkpoint, all a resume needs: each
        token holds the stream's whole state, so a 30-minute stream's tokens take about 50 MB.
        """
        if keep_checkpoints not in ("all", "last"):
            raise ValueError(f"keep_checkpoints must be 'all' or 'last', got {keep_checkpoints!r}")
        windows: list[WindowEmbedding] = []
        checkpoints: list[Checkpoint] = []
        analysis: SongAnalysis | None = None
        async for response in self.stream(
            song_id, audio_format, chunks, resume_token=resume_token,
            stream_windows=stream_windows, checkpoint_interval_s=checkpoint_interval_s,
            timeout_s=timeout_s,
        ):
            if on_response is not None:
                on_response(response)
            kind = response.WhichOneof("kind")
            if kind == "windows":
                windows.extend(response.windows.windows)
            elif kind == "checkpoint":
                if keep_checkpoints == "last":
                    checkpoints.clear()
                checkpoints.append(response.checkpoint)
            elif kind == "analysis":
                analysis = response.analysis
        if analysis is None:
            raise InternalError(
                grpc.StatusCode.INTERNAL, "the embedder closed the stream without an analysis",
                service=self.SERVICE, method="Analyze", address=self.address)
        return AnalyzeResult(analysis=analysis, windows=windows, checkpoints=checkpoints)

    async def analyze_audio(
        self, song_id: str, audio: FloatArray, sample_rate_hz: int, *,
        chunk_s: float = DEFAULT_CHUNK_S, **kwargs: Any,
    ) -> AnalyzeResult:
        """Streams mono float32 audio in chunks of chunk_s seconds; `kwargs` as analyze_pcm."""
        chunks = chunk_audio(audio, sample_rate_hz, chunk_s)
        return await self.analyze_pcm(song_id, f32_mono_format(sample_rate_hz), chunks, **kwargs)

    async def analyze_file(
        self, path: str | Path, *, song_id: str | None = None, sample_rate_hz: int = 22050,
        chunk_s: float = DEFAULT_CHUNK_S, **kwargs: Any,
    ) -> AnalyzeResult:
        """Decodes any file ffmpeg reads (mono, at sample_rate_hz) and analyses it; the song id
        defaults to the file's stem. Decoding failures raise segue.audio.DecodeError."""
        audio = await asyncio.to_thread(decode, path, sample_rate_hz)
        return await self.analyze_audio(
            song_id or Path(path).stem, audio, sample_rate_hz, chunk_s=chunk_s, **kwargs
        )

    async def resume(
        self, song_id: str, audio_format: AudioFormat,
        checkpoint: Checkpoint, remaining: PcmSource, **kwargs: Any,
    ) -> AnalyzeResult:
        """Continues a stream from a checkpoint; `remaining` is the audio after its position."""
        return await self.analyze_pcm(
            song_id, audio_format, remaining, resume_token=checkpoint.resume_token, **kwargs
        )


async def _read_while_writing(
    call: Any, config: embedder_pb2.StreamConfig, chunks: PcmSource
) -> AsyncIterator[AnalyzeResponse]:
    """Reads an Analyze call's responses while a task writes its requests."""
    writer = asyncio.ensure_future(_write_all(call, config, chunks))
    try:
        while True:
            try:
                response = await call.read()
            except asyncio.CancelledError:
                failure = _failure_of(writer)
                if failure is not None:
                    raise failure from None  # the chunk source failed and cancelled the call
                raise
            if response is _EOF:
                break
            yield response
        await writer
    finally:
        if not writer.done():
            writer.cancel()
            call.cancel()


def _failure_of(task: asyncio.Future[None]) -> BaseException | None:
    """The exception a finished task raised (None while it runs, or if it was cancelled)."""
    if not task.done() or task.cancelled():
        return None
    return task.exception()


async def _write_all(call: Any, config: embedder_pb2.StreamConfig, chunks: PcmSource) -> None:
    """Writes the config, then (once the server accepted the stream) the audio and the end."""
    try:
        await call.write(embedder_pb2.AnalyzeRequest(config=config))
        metadata = await call.initial_metadata()
        if ("segue-stream", "accepted") not in tuple(metadata or ()):
            # Refused: writing more would race the status, which the reader gets.
            return
        async for pcm in _aiter(chunks):
            if call.done():
                return
            await call.write(embedder_pb2.AnalyzeRequest(chunk=embedder_pb2.AudioChunk(pcm=pcm)))
        if not call.done():
            await call.write(embedder_pb2.AnalyzeRequest(end=embedder_pb2.EndOfStream()))
            await call.done_writing()
    except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
        return  # the call ended; its status reaches the reader
    except BaseException:
        call.cancel()  # e.g. the chunk source failed: do not leave the server waiting
        raise


class EmbedderSyncClient:
    """Blocking wrapper of EmbedderClient for scripts; runs its own event loop.

    Takes EmbedderClient's arguments (`timeout_s` included) and raises the same errors.
    """

    def __init__(self, address: str, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = self._loop.run_until_complete(self._make(address, kwargs))

    @staticmethod
    async def _make(address: str, kwargs: dict[str, Any]) -> EmbedderClient:
        return EmbedderClient(address, **kwargs)

    def _run(self, coro: Any) -> Any:
        return self._loop.run_until_complete(coro)

    def __enter__(self) -> EmbedderSyncClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._run(self._client.close())
        self._loop.close()

    def model_info(self, **kwargs: Any) -> ModelInfo:
        info: ModelInfo = self._run(self._client.model_info(**kwargs))
        return info

    def embed_clip(self, pcm: bytes, audio_format: AudioFormat,
                   **kwargs: Any) -> EmbedClipResponse:
        response: EmbedClipResponse = self._run(
            self._client.embed_clip(pcm, audio_format, **kwargs))
        return response

    def analyze_file(self, path: str | Path, **kwargs: Any) -> AnalyzeResult:
        result: AnalyzeResult = self._run(self._client.analyze_file(path, **kwargs))
        return result

    def analyze_audio(self, song_id: str, audio: FloatArray, sample_rate_hz: int,
                      **kwargs: Any) -> AnalyzeResult:
        result: AnalyzeResult = self._run(
            self._client.analyze_audio(song_id, audio, sample_rate_hz, **kwargs))
        return result


__all__ = [
    "AnalyzeResult", "EmbedderClient", "EmbedderSyncClient", "chunk_audio", "f32_mono_format",
]
