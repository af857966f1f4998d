"""Typed client of the Segue Embedder service.

    async with EmbedderClient("127.0.0.1:50051") as embedder:
        result = await embedder.analyze_file("song.mp3", song_id="song-1")
        print(result.analysis.tempo.bpm, result.last_checkpoint.position_s)

`analyze_pcm` streams any iterator of raw PCM chunks; `resume` continues a stream from a
checkpoint token. `EmbedderSyncClient` wraps the same calls for scripts without asyncio.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import grpc
import numpy as np
import numpy.typing as npt

from segue.audio import decode, mono_to_pcm
from segue.client.channel import DEFAULT_MAX_MESSAGE_BYTES, ServiceClient
from segue.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc

T = TypeVar("T")
FloatArray = npt.NDArray[np.float32]
PcmSource = Iterable[bytes] | AsyncIterable[bytes]

DEFAULT_CHUNK_S = 1.0
# End-of-stream marker of grpc.aio reads (absent from the type stubs).
_EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]


@dataclass
class AnalyzeResult:
    """What one Analyze stream returned."""

    analysis: common_pb2.SongAnalysis
    windows: list[embedder_pb2.WindowEmbedding] = field(default_factory=list)
    checkpoints: list[embedder_pb2.Checkpoint] = field(default_factory=list)

    @property
    def last_checkpoint(self) -> embedder_pb2.Checkpoint | None:
        return self.checkpoints[-1] if self.checkpoints else None


def f32_mono_format(sample_rate_hz: int) -> common_pb2.AudioFormat:
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
    """Async client; use as `async with EmbedderClient(address) as client:`."""

    def __init__(
        self,
        address: str,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        timeout_s: float | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        super().__init__(address, credentials=credentials, timeout_s=timeout_s,
                         max_message_bytes=max_message_bytes)
        self._stub = embedder_pb2_grpc.EmbedderStub(self._channel)

    async def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Waits until the channel connects (e.g. right after starting a server)."""
        await asyncio.wait_for(self._channel.channel_ready(), timeout_s)

    async def model_info(self) -> embedder_pb2.ModelInfoResponse:
        response: embedder_pb2.ModelInfoResponse = await self._stub.ModelInfo(
            embedder_pb2.ModelInfoRequest(), timeout=self.timeout_s
        )
        return response

    async def embed_clip(self, pcm: bytes, audio_format: common_pb2.AudioFormat
                         ) -> embedder_pb2.EmbedClipResponse:
        response: embedder_pb2.EmbedClipResponse = await self._stub.EmbedClip(
            embedder_pb2.EmbedClipRequest(format=audio_format, pcm=pcm), timeout=self.timeout_s
        )
        return response

    def stream(
        self,
        song_id: str,
        audio_format: common_pb2.AudioFormat,
        chunks: PcmSource,
        *,
        resume_token: bytes = b"",
        stream_windows: bool = True,
        checkpoint_interval_s: float = 0.0,
    ) -> AsyncIterator[embedder_pb2.AnalyzeResponse]:
        """The raw Analyze stream: every response as it arrives.

        Audio is written only once the server has accepted the stream (its initial metadata),
        so a refusal (limits, shutdown) reaches the caller as the server's own status.
        """
        analyze: Any = self._stub.Analyze  # reader/writer style: no request iterator
        call: Any = analyze(timeout=self.timeout_s)
        config = embedder_pb2.StreamConfig(
            song_id=song_id, format=audio_format, resume_token=resume_token,
            stream_windows=stream_windows, checkpoint_interval_s=checkpoint_interval_s,
        )

        async def write_all() -> None:
            try:
                await call.write(embedder_pb2.AnalyzeRequest(config=config))
                metadata = await call.initial_metadata()
                if ("segue-stream", "accepted") not in tuple(metadata or ()):
                    # Refused: writing more would race the status, which the reader gets.
                    return
                async for pcm in _aiter(chunks):
                    if call.done():
                        return
                    await call.write(
                        embedder_pb2.AnalyzeRequest(chunk=embedder_pb2.AudioChunk(pcm=pcm)))
                if not call.done():
                    await call.write(embedder_pb2.AnalyzeRequest(end=embedder_pb2.EndOfStream()))
                    await call.done_writing()
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                return  # the call ended; its status reaches the reader
            except BaseException:
                call.cancel()  # e.g. the chunk source failed: do not leave the server waiting
                raise

        async def responses() -> AsyncIterator[embedder_pb2.AnalyzeResponse]:
            writer = asyncio.ensure_future(write_all())
            try:
                while True:
                    response = await call.read()
                    if response is _EOF:
                        break
                    yield response
                await writer
            finally:
                if not writer.done():
                    writer.cancel()
                    call.cancel()

        return responses()

    async def analyze_pcm(
        self,
        song_id: str,
        audio_format: common_pb2.AudioFormat,
        chunks: PcmSource,
        *,
        resume_token: bytes = b"",
        stream_windows: bool = True,
        checkpoint_interval_s: float = 0.0,
        on_response: Callable[[embedder_pb2.AnalyzeResponse], None] | None = None,
    ) -> AnalyzeResult:
        """Streams raw PCM chunks; returns the analysis with the windows and checkpoints."""
        windows: list[embedder_pb2.WindowEmbedding] = []
        checkpoints: list[embedder_pb2.Checkpoint] = []
        analysis: common_pb2.SongAnalysis | None = None
        async for response in self.stream(
            song_id, audio_format, chunks, resume_token=resume_token,
            stream_windows=stream_windows, checkpoint_interval_s=checkpoint_interval_s,
        ):
            if on_response is not None:
                on_response(response)
            kind = response.WhichOneof("kind")
            if kind == "windows":
                windows.extend(response.windows.windows)
            elif kind == "checkpoint":
                checkpoints.append(response.checkpoint)
            elif kind == "analysis":
                analysis = response.analysis
        if analysis is None:
            raise RuntimeError("the embedder closed the stream without an analysis")
        return AnalyzeResult(analysis=analysis, windows=windows, checkpoints=checkpoints)

    async def analyze_audio(
        self, song_id: str, audio: FloatArray, sample_rate_hz: int, *,
        chunk_s: float = DEFAULT_CHUNK_S, **kwargs: Any,
    ) -> AnalyzeResult:
        """Streams mono float32 audio in chunks of chunk_s seconds."""
        chunks = chunk_audio(audio, sample_rate_hz, chunk_s)
        return await self.analyze_pcm(song_id, f32_mono_format(sample_rate_hz), chunks, **kwargs)

    async def analyze_file(
        self, path: str | Path, *, song_id: str | None = None, sample_rate_hz: int = 22050,
        chunk_s: float = DEFAULT_CHUNK_S, **kwargs: Any,
    ) -> AnalyzeResult:
        """Decodes any file ffmpeg reads (mono, at sample_rate_hz) and analyses it."""
        audio = await asyncio.to_thread(decode, path, sample_rate_hz)
        return await self.analyze_audio(
            song_id or Path(path).stem, audio, sample_rate_hz, chunk_s=chunk_s, **kwargs
        )

    async def resume(
        self, song_id: str, audio_format: common_pb2.AudioFormat,
        checkpoint: embedder_pb2.Checkpoint, remaining: PcmSource, **kwargs: Any,
    ) -> AnalyzeResult:
        """Continues a stream from a checkpoint; `remaining` is the audio after its position."""
        return await self.analyze_pcm(
            song_id, audio_format, remaining, resume_token=checkpoint.resume_token, **kwargs
        )


class EmbedderSyncClient:
    """Blocking wrapper of EmbedderClient for scripts; runs its own event loop."""

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

    def model_info(self) -> embedder_pb2.ModelInfoResponse:
        info: embedder_pb2.ModelInfoResponse = self._run(self._client.model_info())
        return info

    def embed_clip(self, pcm: bytes, audio_format: common_pb2.AudioFormat
                   ) -> embedder_pb2.EmbedClipResponse:
        response: embedder_pb2.EmbedClipResponse = self._run(
            self._client.embed_clip(pcm, audio_format))
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
