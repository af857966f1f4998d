"""The mixer against hostile input (issue 18, "Trust"): decompression bombs, numbers out of
range, analyses that would blow up a render, and clients that stall; real ffmpeg, real gRPC
on loopback.

Each attack was first seen by an adversarial probe: a 656 KB FLAC decoding to an hour took
3.7 GB and left 1.2 GB behind per request; float samples of 1e30 and beats at 3e7 s gave
INTERNAL (or 2.4 GB and 9 s, then OK). Every one is now answered with a documented status
naming the field, with the memory bounded by the limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mixer_fixtures import MixerThreadServer
from thread_server import ThreadServer

from segue.audio import DecodeLimitError, decode, decode_limited, ffmpeg_path
from segue.mixing.errors import MixLimitError
from segue.mixing.excerpt import ExcerptBuffer
from segue.v1 import common_pb2, matcher_pb2, matcher_pb2_grpc, mixer_pb2, mixer_pb2_grpc
from services.mixer.config import MixerConfig

REPO = Path(__file__).resolve().parents[1]
RATE_HZ = 22050
# The mixers under test accept excerpts up to this long (the default is 900 s).
LIMIT_S = 30.0
F32 = common_pb2.SAMPLE_FORMAT_F32LE
OK = grpc.StatusCode.OK
INVALID = grpc.StatusCode.INVALID_ARGUMENT
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
DEADLINE = grpc.StatusCode.DEADLINE_EXCEEDED
# An hour at 44.1 kHz stereo float32, as a render would decode it: what the bomb expands to.
HOUR_DECODED_BYTES = 3600 * 44100 * 2 * 4
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
FloatArray = npt.NDArray[np.float32]


# Material: click tracks with exact beats, and bombs made with ffmpeg.


def clicks(bpm: float, seconds: float, tone_hz: float) -> tuple[FloatArray, list[float]]:
    """Mono tone bursts on every beat at RATE_HZ over a faint noise floor (IIR filters are
    slow on the denormals that pure digital silence leaves them), and the beat times."""
    beats = np.arange(0.2, seconds - 0.1, 60.0 / bpm)
    noise = np.random.default_rng(round(bpm)).standard_normal(int(seconds * RATE_HZ))
    audio = (1e-3 * noise).astype(np.float32)
    k = np.arange(int(0.03 * RATE_HZ))
    burst = np.sin(2 * np.pi * tone_hz * k / RATE_HZ) * np.exp(-k / (0.006 * RATE_HZ))
    for t in beats:
        i = round(t * RATE_HZ)
        audio[i : i + k.size] += 0.5 * burst.astype(np.float32)
    return audio, [float(t) for t in beats]


def analysis_of(beats: Sequence[float], bpm: float) -> common_pb2.SongAnalysis:
    """Exact beats, tempo and a key: the mixer analyses nothing itself (fast renders)."""
    analysis = common_pb2.SongAnalysis(duration_s=beats[-1] + 0.5)
    analysis.tempo.bpm, analysis.tempo.confidence, analysis.tempo.stability = bpm, 1.0, 1.0
    analysis.key.tonic_pitch_class, analysis.key.mode = 0, common_pb2.MODE_MAJOR
    for i, t in enumerate(beats):
        analysis.beats.add(time_s=t, position_in_bar=i % 4 + 1)
    return analysis


@dataclass(frozen=True)
class Song:
    audio: FloatArray
    analysis: common_pb2.SongAnalysis

    @property
    def pcm(self) -> bytes:
        return self.audio.astype("<f4").tobytes()


A_AUDIO, A_BEATS = clicks(124.0, 8.0, 2000.0)
B_AUDIO, B_BEATS = clicks(120.0, 8.0, 3000.0)
SONG_A = Song(A_AUDIO, analysis_of(A_BEATS, 124.0))
SONG_B = Song(B_AUDIO, analysis_of(B_BEATS, 120.0))
# A continuous mix needs longer songs (the incoming one ramps back to its own tempo).
MIX_SONGS = tuple(
    Song(audio, analysis_of(beats, 124.0))
    for audio, beats in (clicks(124.0, 16.0, 2000.0), clicks(124.0, 16.0, 3000.0))
)
MIX_PCM = [song.pcm for song in MIX_SONGS]
MIX_BEATS = len(MIX_SONGS[1].analysis.beats)


def ffmpeg(*args: str, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(
        [ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-nostdin", *args],
        input=stdin,
        capture_output=True,
        check=True,
    )
    return proc.stdout


def hour_of_silence_flac(folder: Path) -> bytes:
    """An hour of 8 kHz mono digital silence as FLAC: ~650 KB that decode to 1.27 GB at the
    mixer's 44.1 kHz stereo float (written to a file: FLAC on a pipe has no length header)."""
    path = folder / "hour.flac"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "3600", "-c:a", "flac", "-y",
           str(path))  # fmt: skip
    return path.read_bytes()


def declaring_one_second(flac: bytes) -> bytes:
    """The FLAC with its STREAMINFO total sample count set to 1 s (8000 samples): the header
    lies, the frames still hold the hour."""
    assert flac[:4] == b"fLaC" and flac[4] & 0x7F == 0  # STREAMINFO first
    data = bytearray(flac)
    word = int.from_bytes(data[18:26], "big")
    data[18:26] = ((word & ~((1 << 36) - 1)) | 8000).to_bytes(8, "big")
    return bytes(data)


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return hour_of_silence_flac(tmp_path_factory.mktemp("bomb"))


@pytest.fixture(scope="module")
def liar(bomb: bytes) -> bytes:
    return declaring_one_second(bomb)


# Requests and calls.


def pcm_format(channels: int = 1) -> common_pb2.AudioFormat:
    return common_pb2.AudioFormat(sample_rate_hz=RATE_HZ, channels=channels, sample_format=F32)


def pair_config(a: Song = SONG_A, b: Song = SONG_B) -> mixer_pb2.RenderConfig:
    """A valid transition of the two click tracks (sent as mono float PCM) to WAV."""
    config = mixer_pb2.RenderConfig(
        output_format=mixer_pb2.OUTPUT_FORMAT_WAV, output_sample_rate_hz=RATE_HZ, context_s=1.0
    )
    config.style.bars = 2
    for info, song in ((config.outgoing, a), (config.incoming, b)):
        info.pcm.CopyFrom(pcm_format())
        info.analysis.CopyFrom(song.analysis)
    return config


def chunks(data: bytes, size: int = 1 << 20) -> Iterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


def pair_requests(
    config: mixer_pb2.RenderConfig, outgoing: bytes, incoming: bytes
) -> list[mixer_pb2.RenderRequest]:
    out = [mixer_pb2.RenderRequest(config=config)]
    for side, data in ((mixer_pb2.SIDE_OUTGOING, outgoing), (mixer_pb2.SIDE_INCOMING, incoming)):
        out += [
            mixer_pb2.RenderRequest(chunk=mixer_pb2.ExcerptChunk(side=side, data=piece))
            for piece in chunks(data)
        ]
    return [*out, mixer_pb2.RenderRequest(end=mixer_pb2.EndOfInput())]


def mix_config(songs: Sequence[Song] = MIX_SONGS) -> mixer_pb2.MixConfig:
    config = mixer_pb2.MixConfig(
        output_format=mixer_pb2.OUTPUT_FORMAT_WAV, output_sample_rate_hz=RATE_HZ
    )
    config.style.seconds = 2.0
    for i, song in enumerate(songs):
        config.songs.add(song_id=f"click-{i}", pcm=pcm_format(), analysis=song.analysis)
    return config


def mix_requests(
    config: mixer_pb2.MixConfig, audio: Sequence[bytes]
) -> list[mixer_pb2.RenderMixRequest]:
    out = [mixer_pb2.RenderMixRequest(config=config)]
    for i, data in enumerate(audio):
        out += [
            mixer_pb2.RenderMixRequest(chunk=mixer_pb2.MixChunk(song_index=i, data=piece))
            for piece in chunks(data)
        ]
    return [*out, mixer_pb2.RenderMixRequest(end=mixer_pb2.EndOfInput())]


@dataclass
class Answer:
    code: grpc.StatusCode
    details: str
    responses: list[Any] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def audio(self) -> bytes:
        return b"".join(r.audio.data for r in self.responses if r.WhichOneof("kind") == "audio")


async def _aiter(items: Iterable[Any], pause_s: float = 0.0) -> AsyncIterator[Any]:
    for item in items:
        yield item
        if pause_s:
            await asyncio.sleep(pause_s)


async def _call(address: str, method: str, requests: Iterable[Any], timeout_s: float) -> Answer:
    started = time.monotonic()
    responses: list[Any] = []
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        rpc = getattr(mixer_pb2_grpc.MixerStub(channel), method)
        try:
            async for response in rpc(_aiter(requests), timeout=timeout_s):
                responses.append(response)
        except grpc.aio.AioRpcError as e:
            return Answer(e.code(), e.details() or "", responses, time.monotonic() - started)
    return Answer(OK, "", responses, time.monotonic() - started)


def call(address: str, method: str, requests: Iterable[Any], timeout_s: float = 60.0) -> Answer:
    return asyncio.run(_call(address, method, requests, timeout_s))


def expect(answer: Answer, code: grpc.StatusCode, *fragments: str) -> None:
    assert answer.code == code, (answer.code, answer.details)
    for fragment in fragments:
        assert fragment in answer.details, answer.details


@pytest.fixture(scope="module")
def mixer() -> Iterator[MixerThreadServer]:
    server = MixerThreadServer(max_excerpt_s=LIMIT_S, max_concurrent=4).start()
    yield server
    server.stop()


# 1. Decompression bombs: limited before and while decoding.


def test_a_header_declaring_an_hour_is_refused_before_decoding(bomb: bytes) -> None:
    started = time.monotonic()
    with pytest.raises(DecodeLimitError) as err:
        decode_limited([bomb], 44100, 2, LIMIT_S)
    assert err.value.declared_s == pytest.approx(3600.0)
    assert time.monotonic() - started < 3.0  # ffmpeg stopped at the header, not an hour in


def test_a_header_that_lies_short_is_stopped_at_the_limit_in_memory(liar: bytes) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(DecodeLimitError) as err:
            decode_limited([liar], 44100, 2, LIMIT_S)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert err.value.declared_s is None  # the decoded audio itself ran past the limit
    limit_bytes = LIMIT_S * 44100 * 2 * 4
    assert peak < 2 * limit_bytes < HOUR_DECODED_BYTES / 50, peak


def test_audio_within_the_limit_decodes_exactly_as_without_one() -> None:
    ogg = ffmpeg("-f", "f32le", "-ar", str(RATE_HZ), "-ac", "1", "-i", "pipe:0", "-c:a",
                 "libvorbis", "-f", "ogg", "pipe:1", stdin=SONG_A.pcm)  # fmt: skip
    limited = decode_limited([ogg[:1000], ogg[1000:]], 44100, 2, LIMIT_S)
    assert limited.tobytes() == decode(ogg, 44100, channels=2).tobytes()
    with pytest.raises(DecodeLimitError):  # 8 s of audio against a 5 s limit
        decode_limited([ogg], 44100, 2, 5.0)


@pytest.mark.parametrize("which", ["bomb", "liar"])
@pytest.mark.parametrize("side", ["outgoing", "incoming"])
def test_bombs_sent_to_the_mixer_are_resource_exhausted_naming_the_excerpt(
    mixer: MixerThreadServer, request: pytest.FixtureRequest, which: str, side: str
) -> None:
    data: bytes = request.getfixturevalue(which)
    config = pair_config()
    getattr(config, side).encoded = True
    good = SONG_A.pcm if side == "incoming" else SONG_B.pcm
    requests = pair_requests(config, *((data, good) if side == "outgoing" else (good, data)))
    answer = call(mixer.address, "RenderTransition", requests)
    expect(answer, EXHAUSTED, f"{side} excerpt is longer than the limit of {LIMIT_S:.0f} s")
    if which == "bomb":
        assert "its header declares 3600 s" in answer.details


def test_raw_pcm_past_the_limit_is_refused_as_its_bytes_arrive() -> None:
    info = mixer_pb2.ExcerptInfo(pcm=pcm_format(channels=2))
    buffer = ExcerptBuffer("outgoing", info, 1 << 40, max_s=LIMIT_S)
    second = bytes(RATE_HZ * 2 * 4)
    for _ in range(int(LIMIT_S)):
        buffer.add(second)
    with pytest.raises(MixLimitError, match="outgoing excerpt is longer than the limit of 30 s"):
        buffer.add(second)
    assert len(buffer.parts) == int(LIMIT_S)  # the second over the limit was not kept


def test_a_long_pcm_mix_song_is_refused_before_it_is_converted(mixer: MixerThreadServer) -> None:
    # s16 mono at 8 kHz would grow 11-fold as float stereo at 44.1 kHz: counted as it arrives.
    config = mix_config()
    config.songs[1].pcm.CopyFrom(
        common_pb2.AudioFormat(
            sample_rate_hz=8000, channels=1, sample_format=common_pb2.SAMPLE_FORMAT_S16LE
        )
    )
    long_pcm = bytes(int((LIMIT_S + 1) * 8000) * 2)
    answer = call(mixer.address, "RenderMix", mix_requests(config, [MIX_PCM[0], long_pcm]))
    expect(answer, EXHAUSTED, "songs[1] excerpt is longer than the limit")


# 2. The memory of refused bombs is given back (a real mixer process).


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak) of a process, MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0]) / 1024
    return out


@pytest.fixture
def mixer_process() -> Iterator[tuple[str, int]]:
    """`python -m services.mixer` (insecure development mode, excerpts up to 120 s)."""
    port = _free_port()
    env = dict(os.environ, SEGUE_INSECURE_DEV="1", SEGUE_GRPC_PORT=str(port),
               SEGUE_METRICS_PORT="0", SEGUE_LOG_LEVEL="warning",
               SEGUE_MIXER_MAX_EXCERPT_S="120", SEGUE_MAX_MESSAGE_BYTES=str(4 << 20))  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "services.mixer"], cwd=REPO, env=env)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=60)
        yield f"127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_refused_bombs_leave_no_memory_behind(mixer_process: tuple[str, int], liar: bytes) -> None:
    address, pid = mixer_process
    config = pair_config()
    config.outgoing.encoded = True
    requests = pair_requests(config, liar, SONG_B.pcm)
    # The first refusal warms up the process (threads, ffmpeg pipes, numpy's allocator).
    expect(call(address, "RenderTransition", requests), EXHAUSTED, "limit of 120 s")
    first = _memory_mb(pid)
    for _ in range(4):
        expect(call(address, "RenderTransition", requests), EXHAUSTED, "limit of 120 s")
    after = _memory_mb(pid)
    # Each refusal decoded 120 s (42 MB at 44.1 kHz stereo, twice over to transpose it) of
    # an hour that would be 1.27 GB; kept alive by a traceback, 4 would add 170 MB or more.
    assert after["VmHWM"] < 600, (first, after)
    assert after["VmRSS"] - first["VmRSS"] < 40, (first, after)


# 3. Samples: finite and within +-64 (full scale 1.0).


@pytest.mark.parametrize(
    ("value", "fragment"),
    [(1e30, "beyond +-64"), (-65.0, "beyond +-64"), (math.nan, "NaN or Inf"),
     (math.inf, "NaN or Inf")],
)  # fmt: skip
def test_float_pcm_beyond_range_is_invalid_argument(
    mixer: MixerThreadServer, value: float, fragment: str
) -> None:
    hot = SONG_A.audio.copy()
    hot[1000] = value
    answer = call(
        mixer.address, "RenderTransition", pair_requests(pair_config(), hot.tobytes(), SONG_B.pcm)
    )
    expect(answer, INVALID, "outgoing excerpt", fragment)


def test_an_encoded_float_file_with_huge_samples_is_invalid_argument(
    mixer: MixerThreadServer,
) -> None:
    hot = SONG_B.audio.copy()
    hot[1000] = 1e30
    wav = ffmpeg("-f", "f32le", "-ar", str(RATE_HZ), "-ac", "1", "-i", "pipe:0", "-c:a",
                 "pcm_f32le", "-f", "wav", "pipe:1", stdin=hot.tobytes())  # fmt: skip
    config = pair_config()
    config.incoming.encoded = True
    answer = call(mixer.address, "RenderTransition", pair_requests(config, SONG_A.pcm, wav))
    expect(answer, INVALID, "incoming excerpt: decoded samples are NaN, Inf or beyond +-64")


# 4. Analyses: every number finite, in range, and within the audio.


def _beats_from(start_s: float, step_s: float) -> Callable[[common_pb2.SongAnalysis], None]:
    def change(analysis: common_pb2.SongAnalysis) -> None:
        for i, beat in enumerate(analysis.beats):
            beat.time_s = start_s + i * step_s

    return change


def _set_beat(time_s: float) -> Callable[[common_pb2.SongAnalysis], None]:
    def change(analysis: common_pb2.SongAnalysis) -> None:
        analysis.beats[0].time_s = time_s

    return change


BAD_ANALYSES: dict[str, tuple[Callable[[common_pb2.SongAnalysis], object], str]] = {
    "beats at 3e7 s": (_beats_from(3e7, 0.5), "analysis.beats[0].time_s must be a number in [-1,"),
    "a beat at 1e12 s": (_set_beat(1e12), "analysis.beats[0].time_s"),
    "a NaN beat": (_set_beat(math.nan), "analysis.beats[0].time_s must be"),
    "a beat past the end": (_set_beat(9.5), "analysis.beats[0].time_s"),
    "beats 1 ms apart": (_beats_from(1.0, 0.001), "analysis.beats: their median interval"),
    "too many beats": (lambda a: [a.beats.add(time_s=i / 100) for i in range(400)],
                       "analysis.beats: 416 of them is over the limit of 364"),
    "an infinite tempo": (lambda a: setattr(a.tempo, "bpm", math.inf), "analysis.tempo.bpm"),
    "a tempo confidence of 2": (lambda a: setattr(a.tempo, "confidence", 2.0),
                                "analysis.tempo.confidence"),
    "a NaN key confidence": (lambda a: setattr(a.key, "confidence", math.nan),
                             "analysis.key.confidence"),
    "NaN loudness": (lambda a: setattr(a, "loudness_lufs", math.nan), "analysis.loudness_lufs"),
    "a negative duration": (lambda a: setattr(a, "duration_s", -1.0), "analysis.duration_s"),
    "a section ending before it starts": (lambda a: a.sections.add(start_s=5.0, end_s=2.0),
                                          "analysis.sections[0].end_s is before its start_s"),
    "a section past the end": (lambda a: a.sections.add(start_s=1.0, end_s=1e9),
                               "analysis.sections[0].end_s"),
    "a cue point at 1e300 s": (lambda a: a.cue_points.add(time_s=1e300),
                               "analysis.cue_points[0].time_s"),
    "a cue point of energy -1": (lambda a: a.cue_points.add(time_s=1.0, energy=-1.0),
                                 "analysis.cue_points[0].energy"),
    "a 2**31-bar phrase": (lambda a: a.cue_points.add(time_s=1.0, phrase_bars=2**31),
                           "analysis.cue_points[0].phrase_bars"),
    "an infinite feel": (lambda a: a.feel.extend([0.1, math.inf]),
                         "analysis.feel[1] must be finite"),
    "a NaN segment vector": (lambda a: a.segments.add(start_s=0, end_s=4, entry=[math.nan]),
                             "analysis.segments[0].entry[0] must be finite"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_ANALYSES))
def test_a_bad_analysis_is_invalid_argument_naming_the_value(
    mixer: MixerThreadServer, case: str
) -> None:
    change, fragment = BAD_ANALYSES[case]
    config = pair_config()
    change(config.outgoing.analysis)
    answer = call(mixer.address, "RenderTransition", pair_requests(config, SONG_A.pcm, SONG_B.pcm))
    expect(answer, INVALID, f"outgoing.{fragment}")
    assert answer.seconds < 5.0  # beats at 3e7 s once took 9 s and 2.4 GB


def test_beats_too_irregular_to_stretch_onto_are_invalid_argument(
    mixer: MixerThreadServer,
) -> None:
    # Found by fuzzing: in range, but the gap of 1.25 s after three 0.5 s beats would have
    # the stretch play B at over twice its speed (once a ValueError inside: INTERNAL).
    config = pair_config()
    del config.incoming.analysis.beats[:]
    for i, t in enumerate((0.0, 0.5, 1.0, 2.25)):
        config.incoming.analysis.beats.add(time_s=t, position_in_bar=i + 1)
    answer = call(mixer.address, "RenderTransition", pair_requests(config, SONG_A.pcm, SONG_B.pcm))
    expect(answer, INVALID, "incoming excerpt cannot follow the outgoing one's beats")


def test_silence_measured_as_minus_infinity_lufs_is_a_valid_loudness(
    mixer: MixerThreadServer,
) -> None:
    config = pair_config()
    config.incoming.analysis.loudness_lufs = -math.inf  # what the embedder reports for silence
    answer = call(mixer.address, "RenderTransition", pair_requests(config, SONG_A.pcm, SONG_B.pcm))
    assert answer.code == OK, answer.details


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda c: setattr(c.songs[1], "exit_s", 1e308), "songs[1].exit_s must be a number in"),
        (lambda c: setattr(c.songs[1], "entry_s", math.inf), "songs[1].entry_s"),
        (lambda c: c.songs[1].analysis.beats.add(time_s=3e7),
         f"songs[1].analysis.beats[{MIX_BEATS}].time_s"),
        (lambda c: setattr(c.songs[0].analysis.tempo, "stability", -0.5),
         "songs[0].analysis.tempo.stability"),
    ],
)  # fmt: skip
def test_a_bad_mix_song_is_invalid_argument_naming_it(
    mixer: MixerThreadServer, change: Callable[[mixer_pb2.MixConfig], None], fragment: str
) -> None:
    config = mix_config()
    change(config)
    answer = call(mixer.address, "RenderMix", mix_requests(config, MIX_PCM))
    expect(answer, INVALID, fragment)


class StoredAnalyses(matcher_pb2_grpc.MatcherServicer):
    """A matcher that stores nothing but the analyses it is given (GetSong only)."""

    def __init__(self, analyses: dict[str, common_pb2.SongAnalysis]) -> None:
        self.analyses = analyses

    async def GetSong(  # noqa: N802 (gRPC method name)
        self, request: matcher_pb2.GetSongRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> matcher_pb2.StoredSong:
        if request.song_id not in self.analyses:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"{request.song_id} is not stored")
        return matcher_pb2.StoredSong(
            song_id=request.song_id, analysis=self.analyses[request.song_id]
        )


def _register_matcher(servicer: StoredAnalyses) -> Callable[[grpc.aio.Server], list[str]]:
    def register(server: grpc.aio.Server) -> list[str]:
        matcher_pb2_grpc.add_MatcherServicer_to_server(servicer, server)
        return [matcher_pb2.DESCRIPTOR.services_by_name["Matcher"].full_name]

    return register


def _stored(song: Song, song_id: str, change: Callable[[common_pb2.SongAnalysis], object]) -> Any:
    analysis = common_pb2.SongAnalysis()
    analysis.CopyFrom(song.analysis)
    analysis.song_id = song_id
    change(analysis)
    return analysis


@pytest.fixture(scope="module")
def with_matcher() -> Iterator[MixerThreadServer]:
    """A mixer whose matcher stores click tracks with bad analyses."""
    analyses = {
        "nan-tempo": _stored(SONG_B, "nan-tempo", lambda a: setattr(a.tempo, "bpm", math.nan)),
        "dense": _stored(SONG_B, "dense", lambda a: [a.beats.add(time_s=5 + i / 1e4)
                                                     for i in range(2000)]),
        "long": _stored(MIX_SONGS[1], "long", lambda a: a.beats.add(time_s=3e7)),
        "good": _stored(MIX_SONGS[1], "good", lambda a: None),
    }  # fmt: skip
    matcher = ThreadServer(
        "matcher",
        lambda: StoredAnalyses(analyses),  # type: ignore[abstract]  # GetSong is enough here
        _register_matcher,
        grace_s=1.0,
    ).start()
    server = MixerThreadServer(matcher_addr=matcher.address, max_excerpt_s=LIMIT_S).start()
    yield server
    server.stop()
    matcher.stop()


@pytest.mark.parametrize(
    ("song_id", "fragment"),
    [("nan-tempo", "tempo.bpm must be"), ("dense", "beats: 2016 of them is over the limit")],
)
def test_a_bad_stored_analysis_is_failed_precondition_naming_the_song(
    with_matcher: MixerThreadServer, song_id: str, fragment: str
) -> None:
    config = pair_config()
    config.incoming.ClearField("analysis")
    config.incoming.song_id = song_id
    answer = call(
        with_matcher.address, "RenderTransition", pair_requests(config, SONG_A.pcm, SONG_B.pcm)
    )
    expect(answer, PRECONDITION, f"stored analysis of incoming.song_id '{song_id}'", fragment)


def test_stored_beats_outside_a_mix_song_are_failed_precondition(
    with_matcher: MixerThreadServer,
) -> None:
    config = mix_config()
    config.songs[1].ClearField("analysis")
    config.songs[1].song_id = "long"
    answer = call(with_matcher.address, "RenderMix", mix_requests(config, MIX_PCM))
    expect(
        answer, PRECONDITION, "stored analysis of songs[1].song_id 'long'", f"beats[{MIX_BEATS}]"
    )
    # The same song's good analysis renders.
    config.songs[1].song_id = "good"
    answer = call(with_matcher.address, "RenderMix", mix_requests(config, MIX_PCM))
    assert answer.code == OK, answer.details


# 5. Slow clients: responses wait for the client, uploads must keep a pace.


def _wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _in_flight(server: MixerThreadServer) -> int:
    assert server.servicer is not None
    count: int = server.servicer.in_flight
    return count


def test_a_client_that_never_reads_is_cut_off_after_the_write_timeout() -> None:
    server = MixerThreadServer(write_timeout_s=1.0, output_chunk_bytes=16 * 1024).start()
    # A small receive window (no BDP growth), so that the rendered WAV (~600 KB) cannot
    # all sit in the transport's buffers.
    options = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 65536)]

    async def run() -> Answer:
        async with grpc.aio.insecure_channel(server.address, options=options) as channel:
            requests = pair_requests(pair_config(), SONG_A.pcm, SONG_B.pcm)
            call = mixer_pb2_grpc.MixerStub(channel).RenderTransition(_aiter(requests))
            await asyncio.sleep(0.5)
            assert await asyncio.to_thread(_wait_for, lambda: _in_flight(server) == 1, 10.0)
            # Rendered, then stuck on a write the client never takes: given up on in ~1 s.
            released = await asyncio.to_thread(_wait_for, lambda: _in_flight(server) == 0, 15.0)
            assert released, "the mixer still holds the call of a client that reads nothing"
            got: list[Any] = []
            try:
                async for response in call:
                    got.append(response)
            except grpc.aio.AioRpcError as e:
                return Answer(e.code(), e.details() or "", got)
            return Answer(OK, "", got)

    try:
        answer = asyncio.run(run())
    finally:
        server.stop()
    expect(answer, DEADLINE, "accepted no response for 1 s", "SEGUE_MIXER_WRITE_TIMEOUT_S")
    assert 0 < len(answer.responses) < 20  # what the window held, not the whole render


@pytest.fixture(scope="module")
def strict_pace() -> Iterator[MixerThreadServer]:
    server = MixerThreadServer(
        max_upload_s=3.0, min_upload_bytes_per_s=100_000.0, upload_grace_s=0.5
    ).start()
    yield server
    server.stop()


def _dribble(address: str, requests: list[Any], pause_s: float) -> Answer:
    async def run() -> Answer:
        started = time.monotonic()
        async with grpc.aio.insecure_channel(address) as channel:
            rpc = mixer_pb2_grpc.MixerStub(channel).RenderTransition
            try:
                async for _ in rpc(_aiter(requests, pause_s), timeout=30.0):
                    pass
            except grpc.aio.AioRpcError as e:
                return Answer(e.code(), e.details() or "", seconds=time.monotonic() - started)
        return Answer(OK, "", seconds=time.monotonic() - started)

    return asyncio.run(run())


def test_an_upload_that_dribbles_is_ended_with_deadline_exceeded(
    strict_pace: MixerThreadServer,
) -> None:
    config = pair_config()
    trickle = [mixer_pb2.RenderRequest(config=config)] + [
        mixer_pb2.RenderRequest(
            chunk=mixer_pb2.ExcerptChunk(side=mixer_pb2.SIDE_OUTGOING, data=bytes(400))
        )
        for _ in range(100)
    ]
    answer = _dribble(strict_pace.address, trickle, pause_s=0.2)
    expect(answer, DEADLINE, "too slow", "SEGUE_MIXER_MIN_UPLOAD_BYTES_PER_S")
    assert answer.seconds < 3.0  # at the end of the 0.5 s grace, not after 20 s of dribble
    assert _wait_for(lambda: _in_flight(strict_pace) == 0, 5.0)


def test_an_upload_that_never_ends_is_ended_after_the_upload_limit(
    strict_pace: MixerThreadServer,
) -> None:
    # Fast enough for the rate (a whole 1 MiB chunk at once), but the end never comes.
    requests = (
        pair_requests(pair_config(), SONG_A.pcm, SONG_B.pcm)[:-1]
        + [
            mixer_pb2.RenderRequest(
                chunk=mixer_pb2.ExcerptChunk(side=mixer_pb2.SIDE_INCOMING, data=b"")
            )
        ]
        * 100
    )
    answer = _dribble(strict_pace.address, requests, pause_s=0.1)
    expect(answer, DEADLINE, "took over 3 s", "SEGUE_MIXER_MAX_UPLOAD_S")
    assert answer.seconds < 6.0


def test_a_steady_upload_is_not_cut_off(strict_pace: MixerThreadServer) -> None:
    requests = pair_requests(pair_config(), SONG_A.pcm, SONG_B.pcm)
    answer = _dribble(strict_pace.address, requests, pause_s=0.05)
    assert answer.code == OK, answer.details


@pytest.mark.parametrize(
    "setting",
    [{"write_timeout_s": 0.0}, {"max_upload_s": math.nan}, {"min_upload_bytes_per_s": -1.0},
     {"upload_grace_s": 1000.0}, {"max_excerpt_s": math.inf}, {"max_excerpt_bytes": 0}],
)  # fmt: skip
def test_settings_out_of_range_are_refused(setting: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="SEGUE_MIXER_"):
        MixerConfig(**setting)  # type: ignore[arg-type]


# 6. Anything at all: a documented status, never INTERNAL or UNKNOWN.

DOCUMENTED = {OK, INVALID, EXHAUSTED, PRECONDITION, grpc.StatusCode.NOT_FOUND}
EXTREME_FLOATS = [math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, -0.0, 0.0, 1e30, -1.0,
                  3e7, 1e12, 0.5, 4.0, 120.0]  # fmt: skip
EXTREME_INTS = [0, 1, 2, 7, 12, 13, 64, 65, 255, 2**16, 2**31 - 1, 2**31, 2**32 - 1]
floats = st.sampled_from(EXTREME_FLOATS) | st.floats(allow_nan=True, allow_infinity=True)
uints = st.sampled_from(EXTREME_INTS) | st.integers(0, 2**32 - 1)
texts = st.sampled_from(["", "a", "\n", "x" * 3000, "\x00", "tab\there", "é✓"]) | st.text(
    max_size=8
)


AUDIO_VARIANTS = ("garbage", "empty", "odd", "tiny", "silence", "hot", "nan", "flac",
                  "truncated flac")  # fmt: skip


@functools.cache
def audio_variants() -> dict[str, bytes]:
    """Audio a request may carry instead of the click track's PCM, by name."""
    hot = SONG_A.audio.copy()
    hot[::1000] = 1e30
    flac = ffmpeg("-f", "f32le", "-ar", str(RATE_HZ), "-ac", "1", "-i", "pipe:0", "-c:a", "flac",
                  "-f", "flac", "pipe:1", stdin=SONG_A.pcm)  # fmt: skip
    return {
        "garbage": b"\x13\x37not audio at all" * 64,
        "empty": b"",
        "odd": SONG_A.pcm[:-3],
        "tiny": SONG_A.pcm[:40],
        "silence": bytes(len(SONG_A.pcm)),
        "hot": hot.tobytes(),
        "nan": np.full(4096, np.nan, np.float32).tobytes(),
        "flac": flac,
        "truncated flac": flac[: len(flac) // 3],
    }


# Changes to a valid request: each sets one field (or the audio) to a drawn value.
Change = Callable[[Any, dict[str, Any]], None]


def _set_path(message: Any, path: str, value: Any) -> None:
    """Sets `songs.1.exit_s` (a number is an index into a repeated field)."""
    *parents, name = path.split(".")
    for parent in parents:
        message = message[int(parent)] if parent.isdigit() else getattr(message, parent)
    setattr(message, name, value)


def _analysis_changes(path: Callable[[Any], common_pb2.SongAnalysis]) -> st.SearchStrategy[Change]:
    def setter(attr: str, value: Any) -> Change:
        return lambda config, _: _set_path(path(config), attr, value)

    def beat(i: int, t: float) -> Change:
        def change(config: Any, _: dict[str, Any]) -> None:
            beats = path(config).beats
            if beats:
                beats[i % len(beats)].time_s = t

        return change

    def add(repeated: str, **values: Any) -> Change:
        return lambda config, _: getattr(path(config), repeated).add(**values)

    return st.one_of(
        st.builds(setter, st.sampled_from(["tempo.bpm", "tempo.confidence", "tempo.stability",
                                           "key.confidence", "loudness_lufs", "duration_s"]),
                  floats),
        st.builds(setter, st.sampled_from(["key.tonic_pitch_class"]), uints),
        st.builds(setter, st.just("key.mode"), st.integers(-(2**31), 2**31 - 1)),
        st.builds(beat, st.integers(0, 20), floats),
        st.builds(lambda s, e, c: add("sections", start_s=s, end_s=e, confidence=c),
                  floats, floats, floats),
        st.builds(lambda t, e, p, k: add("cue_points", time_s=t, energy=e, phrase_bars=p, kind=k),
                  floats, floats, uints, st.integers(0, 5)),
        st.builds(lambda v: add("segments", start_s=0.0, end_s=1.0, entry=[v]), floats),
        st.builds(lambda v: lambda config, _: path(config).feel.append(v), floats),
        st.builds(lambda n: lambda config, _: [path(config).beats.add(time_s=i / 100)
                                               for i in range(n)], st.integers(0, 500)),
    )  # fmt: skip


def _without_analysis(path: Callable[[Any], Any]) -> st.SearchStrategy[Change]:
    """The analysis left out: the mixer analyses the audio (whatever it is) itself."""
    return st.just(lambda config, _: path(config).ClearField("analysis"))


def _audio_change(key: str) -> st.SearchStrategy[Change]:
    def change(name: str, encoded: bool) -> Change:
        def apply(config: Any, audio: dict[str, Any]) -> None:
            audio[key] = audio_variants()[name]
            info = (
                config.outgoing
                if key == "outgoing"
                else (config.incoming if key == "incoming" else config.songs[int(key)])
            )
            if encoded:
                info.encoded = True

        return apply

    return st.builds(change, st.sampled_from(AUDIO_VARIANTS), st.booleans())


def _format_changes(path: Callable[[Any], common_pb2.AudioFormat]) -> st.SearchStrategy[Change]:
    def change(attr: str, value: int) -> Change:
        return lambda config, _: setattr(path(config), attr, value)

    return st.builds(change, st.sampled_from(["sample_rate_hz", "channels", "sample_format"]),
                     uints)  # fmt: skip


def _field(attr: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[Change]:
    def change(value: Any) -> Change:
        return lambda config, _: _set_path(config, attr, value)

    return st.builds(change, values)


PAIR_CHANGES = st.one_of(
    _field("output_sample_rate_hz", uints),
    _field("target_loudness_lufs", floats),
    _field("context_s", floats),
    _field("mashup_bars", uints),
    _field("output_format", st.integers(0, 6)),
    _field("style.bars", uints),
    _field("style.seconds", floats),
    _field("style.auto", st.booleans()),
    _field("style.curve", st.integers(-3, 5)),
    _field("style.tempo_ramp_bars", uints),
    _field("outgoing.cue_s", floats),
    _field("incoming.cue_s", floats),
    _field("incoming.song_start_s", floats),
    _field("outgoing.song_id", texts),
    _analysis_changes(lambda c: c.outgoing.analysis),
    _analysis_changes(lambda c: c.incoming.analysis),
    _format_changes(lambda c: c.outgoing.pcm),
    _without_analysis(lambda c: c.incoming),
    _audio_change("outgoing"),
    _audio_change("incoming"),
)
MIX_CHANGES = st.one_of(
    _field("songs.0.entry_s", floats),
    _field("songs.1.exit_s", floats),
    _field("songs.1.entry_s", floats),
    _field("songs.0.title", texts),
    _field("songs.1.uri", texts),
    _field("file_name", texts),
    _field("title", texts),
    _field("target_loudness_lufs", floats),
    _field("output_sample_rate_hz", uints),
    _field("style.seconds", floats),
    _field("style.bars", uints),
    _analysis_changes(lambda c: c.songs[0].analysis),
    _analysis_changes(lambda c: c.songs[1].analysis),
    _format_changes(lambda c: c.songs[1].pcm),
    _without_analysis(lambda c: c.songs[0]),
    _audio_change("0"),
    _audio_change("1"),
)


def _mix_config_with(changes: list[Change]) -> tuple[mixer_pb2.MixConfig, list[bytes]]:
    config = mix_config()
    audio = {"0": MIX_PCM[0], "1": MIX_PCM[1]}
    for change in changes:
        _apply(change, config, audio)
    return config, [audio["0"], audio["1"]]


def _apply(change: Change, config: Any, audio: dict[str, Any]) -> None:
    # A value the protobuf field cannot hold is refused by the client library: not sent.
    with contextlib.suppress(ValueError, TypeError, OverflowError):
        change(config, audio)


@dataclass
class Beside:
    """A good render repeated in a thread beside the fuzzing: every answer must be the
    reference's audio, byte for byte."""

    address: str
    reference: bytes
    stop: threading.Event = field(default_factory=threading.Event)
    renders: int = 0
    mismatches: list[str] = field(default_factory=list)

    def run(self) -> None:
        requests = pair_requests(pair_config(), SONG_A.pcm, SONG_B.pcm)
        while not self.stop.is_set():
            answer = call(self.address, "RenderTransition", requests)
            self.renders += 1
            if answer.code != OK or answer.audio != self.reference:
                self.mismatches.append(f"{answer.code.name} {answer.details}")


@pytest.mark.slow
def test_no_request_makes_the_mixer_answer_internal_or_unknown(mixer: MixerThreadServer) -> None:
    reference = call(
        mixer.address, "RenderTransition", pair_requests(pair_config(), SONG_A.pcm, SONG_B.pcm)
    )
    assert reference.code == OK and reference.audio, reference.details
    beside = Beside(mixer.address, reference.audio)
    thread = threading.Thread(target=beside.run, daemon=True)
    seen: list[tuple[str, str]] = []

    @settings(max_examples=25, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(changes=st.lists(PAIR_CHANGES, min_size=1, max_size=3),
           method=st.sampled_from(["RenderTransition", "RenderMashup"]))  # fmt: skip
    def pairs(changes: list[Change], method: str) -> None:
        config = pair_config()
        audio = {"outgoing": SONG_A.pcm, "incoming": SONG_B.pcm}
        for change in changes:
            _apply(change, config, audio)
        answer = call(mixer.address, method,
                      pair_requests(config, audio["outgoing"], audio["incoming"]))  # fmt: skip
        seen.append((answer.code.name, answer.details))
        assert answer.code in DOCUMENTED, (answer.code, answer.details, config)

    @settings(max_examples=12, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(changes=st.lists(MIX_CHANGES, min_size=1, max_size=3))
    def mixes(changes: list[Change]) -> None:
        config, audio = _mix_config_with(changes)
        answer = call(mixer.address, "RenderMix", mix_requests(config, audio))
        seen.append((answer.code.name, answer.details))
        assert answer.code in DOCUMENTED, (answer.code, answer.details, config)

    thread.start()
    try:
        pairs()
        mixes()
    finally:
        beside.stop.set()
        thread.join(timeout=60)
    assert beside.renders >= 1 and beside.mismatches == []
    codes = {code for code, _ in seen}
    assert {"OK", "INVALID_ARGUMENT"} <= codes, seen  # the fuzzing reached renders too
