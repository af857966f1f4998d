"""Receiving one excerpt (PCM chunks or encoded bytes) and turning it into audio to mix."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import numpy.typing as npt
from scipy.signal import resample_poly

from segue.audio import DecodeError, decode, pcm_to_frames, validate_format
from segue.v1 import common_pb2, mixer_pb2

from .beatgrid import BeatGrid, analyse
from .errors import MixInputError, MixLimitError

FloatArray = npt.NDArray[np.float32]

OUTPUT_CHANNELS = 2


@dataclass
class ExcerptBuffer:
    """Collects one side's bytes as they stream in."""

    name: str
    info: mixer_pb2.ExcerptInfo
    max_bytes: int
    parts: list[bytes] = field(default_factory=list)
    size: int = 0

    def add(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.max_bytes:
            raise MixLimitError(
                f"{self.name} excerpt is over the size limit of {self.max_bytes} bytes"
            )
        self.parts.append(data)


@dataclass(frozen=True)
class Excerpt:
    """Decoded excerpt: stereo float32 [2, frames] at the render rate, plus its facts."""

    name: str
    audio: FloatArray
    rate_hz: int
    info: mixer_pb2.ExcerptInfo
    # The beat grid when the caller already knows it (a song's grid moved into the excerpt).
    grid: BeatGrid | None = None

    @property
    def duration_s(self) -> float:
        return float(self.audio.shape[1]) / self.rate_hz

    @cached_property
    def mono(self) -> FloatArray:
        mono: FloatArray = self.audio.mean(axis=0, dtype=np.float32)
        return mono

    @property
    def analysis(self) -> common_pb2.SongAnalysis | None:
        return self.info.analysis if self.info.HasField("analysis") else None

    @cached_property
    def structure(self) -> common_pb2.SongAnalysis:
        """The project's structure analysis of the excerpt, computed once when first asked."""
        return analyse(self.mono, self.rate_hz)


def check_info(name: str, info: mixer_pb2.ExcerptInfo) -> None:
    """Validates how an excerpt will be sent, before any of its bytes arrive."""
    kind = info.WhichOneof("encoding")
    if kind is None:
        raise MixInputError(f"{name}: set either pcm (with its AudioFormat) or encoded")
    if kind == "pcm":
        try:
            validate_format(info.pcm)
        except ValueError as e:
            raise MixInputError(f"{name} pcm format: {e}") from e
    if info.cue_s < 0 or not np.isfinite(info.cue_s):
        raise MixInputError(f"{name} cue_s must be >= 0, got {info.cue_s}")


def decode_excerpt(buffer: ExcerptBuffer, rate_hz: int, max_s: float) -> Excerpt:
    """Decodes a finished buffer to stereo at `rate_hz`; MixInputError names what is wrong."""
    data = b"".join(buffer.parts)
    if not data:
        raise MixInputError(f"{buffer.name} excerpt: no audio was sent")
    if buffer.info.WhichOneof("encoding") == "encoded":
        try:
            audio = decode(data, rate_hz, channels=OUTPUT_CHANNELS).T
        except DecodeError as e:
            raise MixInputError(f"{buffer.name} excerpt: undecodable audio ({e})") from e
    else:
        audio = _pcm_to_stereo(buffer.name, data, buffer.info.pcm)
        if buffer.info.pcm.sample_rate_hz != rate_hz:
            audio = resample_poly(audio, rate_hz, buffer.info.pcm.sample_rate_hz, axis=1).astype(
                np.float32
            )
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    if audio.shape[1] / rate_hz > max_s:
        raise MixLimitError(f"{buffer.name} excerpt is longer than the limit of {max_s:.0f} s")
    return Excerpt(buffer.name, audio, rate_hz, buffer.info)


def _pcm_to_stereo(name: str, data: bytes, fmt: common_pb2.AudioFormat) -> FloatArray:
    try:
        frames = pcm_to_frames(data, fmt).T
    except ValueError as e:
        raise MixInputError(f"{name} excerpt: {e}") from None
    if fmt.channels == OUTPUT_CHANNELS:
        return frames
    # Mono is centred; more than two channels are folded down to their mean.
    mono = frames.mean(axis=0, keepdims=True)
    return np.repeat(mono, OUTPUT_CHANNELS, axis=0)
