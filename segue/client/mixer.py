"""Typed client of segue.v1.Mixer.

from segue.client.mixer import MixerClient, Excerpt

async with MixerClient("127.0.0.1:50053") as mixer:
    result = await mixer.render_transition(
        Excerpt.from_file("a.mp3"), Excerpt.from_file("b.flac"),
        style=TransitionStyle(auto=True, eq_bass_swap=True), output_format="mp3")
    Path("mix.mp3").write_bytes(result.audio)
    print(result.report.length_reason)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import numpy.typing as npt

from segue.client.channel import DEFAULT_MAX_MESSAGE_BYTES, ServiceClient
from segue.v1 import common_pb2, mixer_pb2, mixer_pb2_grpc
from segue.v1.mixer_pb2 import TransitionStyle

__all__ = ["Excerpt", "MixResult", "MixerClient", "TransitionStyle", "render_transition_sync"]

FORMATS = {
    "wav": mixer_pb2.OUTPUT_FORMAT_WAV,
    "flac": mixer_pb2.OUTPUT_FORMAT_FLAC,
    "mp3": mixer_pb2.OUTPUT_FORMAT_MP3,
    "ogg": mixer_pb2.OUTPUT_FORMAT_OGG,
}
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Excerpt:
    """One side of a render: audio bytes and how to read them, plus what is known about it."""

    data: bytes
    pcm_format: common_pb2.AudioFormat | None = None  # None: encoded bytes (any ffmpeg format)
    analysis: common_pb2.SongAnalysis | None = None
    cue_s: float = 0.0

    @classmethod
    def from_file(
        cls, path: str | Path, analysis: common_pb2.SongAnalysis | None = None, cue_s: float = 0.0
    ) -> Excerpt:
        return cls(Path(path).read_bytes(), None, analysis, cue_s)

    @classmethod
    def from_array(
        cls,
        audio: npt.NDArray[np.float32],
        sample_rate_hz: int,
        analysis: common_pb2.SongAnalysis | None = None,
        cue_s: float = 0.0,
    ) -> Excerpt:
        """From float PCM shaped [frames] (mono) or [frames, channels]."""
        frames = np.asarray(audio, dtype="<f4")
        channels = 1 if frames.ndim == 1 else frames.shape[1]
        fmt = common_pb2.AudioFormat(
            sample_rate_hz=sample_rate_hz,
            channels=channels,
            sample_format=common_pb2.SAMPLE_FORMAT_F32LE,
        )
        return cls(np.ascontiguousarray(frames).tobytes(), fmt, analysis, cue_s)

    def info(self) -> mixer_pb2.ExcerptInfo:
        info = mixer_pb2.ExcerptInfo(cue_s=self.cue_s)
        if self.pcm_format is None:
            info.encoded = True
        else:
            info.pcm.CopyFrom(self.pcm_format)
        if self.analysis is not None:
            info.analysis.CopyFrom(self.analysis)
        return info


@dataclass
class MixResult:
    """A finished render: the encoded file, the mix mask and the quality report."""

    audio: bytes
    output_format: str
    sample_rate_hz: int
    envelope: mixer_pb2.MixEnvelope
    report: mixer_pb2.QualityReport
    chunks: int = field(default=0)


def build_requests(
    outgoing: Excerpt,
    incoming: Excerpt,
    config: mixer_pb2.RenderConfig,
    chunk_bytes: int = CHUNK_BYTES,
) -> Iterator[mixer_pb2.RenderRequest]:
    """The request stream: config, both excerpts in chunks, end."""
    config.outgoing.CopyFrom(outgoing.info())
    config.incoming.CopyFrom(incoming.info())
    yield mixer_pb2.RenderRequest(config=config)
    for side, excerpt in ((mixer_pb2.SIDE_OUTGOING, outgoing), (mixer_pb2.SIDE_INCOMING, incoming)):
        for offset in range(0, len(excerpt.data), chunk_bytes):
            yield mixer_pb2.RenderRequest(
                chunk=mixer_pb2.ExcerptChunk(
                    side=side, data=excerpt.data[offset : offset + chunk_bytes]
                )
            )
    yield mixer_pb2.RenderRequest(end=mixer_pb2.EndOfInput())


class MixerClient(ServiceClient):
    """Async client; use as `async with MixerClient(addr) as mixer:`.

    Errors surface as grpc.aio.AioRpcError with the server's status code and message
    (INVALID_ARGUMENT names the bad input).
    """

    def __init__(
        self,
        address: str,
        *,
        timeout_s: float = 300.0,
        credentials: grpc.ChannelCredentials | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        super().__init__(address, credentials=credentials, timeout_s=timeout_s,
                         max_message_bytes=max_message_bytes)
        self._stub = mixer_pb2_grpc.MixerStub(self._channel)

    async def render_transition(
        self,
        outgoing: Excerpt,
        incoming: Excerpt,
        *,
        style: TransitionStyle | None = None,
        output_format: str = "wav",
        output_sample_rate_hz: int = 0,
        target_loudness_lufs: float = 0.0,
        context_s: float = 0.0,
    ) -> MixResult:
        """Renders the transition from `outgoing` into `incoming`."""
        config = self._config(
            style, output_format, output_sample_rate_hz, target_loudness_lufs, context_s
        )
        return await self._collect(
            self._stub.RenderTransition(
                _aiter(build_requests(outgoing, incoming, config)), timeout=self.timeout_s
            )
        )

    async def render_mashup(
        self,
        outgoing: Excerpt,
        incoming: Excerpt,
        *,
        bars: int = 0,
        style: TransitionStyle | None = None,
        output_format: str = "wav",
        output_sample_rate_hz: int = 0,
        target_loudness_lufs: float = 0.0,
        context_s: float = 0.0,
    ) -> MixResult:
        """Overlays the two excerpts over `bars` bars (0 = the server default, 8)."""
        config = self._config(
            style, output_format, output_sample_rate_hz, target_loudness_lufs, context_s
        )
        config.mashup_bars = bars
        return await self._collect(
            self._stub.RenderMashup(
                _aiter(build_requests(outgoing, incoming, config)), timeout=self.timeout_s
            )
        )

    @staticmethod
    def _config(
        style: TransitionStyle | None,
        output_format: str,
        rate: int,
        target: float,
        context_s: float,
    ) -> mixer_pb2.RenderConfig:
        if output_format not in FORMATS:
            raise ValueError(f"output_format must be one of {sorted(FORMATS)}")
        config = mixer_pb2.RenderConfig(
            output_format=FORMATS[output_format],
            output_sample_rate_hz=rate,
            target_loudness_lufs=target,
            context_s=context_s,
        )
        config.style.CopyFrom(style if style is not None else TransitionStyle(auto=True))
        return config

    @staticmethod
    async def _collect(call: AsyncIterable[mixer_pb2.RenderResponse]) -> MixResult:
        envelope, report = mixer_pb2.MixEnvelope(), mixer_pb2.QualityReport()
        parts: list[bytes] = []
        fmt, rate = "wav", 0
        async for response in call:
            kind = response.WhichOneof("kind")
            if kind == "envelope":
                envelope = response.envelope
            elif kind == "report":
                report = response.report
            elif kind == "audio":
                parts.append(response.audio.data)
                rate = response.audio.sample_rate_hz
                fmt = next(k for k, v in FORMATS.items() if v == response.audio.format)
        return MixResult(b"".join(parts), fmt, rate, envelope, report, len(parts))


async def _aiter(
    items: Iterator[mixer_pb2.RenderRequest],
) -> AsyncIterator[mixer_pb2.RenderRequest]:
    for item in items:
        yield item


def render_transition_sync(
    address: str, outgoing: Excerpt, incoming: Excerpt, **kwargs: object
) -> MixResult:
    """Blocking convenience around MixerClient.render_transition."""

    async def run() -> MixResult:
        async with MixerClient(address) as mixer:
            return await mixer.render_transition(outgoing, incoming, **kwargs)  # type: ignore[arg-type]

    return asyncio.run(run())
