"""What a render request asks for: its config checked field by field, and its audio collected
at a pace the mixer can afford.

Every check raises MixInputError (INVALID_ARGUMENT) or MixLimitError (RESOURCE_EXHAUSTED)
naming the field (`songs[3].entry_s`), or NoMatcherError (FAILED_PRECONDITION) for a song id
without an analysis on a mixer that has no matcher. Analyses are checked here only for their
counts (cheap); their values once the audio's length is known (`analyses.check_analysis`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from segue.audio import SUPPORTED_RATES_HZ
from segue.mixing.errors import MixInputError, MixLimitError
from segue.mixing.excerpt import ExcerptBuffer, check_info
from segue.mixing.style import DEFAULT_CONTEXT_S, DEFAULT_TARGET_LUFS, Params, Style
from segue.song_ids import song_id_problem
from segue.v1 import common_pb2, mixer_pb2

from .analyses import MAX_SONG_S, AnalysisValueError, check_analysis_counts, require_matcher
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


def check_song_id(name: str, song_id: str) -> None:
    """An optional song id, when given, as segue/song_ids.py defines it."""
    problem = song_id_problem(song_id, name) if song_id else None
    if problem is not None:
        raise MixInputError(problem)


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


def check_seconds(name: str, value: float) -> None:
    """A time in a song: finite, in [0, MAX_SONG_S]."""
    if not (math.isfinite(value) and 0.0 <= value <= MAX_SONG_S):
        raise MixInputError(f"{name} must be a number in [0, {MAX_SONG_S:.0f}] s, got {value}")


def check_given_analysis(name: str, analysis: common_pb2.SongAnalysis, mixer: MixerConfig) -> None:
    """A client's analysis holds no more beats, sections, ... than the longest excerpt can."""
    try:
        check_analysis_counts(analysis, mixer.max_excerpt_s)
    except AnalysisValueError as e:
        raise MixInputError(f"{name}.analysis.{e}") from None


def check_song_reference(name: str, info: mixer_pb2.ExcerptInfo, mixer: MixerConfig) -> None:
    """Checks an excerpt's song_id, song_start_s (seconds in the song) and analysis counts."""
    check_song_id(f"{name}.song_id", info.song_id)
    check_seconds(f"{name}.song_start_s", info.song_start_s)
    if info.HasField("analysis"):
        check_given_analysis(name, info.analysis, mixer)
    elif info.song_id:
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
                side: ExcerptBuffer(name, info, limit, max_s=mixer.max_excerpt_s)
                for side, name, info in (
                    (mixer_pb2.SIDE_OUTGOING, "outgoing", config.outgoing),
                    (mixer_pb2.SIDE_INCOMING, "incoming", config.incoming),
                )
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
    check_song_id(f"{name}.song_id", song.song_id)
    check_text(f"{name}.title", song.title, MAX_NAME_CHARS)
    check_text(f"{name}.uri", song.uri, MAX_URI_CHARS)
    check_seconds(f"{name}.entry_s", song.entry_s)
    check_seconds(f"{name}.exit_s", song.exit_s)
    if song.exit_s > 0.0 and song.exit_s < song.entry_s + MIN_HEARD_S:
        raise MixInputError(
            f"{name}.exit_s ({song.exit_s:.2f} s) must be 0 (the song's end) or at least "
            f"{MIN_HEARD_S:.0f} s after {name}.entry_s ({song.entry_s:.2f} s)"
        )
    if song.HasField("analysis"):
        check_given_analysis(name, song.analysis, mixer)
    elif song.song_id:
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
            ExcerptBuffer(
                f"songs[{i}]", song_info(song), mixer.max_excerpt_bytes, max_s=mixer.max_excerpt_s
            )
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


class UploadTooSlowError(Exception):
    """A request stream arrives too slowly (UploadPace); the client gets DEADLINE_EXCEEDED."""


@dataclass
class UploadPace:
    """How long the mixer waits for a request stream's next message.

    The whole stream must arrive within `max_s`; and once `grace_s` have passed, it must
    have sent at least `min_bytes_per_s` on average since it started. So a stream that
    dribbles cannot hold its place in the render queue (or its memory) for long.
    """

    max_s: float
    min_bytes_per_s: float
    grace_s: float
    started: float = field(default_factory=time.monotonic)
    received: int = 0

    @classmethod
    def of(cls, mixer: MixerConfig) -> UploadPace:
        return cls(mixer.max_upload_s, mixer.min_upload_bytes_per_s, mixer.upload_grace_s)

    def _due_s(self) -> float:
        """Seconds from the start by which the next message must have arrived."""
        if self.min_bytes_per_s <= 0.0:
            return self.max_s
        return min(self.max_s, max(self.grace_s, self.received / self.min_bytes_per_s))

    def wait_s(self) -> float:
        """How long to wait for the next message from now (0 when already late)."""
        return max(0.0, self._due_s() - (time.monotonic() - self.started))

    def arrived(self, message_bytes: int) -> None:
        self.received += message_bytes

    def too_slow(self) -> UploadTooSlowError:
        elapsed = time.monotonic() - self.started
        if self._due_s() >= self.max_s:
            return UploadTooSlowError(
                f"the request stream took over {self.max_s:.0f} s "
                "(SEGUE_MIXER_MAX_UPLOAD_S) to arrive"
            )
        return UploadTooSlowError(
            f"the request stream is too slow: {self.received} bytes in {elapsed:.0f} s, under "
            f"the minimum of {self.min_bytes_per_s:.0f} bytes/s "
            "(SEGUE_MIXER_MIN_UPLOAD_BYTES_PER_S)"
        )
