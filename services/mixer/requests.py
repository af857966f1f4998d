"""What a render request asks for: its config checked field by field, and its audio collected.

Every check raises MixInputError (INVALID_ARGUMENT) or MixLimitError (RESOURCE_EXHAUSTED)
naming the field (`songs[3].entry_s`), or NoMatcherError (FAILED_PRECONDITION) for a song id
without an analysis on a mixer that has no matcher.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from segue.audio import SUPPORTED_RATES_HZ
from segue.mixing.errors import MixInputError, MixLimitError
from segue.mixing.excerpt import ExcerptBuffer, check_info
from segue.mixing.style import DEFAULT_CONTEXT_S, DEFAULT_TARGET_LUFS, Params, Style
from segue.v1 import common_pb2, mixer_pb2

from .analyses import require_matcher
from .config import MixerConfig

FORMATS = {
    mixer_pb2.OUTPUT_FORMAT_UNSPECIFIED: "wav",
    mixer_pb2.OUTPUT_FORMAT_WAV: "wav",
    mixer_pb2.OUTPUT_FORMAT_FLAC: "flac",
    mixer_pb2.OUTPUT_FORMAT_MP3: "mp3",
    mixer_pb2.OUTPUT_FORMAT_OGG: "ogg",
}
FORMAT_ENUMS = {name: enum for enum, name in FORMATS.items() if enum}
DEFAULT_OUTPUT_RATE_HZ = 44100
DEFAULT_MIX_TITLE = "Segue mix"
# Text that ends up in cue sheets: one line each, of a sane length.
MAX_NAME_CHARS = 256
MAX_URI_CHARS = 2048
# A continuous mix needs this much of every song between its entry and exit.
MIN_HEARD_S = 2.0


def check_text(name: str, value: str, max_chars: int) -> None:
    """Refuses control characters (a newline would forge cue sheet lines) and long text."""
    if len(value) > max_chars:
        raise MixInputError(f"{name} is longer than {max_chars} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise MixInputError(f"{name} must not contain control characters (newlines, tabs, ...)")


def params_from_values(
    name: str, rate_hz: int, target_lufs: float, context_s: float, mixer: MixerConfig
) -> Params:
    """Render parameters with defaults for zeros; `name` prefixes the fields in errors."""
    rate = rate_hz or DEFAULT_OUTPUT_RATE_HZ
    if rate not in SUPPORTED_RATES_HZ or rate < 22050:
        raise MixInputError(
            f"{name}output_sample_rate_hz {rate} is not supported; use one of "
            f"{', '.join(str(r) for r in SUPPORTED_RATES_HZ if r >= 22050)}"
        )
    target = target_lufs or DEFAULT_TARGET_LUFS
    if not (math.isfinite(target) and -40.0 <= target <= -5.0):
        raise MixInputError(f"{name}target_loudness_lufs must be in [-40, -5], got {target}")
    context = context_s or DEFAULT_CONTEXT_S
    if not (math.isfinite(context) and 0.0 < context <= 60.0):
        raise MixInputError(f"{name}context_s must be in (0, 60], got {context}")
    return Params(
        rate_hz=rate,
        target_lufs=target,
        context_s=context,
        ceiling_dbtp=mixer.true_peak_ceiling_dbtp,
        max_stretch=mixer.max_stretch,
    )


def params_from_config(config: mixer_pb2.RenderConfig, mixer: MixerConfig) -> Params:
    """A RenderConfig's parameters with defaults applied; MixInputError names a bad field."""
    return params_from_values(
        "", config.output_sample_rate_hz, config.target_loudness_lufs, config.context_s, mixer
    )


def _output_format(value: mixer_pb2.OutputFormat.ValueType) -> str:
    if value not in FORMATS:
        raise MixInputError(f"unknown output_format {value}; use WAV, FLAC, MP3 or OGG")
    return FORMATS[value]


def needs_stored_analysis(info: mixer_pb2.ExcerptInfo) -> bool:
    """True when the excerpt names a song and brings no analysis of its own."""
    return bool(info.song_id) and not info.HasField("analysis")


def check_song_reference(name: str, info: mixer_pb2.ExcerptInfo, mixer: MixerConfig) -> None:
    """Checks an excerpt's song_id and song_start_s (seconds in the song)."""
    check_text(f"{name}.song_id", info.song_id, MAX_NAME_CHARS)
    if not (math.isfinite(info.song_start_s) and info.song_start_s >= 0.0):
        raise MixInputError(f"{name}.song_start_s must be >= 0, got {info.song_start_s}")
    if needs_stored_analysis(info):
        require_matcher(mixer.matcher_addr, f"{name}.song_id")


@dataclass(frozen=True)
class Job:
    """A checked RenderTransition or RenderMashup."""

    config: mixer_pb2.RenderConfig
    params: Params
    fmt: str
    mashup: bool


def check_config(config: mixer_pb2.RenderConfig, mixer: MixerConfig, mashup: bool) -> Job:
    for name, info in (("outgoing", config.outgoing), ("incoming", config.incoming)):
        check_info(name, info)
        check_song_reference(name, info, mixer)
    if (
        config.outgoing.WhichOneof("encoding") == "pcm"
        and config.incoming.WhichOneof("encoding") == "pcm"
        and config.outgoing.pcm.sample_rate_hz != config.incoming.pcm.sample_rate_hz
    ):
        raise MixInputError(
            f"mismatched sample rates: outgoing pcm is {config.outgoing.pcm.sample_rate_hz} Hz, "
            f"incoming pcm is {config.incoming.pcm.sample_rate_hz} Hz; send both at one rate"
        )
    fmt = _output_format(config.output_format)
    Style.from_proto(config.style)  # validates
    if mashup:
        Style.for_mashup(config.mashup_bars or 8, config.style)
    return Job(config, params_from_config(config, mixer), fmt, mashup)


@dataclass
class TransitionIntake:
    """A RenderTransition or RenderMashup as it streams in: both excerpts' bytes by side."""

    job: Job
    buffers: dict[int, ExcerptBuffer]

    @classmethod
    def start(
        cls, config: mixer_pb2.RenderConfig, mixer: MixerConfig, mashup: bool
    ) -> TransitionIntake:
        job = check_config(config, mixer, mashup)
        limit = mixer.max_excerpt_bytes
        return cls(
            job,
            {
                mixer_pb2.SIDE_OUTGOING: ExcerptBuffer("outgoing", config.outgoing, limit),
                mixer_pb2.SIDE_INCOMING: ExcerptBuffer("incoming", config.incoming, limit),
            },
        )

    def add(self, chunk: mixer_pb2.ExcerptChunk) -> None:
        if chunk.side not in self.buffers:
            raise MixInputError(
                f"chunk side {chunk.side} is neither SIDE_OUTGOING nor SIDE_INCOMING"
            )
        self.buffers[chunk.side].add(chunk.data)

    def clear(self) -> None:
        self.buffers.clear()

    def stored_analyses_wanted(self) -> dict[str, str]:
        """{field: song id} of the excerpts whose analysis the matcher must give."""
        c = self.job.config
        return {
            f"{name}.song_id": info.song_id
            for name, info in (("outgoing", c.outgoing), ("incoming", c.incoming))
            if needs_stored_analysis(info)
        }


def song_info(song: mixer_pb2.MixSong) -> mixer_pb2.ExcerptInfo:
    """How a mix song's audio is sent, as the ExcerptInfo the excerpt decoder reads."""
    info = mixer_pb2.ExcerptInfo()
    if song.WhichOneof("encoding") == "pcm":
        info.pcm.CopyFrom(song.pcm)
    elif song.WhichOneof("encoding") == "encoded":
        info.encoded = song.encoded
    return info


@dataclass(frozen=True)
class MixJob:
    """A checked RenderMix."""

    config: mixer_pb2.MixConfig
    style: Style
    params: Params
    fmt: str
    file_name: str
    title: str


def _check_song(i: int, song: mixer_pb2.MixSong, mixer: MixerConfig) -> None:
    name = f"songs[{i}]"
    check_info(name, song_info(song))
    check_text(f"{name}.song_id", song.song_id, MAX_NAME_CHARS)
    check_text(f"{name}.title", song.title, MAX_NAME_CHARS)
    check_text(f"{name}.uri", song.uri, MAX_URI_CHARS)
    for which, value in (("entry_s", song.entry_s), ("exit_s", song.exit_s)):
        if not (math.isfinite(value) and value >= 0.0):
            raise MixInputError(f"{name}.{which} must be a number >= 0, got {value}")
    if song.exit_s > 0.0 and song.exit_s < song.entry_s + MIN_HEARD_S:
        raise MixInputError(
            f"{name}.exit_s ({song.exit_s:.2f} s) must be 0 (the song's end) or at least "
            f"{MIN_HEARD_S:.0f} s after {name}.entry_s ({song.entry_s:.2f} s)"
        )
    if song.song_id and not song.HasField("analysis"):
        require_matcher(mixer.matcher_addr, f"{name}.song_id")


def check_mix_config(config: mixer_pb2.MixConfig, mixer: MixerConfig) -> MixJob:
    count = len(config.songs)
    if count < 2:
        raise MixInputError(f"songs: a mix needs at least 2 songs, got {count}")
    if count > mixer.max_mix_songs:
        raise MixLimitError(
            f"songs: {count} songs are over this mixer's limit of {mixer.max_mix_songs} per mix"
        )
    for i, song in enumerate(config.songs):
        _check_song(i, song, mixer)
    style = Style.from_proto(config.style)
    fmt = _output_format(config.output_format)
    params = params_from_values(
        "", config.output_sample_rate_hz, config.target_loudness_lufs, 0.0, mixer
    )
    check_text("file_name", config.file_name, MAX_URI_CHARS)
    check_text("title", config.title, MAX_NAME_CHARS)
    return MixJob(
        config,
        style,
        params,
        fmt,
        file_name=config.file_name or f"mix.{fmt}",
        title=config.title or DEFAULT_MIX_TITLE,
    )


@dataclass
class MixIntake:
    """A RenderMix as it streams in: every song's bytes, within the mix's byte limit."""

    job: MixJob
    buffers: list[ExcerptBuffer]
    max_bytes: int
    size: int = field(default=0)

    @classmethod
    def start(cls, config: mixer_pb2.MixConfig, mixer: MixerConfig) -> MixIntake:
        job = check_mix_config(config, mixer)
        buffers = [
            ExcerptBuffer(f"songs[{i}]", song_info(song), mixer.max_excerpt_bytes)
            for i, song in enumerate(config.songs)
        ]
        return cls(job, buffers, mixer.max_mix_bytes)

    def add(self, chunk: mixer_pb2.MixChunk) -> None:
        if chunk.song_index >= len(self.buffers):
            raise MixInputError(
                f"chunk.song_index {chunk.song_index} is out of range: the config lists "
                f"{len(self.buffers)} songs"
            )
        self.size += len(chunk.data)
        if self.size > self.max_bytes:
            raise MixLimitError(
                f"the mix's audio is over the size limit of {self.max_bytes} bytes, all songs "
                "together"
            )
        self.buffers[chunk.song_index].add(chunk.data)

    def clear(self) -> None:
        self.buffers.clear()

    def stored_analyses_wanted(self) -> dict[str, str]:
        """{field: song id} of the songs whose analysis the matcher must give."""
        return {
            f"songs[{i}].song_id": song.song_id
            for i, song in enumerate(self.job.config.songs)
            if song.song_id and not song.HasField("analysis")
        }


def stored_for_song(
    stored: dict[str, common_pb2.SongAnalysis], i: int
) -> common_pb2.SongAnalysis | None:
    """The analysis fetched for songs[i], if one was."""
    return stored.get(f"songs[{i}].song_id")
