"""Receiving one excerpt (PCM chunks or encoded bytes) and turning it into audio to mix.

Limits hold before the audio takes memory: raw PCM is refused as soon as its bytes run past
the excerpt's seconds, and encoded audio is decoded only up to them (`decode_limited`), so
a small file that expands to hours never does. Samples must be finite and within
+-MAX_SAMPLE_ABS (full scale is 1.0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import numpy.typing as npt
from scipy.signal import resample_poly

from segue.audio import (
    BYTES_PER_SAMPLE,
    DecodeError,
    DecodeLimitError,
    decode_limited,
    frame_bytes,
    pcm_to_frames,
    validate_format,
)
from segue.v1 import common_pb2, mixer_pb2

from .beatgrid import BeatGrid, analyse
from .errors import MixInputError, MixLimitError

FloatArray = npt.NDArray[np.float32]

OUTPUT_CHANNELS = 2
# Largest magnitude of a sample (full scale is 1.0): room for hot masters and float
# headroom, while the loudness and limiter arithmetic stays far from overflow.
MAX_SAMPLE_ABS = 64.0


@dataclass
class ExcerptBuffer:
    """Collects one side's bytes as they stream in.

    Refuses (MixLimitError) more than `max_bytes`, and raw PCM longer than `max_s` seconds.
    """

    name: str
    info: mixer_pb2.ExcerptInfo
    max_bytes: int
    parts: list[bytes] = field(default_factory=list)
    size: int = 0
    max_s: float = math.inf

    def add(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.max_bytes:
            raise MixLimitError(
                f"{self.name} excerpt is over the size limit of {self.max_bytes} bytes"
            )
        if self.size > self._max_pcm_bytes():
            raise MixLimitError(
                f"{self.name} excerpt is longer than the limit of {self.max_s:.0f} s "
                f"({self.size} bytes of pcm)"
            )
        self.parts.append(data)

    def _max_pcm_bytes(self) -> float:
        """Bytes of `max_s` seconds of the excerpt's PCM (inf when encoded)."""
        fmt = self.info.pcm
        if (
            self.info.WhichOneof("encoding") != "pcm"
            or fmt.sample_format not in BYTES_PER_SAMPLE
            or not math.isfinite(self.max_s)
        ):
            return math.inf
        return (math.floor(self.max_s * fmt.sample_rate_hz) + 1) * frame_bytes(fmt)


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
    """Decodes a finished buffer to stereo at `rate_hz`; MixInputError names what is wrong,
    MixLimitError an excerpt longer than `max_s` seconds (found before it is all decoded)."""
    if not any(buffer.parts):
        raise MixInputError(f"{buffer.name} excerpt: no audio was sent")
    if buffer.info.WhichOneof("encoding") == "encoded":
        audio = _decode_encoded(buffer, rate_hz, max_s)
    else:
        audio = _decode_pcm(buffer, rate_hz, max_s)
    if audio.shape[1] / rate_hz > max_s:
        del audio
        raise MixLimitError(f"{buffer.name} excerpt is longer than the limit of {max_s:.0f} s")
    return Excerpt(buffer.name, audio, rate_hz, buffer.info)


def _decode_encoded(buffer: ExcerptBuffer, rate_hz: int, max_s: float) -> FloatArray:
    """The encoded bytes decoded (at most `max_s` seconds of them), as [2, frames]."""
    try:
        decoded = decode_limited(buffer.parts, rate_hz, OUTPUT_CHANNELS, max_s)
    except DecodeLimitError as e:
        declared = "" if e.declared_s is None else f" (its header declares {e.declared_s:.0f} s)"
        raise MixLimitError(
            f"{buffer.name} excerpt is longer than the limit of {max_s:.0f} s{declared}"
        ) from None
    except DecodeError as e:
        raise MixInputError(f"{buffer.name} excerpt: undecodable audio ({e})") from None
    audio: FloatArray = np.ascontiguousarray(decoded.T, dtype=np.float32)
    del decoded
    hi, lo = float(audio.max()), float(audio.min())
    if not (hi <= MAX_SAMPLE_ABS and lo >= -MAX_SAMPLE_ABS):  # NaN fails both
        del audio
        raise MixInputError(
            f"{buffer.name} excerpt: decoded samples are NaN, Inf or beyond "
            f"+-{MAX_SAMPLE_ABS:g} (full scale is 1.0)"
        )
    return audio


def _decode_pcm(buffer: ExcerptBuffer, rate_hz: int, max_s: float) -> FloatArray:
    """Raw PCM as stereo [2, frames] at `rate_hz`, refused before conversion when longer
    than `max_s` seconds."""
    fmt = buffer.info.pcm
    if buffer.size // frame_bytes(fmt) / fmt.sample_rate_hz > max_s:
        raise MixLimitError(f"{buffer.name} excerpt is longer than the limit of {max_s:.0f} s")
    data = b"".join(buffer.parts)
    audio = _pcm_to_stereo(buffer.name, data, fmt)
    del data
    if fmt.sample_rate_hz != rate_hz:
        audio = resample_poly(audio, rate_hz, fmt.sample_rate_hz, axis=1).astype(np.float32)
    out: FloatArray = np.ascontiguousarray(audio, dtype=np.float32)
    return out


def _pcm_to_stereo(name: str, data: bytes, fmt: common_pb2.AudioFormat) -> FloatArray:
    try:
        frames = pcm_to_frames(data, fmt, max_abs=MAX_SAMPLE_ABS).T
    except ValueError as e:
        raise MixInputError(f"{name} excerpt: {e}") from None
    if fmt.channels == OUTPUT_CHANNELS:
        return frames
    # Mono is centred; more than two channels are folded down to their mean.
    mono = frames.mean(axis=0, keepdims=True)
    return np.repeat(mono, OUTPUT_CHANNELS, axis=0)


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
