"""Typed client of segue.v1.Mixer.

Example::

    from pathlib import Path

    from segue.client import Excerpt, MixerClient, TransitionStyle

    async with MixerClient("127.0.0.1:50053") as mixer:
        result = await mixer.render_transition(
            Excerpt.from_file("a.mp3"), Excerpt.from_file("b.flac"),
            style=TransitionStyle(auto=True, eq_bass_swap=True), output_format="mp3")
        Path("mix.mp3").write_bytes(result.audio)
        print(result.report.length_reason)

A whole playlist as one continuous mix, its songs' analyses taken from the matcher by id::

    songs = [MixSong.from_file("a.mp3", song_id="a"), MixSong.from_file("b.flac", song_id="b")]
    async with MixerClient("127.0.0.1:50053") as mixer:
        mix = await mixer.render_mix(songs, output_format="mp3", file_name="set.mp3")
        Path("set.mp3").write_bytes(mix.audio)
        Path("set.cue").write_text(mix.cue)

Failures raise `segue.client.errors` exceptions (InvalidArgumentError names the bad input).
A render's deadline grows with the audio it carries (`segue.client.timeouts`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

import grpc
import numpy as np
import numpy.typing as npt

from segue.client.channel import ServiceClient
from segue.client.timeouts import (
    USE_CLIENT_TIMEOUT,
    CallTimeout,
    pcm_seconds,
    stream_deadline,
)
from segue.client.types import (
    AudioFormat,
    MixEnvelope,
    QualityReport,
    SongAnalysis,
    TransitionStyle,
)
from segue.v1 import common_pb2, mixer_pb2, mixer_pb2_grpc

__all__ = [
    "Excerpt",
    "MixResult",
    "MixSong",
    "MixerClient",
    "RenderedMix",
    "TransitionStyle",
    "render_transition_sync",
]

FORMATS = {
    "wav": mixer_pb2.OUTPUT_FORMAT_WAV,
    "flac": mixer_pb2.OUTPUT_FORMAT_FLAC,
    "mp3": mixer_pb2.OUTPUT_FORMAT_MP3,
    "ogg": mixer_pb2.OUTPUT_FORMAT_OGG,
}
CHUNK_BYTES = 1 << 20
# Bytes per second of the leanest encoded music expected (32 kbit/s): sizing an encoded
# excerpt's length by it errs long, so its deadline does too.
ENCODED_BYTES_PER_S_FLOOR = 4000

RequestT = TypeVar("RequestT")


@dataclass(frozen=True)
class Excerpt:
    """One side of a render: audio bytes and how to read them, plus what is known about it.

    `pcm_format` None means encoded bytes (any format ffmpeg reads); `analysis` (times from
    the excerpt's first sample) spares the mixer estimating beats; `cue_s` is in seconds
    (see ExcerptInfo.cue_s in proto/segue/v1/mixer.proto). Without an analysis, `song_id`
    has the mixer use the analysis the matcher stores for that song, moved to the excerpt's
    time: `song_start_s` is where the excerpt starts in the song, in seconds.
    """

    data: bytes
    pcm_format: AudioFormat | None = None
    analysis: SongAnalysis | None = None
    cue_s: float = 0.0
    song_id: str = ""
    song_start_s: float = 0.0

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        analysis: SongAnalysis | None = None,
        cue_s: float = 0.0,
        *,
        song_id: str = "",
        song_start_s: float = 0.0,
    ) -> Excerpt:
        return cls(Path(path).read_bytes(), None, analysis, cue_s, song_id, song_start_s)

    @classmethod
    def from_array(
        cls,
        audio: npt.NDArray[np.float32],
        sample_rate_hz: int,
        analysis: SongAnalysis | None = None,
        cue_s: float = 0.0,
        *,
        song_id: str = "",
        song_start_s: float = 0.0,
    ) -> Excerpt:
        """From float PCM shaped [frames] (mono) or [frames, channels]."""
        frames = np.asarray(audio, dtype="<f4")
        channels = 1 if frames.ndim == 1 else frames.shape[1]
        fmt = common_pb2.AudioFormat(
            sample_rate_hz=sample_rate_hz,
            channels=channels,
            sample_format=common_pb2.SAMPLE_FORMAT_F32LE,
        )
        data = np.ascontiguousarray(frames).tobytes()
        return cls(data, fmt, analysis, cue_s, song_id, song_start_s)

    def info(self) -> mixer_pb2.ExcerptInfo:
        info = mixer_pb2.ExcerptInfo(
            cue_s=self.cue_s, song_id=self.song_id, song_start_s=self.song_start_s
        )
        if self.pcm_format is None:
            info.encoded = True
        else:
            info.pcm.CopyFrom(self.pcm_format)
        if self.analysis is not None:
            info.analysis.CopyFrom(self.analysis)
        return info

    def audio_s(self) -> float | None:
        """Seconds of audio carried: exact for PCM; for encoded bytes the analysis's
        duration, else an upper estimate from the size (None: not known)."""
        if self.pcm_format is not None:
            return pcm_seconds(len(self.data), self.pcm_format)
        if self.analysis is not None and self.analysis.duration_s > 0:
            return self.analysis.duration_s
        return len(self.data) / ENCODED_BYTES_PER_S_FLOOR


@dataclass
class MixResult:
    """A finished render: the encoded file, the mix mask and the quality report."""

    audio: bytes
    output_format: str
    sample_rate_hz: int
    envelope: MixEnvelope
    report: QualityReport
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


def render_audio_s(*excerpts: Excerpt) -> float | None:
    """Seconds of audio a render carries (None when any excerpt's length is unknown)."""
    total = 0.0
    for excerpt in excerpts:
        seconds = excerpt.audio_s()
        if seconds is None:
            return None
        total += seconds
    return total


@dataclass(frozen=True)
class MixSong:
    """One song of a continuous mix (RenderMix): its audio, and where it is heard.

    `audio` is the song's bytes, or a file that is read as it is sent. `entry_s` and `exit_s`
    are seconds in the song (exit 0 = its end). `analysis` (song seconds) gives its beats and
    key; without one, a `song_id` has the mixer use the analysis the matcher stores for it.
    `pcm_format` None means encoded bytes (any format ffmpeg reads).
    """

    audio: bytes | Path
    song_id: str = ""
    title: str = ""
    uri: str = ""
    entry_s: float = 0.0
    exit_s: float = 0.0
    analysis: SongAnalysis | None = None
    pcm_format: AudioFormat | None = None

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        song_id: str = "",
        title: str = "",
        entry_s: float = 0.0,
        exit_s: float = 0.0,
        analysis: SongAnalysis | None = None,
    ) -> MixSong:
        """A song file (any format ffmpeg reads), read as it is sent; its path is the uri."""
        return cls(Path(path), song_id, title, str(path), entry_s, exit_s, analysis)

    @classmethod
    def from_array(
        cls,
        audio: npt.NDArray[np.float32],
        sample_rate_hz: int,
        *,
        song_id: str = "",
        title: str = "",
        entry_s: float = 0.0,
        exit_s: float = 0.0,
        analysis: SongAnalysis | None = None,
    ) -> MixSong:
        """From float PCM shaped [frames] (mono) or [frames, channels]."""
        pcm = Excerpt.from_array(audio, sample_rate_hz)
        return cls(pcm.data, song_id, title, "", entry_s, exit_s, analysis, pcm.pcm_format)

    def info(self) -> mixer_pb2.MixSong:
        song = mixer_pb2.MixSong(
            song_id=self.song_id,
            title=self.title,
            uri=self.uri,
            entry_s=self.entry_s,
            exit_s=self.exit_s,
        )
        if self.pcm_format is None:
            song.encoded = True
        else:
            song.pcm.CopyFrom(self.pcm_format)
        if self.analysis is not None:
            song.analysis.CopyFrom(self.analysis)
        return song

    def size(self) -> int:
        """Bytes of audio this song sends."""
        return self.audio.stat().st_size if isinstance(self.audio, Path) else len(self.audio)

    def chunks(self, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        """The audio in pieces of at most `chunk_bytes`, a file read one piece at a time."""
        if isinstance(self.audio, bytes):
            for offset in range(0, len(self.audio), chunk_bytes):
                yield self.audio[offset : offset + chunk_bytes]
            return
        with self.audio.open("rb") as f:
            while piece := f.read(chunk_bytes):
                yield piece

    def audio_s(self) -> float | None:
        """Seconds of audio carried: exact for PCM; for encoded audio the analysis's
        duration, else an upper estimate from the size (None: not known)."""
        if self.pcm_format is not None:
            return pcm_seconds(self.size(), self.pcm_format)
        if self.analysis is not None and self.analysis.duration_s > 0:
            return self.analysis.duration_s
        return self.size() / ENCODED_BYTES_PER_S_FLOOR


@dataclass
class RenderedMix:
    """A continuous mix rendered by the mixer: the encoded file, its cue sheets, a report per
    transition (in order) and every song's gain over the mix (the mix mask)."""

    audio: bytes
    output_format: str
    sample_rate_hz: int
    transitions: list[mixer_pb2.MixTransition]
    cue_sheet: mixer_pb2.MixCueSheet
    gains: list[mixer_pb2.MixGains]

    @property
    def cue(self) -> str:
        """The .cue sheet: one TRACK per song at its crossover point."""
        return self.cue_sheet.cue

    @property
    def sheet_json(self) -> str:
        """The JSON sheet: every song and every transition with its report."""
        return self.cue_sheet.json

    @property
    def duration_s(self) -> float:
        return self.cue_sheet.duration_s


def build_mix_requests(
    songs: Sequence[MixSong], config: mixer_pb2.MixConfig, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[mixer_pb2.RenderMixRequest]:
    """The RenderMix request stream: config, every song's audio in chunks, end."""
    del config.songs[:]
    config.songs.extend(song.info() for song in songs)
    yield mixer_pb2.RenderMixRequest(config=config)
    for index, song in enumerate(songs):
        for data in song.chunks(chunk_bytes):
            yield mixer_pb2.RenderMixRequest(chunk=mixer_pb2.MixChunk(song_index=index, data=data))
    yield mixer_pb2.RenderMixRequest(end=mixer_pb2.EndOfInput())


def mix_audio_s(songs: Sequence[MixSong]) -> float | None:
    """Seconds of audio a mix carries (None when any song's length is unknown)."""
    total = 0.0
    for song in songs:
        seconds = song.audio_s()
        if seconds is None:
            return None
        total += seconds
    return total


async def _collect_mix(responses: AsyncIterable[mixer_pb2.RenderMixResponse]) -> RenderedMix:
    """Joins RenderMix's responses into one RenderedMix."""
    transitions: list[mixer_pb2.MixTransition] = []
    gains: list[mixer_pb2.MixGains] = []
    cue_sheet = mixer_pb2.MixCueSheet()
    parts: list[bytes] = []
    fmt, rate = "wav", 0
    async for response in responses:
        kind = response.WhichOneof("kind")
        if kind == "transition":
            transitions.append(response.transition)
        elif kind == "cue_sheet":
            cue_sheet = response.cue_sheet
        elif kind == "gains":
            gains.append(response.gains)
        elif kind == "audio":
            parts.append(response.audio.data)
            rate = response.audio.sample_rate_hz
            fmt = next(k for k, v in FORMATS.items() if v == response.audio.format)
    return RenderedMix(b"".join(parts), fmt, rate, transitions, cue_sheet, gains)


class MixerClient(ServiceClient):
    """Async client; use as `async with MixerClient(addr) as mixer:`.

    Every method raises `segue.client.errors.SegueError` subclasses on failure and takes a
    `timeout_s` overriding the client's (see `segue.client.timeouts`).
    """

    SERVICE = "Mixer"

    def _bind(self, channel: grpc.aio.Channel) -> None:
        self._stub: mixer_pb2_grpc.MixerAsyncStub = mixer_pb2_grpc.MixerStub(channel)

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
        timeout_s: CallTimeout = USE_CLIENT_TIMEOUT,
    ) -> MixResult:
        """Renders the transition from `outgoing` into `incoming`."""
        config = self._config(
            style, output_format, output_sample_rate_hz, target_loudness_lufs, context_s
        )
        return await self._render("RenderTransition", outgoing, incoming, config, timeout_s)

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
        timeout_s: CallTimeout = USE_CLIENT_TIMEOUT,
    ) -> MixResult:
        """Overlays the two excerpts over `bars` bars (0 = the server default, 8)."""
        config = self._config(
            style, output_format, output_sample_rate_hz, target_loudness_lufs, context_s
        )
        config.mashup_bars = bars
        return await self._render("RenderMashup", outgoing, incoming, config, timeout_s)

    async def _render(
        self,
        rpc: Literal["RenderTransition", "RenderMashup"],
        outgoing: Excerpt,
        incoming: Excerpt,
        config: mixer_pb2.RenderConfig,
        timeout_s: CallTimeout,
    ) -> MixResult:
        """Streams both excerpts to `rpc` under the audio-scaled deadline; collects the answer."""
        deadline = stream_deadline(self.timeout_s, timeout_s, render_audio_s(outgoing, incoming))
        stub = self._stub
        method = stub.RenderTransition if rpc == "RenderTransition" else stub.RenderMashup
        call = method(_aiter(build_requests(outgoing, incoming, config)), timeout=deadline)
        return await _collect(self._responses(rpc, deadline, call))

    async def render_mix(
        self,
        songs: Sequence[MixSong],
        *,
        style: TransitionStyle | None = None,
        output_format: str = "wav",
        output_sample_rate_hz: int = 0,
        target_loudness_lufs: float = 0.0,
        file_name: str = "",
        title: str = "",
        timeout_s: CallTimeout = USE_CLIENT_TIMEOUT,
    ) -> RenderedMix:
        """Renders `songs`, in order, as one continuous mix with a transition at every cue.

        `file_name` and `title` go into the .cue sheet (defaults: "mix.<format>", "Segue mix").
        """
        if output_format not in FORMATS:
            raise ValueError(f"output_format must be one of {sorted(FORMATS)}")
        config = mixer_pb2.MixConfig(
            output_format=FORMATS[output_format],
            output_sample_rate_hz=output_sample_rate_hz,
            target_loudness_lufs=target_loudness_lufs,
            file_name=file_name,
            title=title,
        )
        config.style.CopyFrom(style if style is not None else TransitionStyle(auto=True))
        deadline = stream_deadline(self.timeout_s, timeout_s, mix_audio_s(songs))
        call = self._stub.RenderMix(_aiter(build_mix_requests(songs, config)), timeout=deadline)
        return await _collect_mix(self._responses("RenderMix", deadline, call))

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


async def _collect(responses: AsyncIterable[mixer_pb2.RenderResponse]) -> MixResult:
    """Joins a render's responses into one MixResult."""
    envelope, report = mixer_pb2.MixEnvelope(), mixer_pb2.QualityReport()
    parts: list[bytes] = []
    fmt, rate = "wav", 0
    async for response in responses:
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


async def _aiter(items: Iterable[RequestT]) -> AsyncIterator[RequestT]:
    for item in items:
        yield item


def render_transition_sync(
    address: str, outgoing: Excerpt, incoming: Excerpt, **kwargs: object
) -> MixResult:
    """Blocking convenience around MixerClient.render_transition (same arguments and errors)."""

    async def run() -> MixResult:
        async with MixerClient(address) as mixer:
            return await mixer.render_transition(outgoing, incoming, **kwargs)  # type: ignore[arg-type]

    return asyncio.run(run())
