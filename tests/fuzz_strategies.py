"""Hypothesis strategies for every request of every Segue RPC, and the oracle they are judged by.

Shared by tests/test_fuzz_rpc.py (a bounded run on in-process servers) and bench/bench_fuzz.py
(a long run on real service processes). Every RPC of segue.v1 (`RPCS`, read from the protos'
descriptors) gets three kinds of input (`calls`):

- generic: a request message built from its descriptor, every field drawn from values that
  break naive code (NaN, infinities, +-1e308, denormals, -0.0, integer extremes, empty, huge,
  control-character and non-ASCII strings, random bytes, truncated real audio), repeated fields
  of 0 to a few items (float vectors also at the model's 32 and 64 dimensions), nested messages
  to a depth limit, one member (or none) per oneof; streams are lists of such messages;
- near-valid: a valid request, built from real audio and its real analysis (`Material`), with
  one field changed, cleared or one vector element spoiled, or for streams one message dropped,
  doubled, moved, corrupted or added after `end`; purely random requests rarely get past the
  first check;
- wire: raw bytes sent as the request (`Call.wire`), garbage or valid serialisations with bits
  flipped, cut short, spliced or padded.

Every call is sent as bytes through a generic channel method (`send`), so that a message and
bytes no message could serialise to travel the same way. `DOCUMENTED` holds the status codes
each RPC may answer, from the proto comments and the shared interceptor (segue/interceptor.py:
undecodable bytes are INVALID_ARGUMENT, the per-client stream cap RESOURCE_EXHAUSTED);
UNKNOWN and INTERNAL never are.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import Any, TypeVar

import grpc
import numpy as np
import numpy.typing as npt
from google.protobuf import text_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

from segue.audio import mono_to_pcm
from segue.v1 import common_pb2, embedder_pb2, matcher_pb2, mixer_pb2
from services.matcher.listing import page_token

FloatArray = npt.NDArray[np.float32]
Code = grpc.StatusCode
Metadata = tuple[tuple[str, str | bytes], ...]

# Nested messages deeper than this are left unset (SongAnalysis > Segment is depth 2).
MAX_DEPTH = 3
# A generated message stays under this many serialised bytes (the servers take 4 MiB).
MAX_MESSAGE_BYTES = 1024 * 1024
# Most items of a generated repeated field (messages / scalars); float vectors are also drawn
# at exactly VECTOR_DIMS, the lengths the model's vectors have, to get past dimension checks.
MAX_MESSAGES = 3
MAX_SCALARS = 8
VECTOR_DIMS = (32, 64)
HUGE_STRING_CHARS = (1_000, 4_096, 65_536, 131_072)
HUGE_BYTES = (65_536, 262_144)
# Ids the fuzzer draws; the good streams beside it use ids with another prefix.
FUZZ_ID_PREFIX = "fuzz-"
# Where the resume token of near-valid Analyze streams was taken (the witness's checkpoints).
RESUME_AT_S = 2.0

SPECIAL_FLOATS = (
    math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, -5e-324, -0.0, 0.0, 1.0, -1.0,
    0.5, 2.0, 4.0, 8.0, 16.0, 120.0, 1e9, -1e9, 3.4028234663852886e38,
)
SPECIAL_INTS = (0, 1, 2, 3, 4, 7, 8, 16, 32, 64, 100, 101, 255, 256, 257, 1000, 22050, 44100,
                48000, 65535, 65536)
INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
FLOAT_TYPES = (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE)
# Strings the services give meaning to: camelot codes, filter fields, names of formats.
MEANINGFUL_STRINGS = (
    "8B", "12A", "1A", "13C", "0B", "8", "B8", "song_id", "artist", "album", "genre", "title",
    "extra.mood", "extra.", "tempo_bpm", "energy", "camelot", "section_letter", "kind", "mood",
    "calm", "A", "A'", "mix.mp3", "../../etc/passwd", "http://user:pw@host/x?api_key=k",
)
CONTROL_STRINGS = ("\x00", "\n", "\r\n", "\t", "\x1b[31m", "\x7f", "a\x00b", "\u2028", "\u0085")
# Float32 PCM that no audio holds: NaN, infinities, the largest finite values.
NASTY_PCM = struct.pack("<8f", math.nan, math.inf, -math.inf, 3.4e38, -3.4e38, 1e-45, 0.0, -0.0)
# Finite float32 samples far outside full scale (or denormal), alone or in real audio.
EXTREME_SAMPLES = (3.4e38, -3.4e38, 1e30, -1e30, 1e5, 65.0, -64.5, 1e-38, 1e-45, -0.0)


# ---- the RPCs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rpc:
    """One RPC of segue.v1, as its service descriptor declares it."""

    service: str
    method: str
    request_type: type[Message]
    response_type: type[Message]
    client_streaming: bool
    server_streaming: bool

    @property
    def name(self) -> str:
        return f"{self.service}.{self.method}"

    @property
    def path(self) -> str:
        return f"/segue.v1.{self.service}/{self.method}"


def _rpcs() -> tuple[Rpc, ...]:
    out: list[Rpc] = []
    for module in (embedder_pb2, matcher_pb2, mixer_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            out.extend(
                Rpc(service.name, m.name, GetMessageClass(m.input_type),
                    GetMessageClass(m.output_type), m.client_streaming, m.server_streaming)
                for m in service.methods
            )
    return tuple(out)


RPCS = _rpcs()
BY_NAME = {rpc.name: rpc for rpc in RPCS}
SERVICES = ("Embedder", "Matcher", "Mixer")

# What each RPC may answer, from the proto comments, plus what the interceptor answers for
# every RPC: INVALID_ARGUMENT for bytes that are no request, RESOURCE_EXHAUSTED beyond the
# per-client stream cap (streaming RPCs), UNAUTHENTICATED / PERMISSION_DENIED with auth.
# DEADLINE_EXCEEDED is never listed: the fuzzer's deadlines are far above any RPC's own, so
# it means the call hung. CANCELLED is not either: the fuzzer never cancels a call.
_EVERY_RPC = frozenset({Code.OK, Code.INVALID_ARGUMENT, Code.UNAUTHENTICATED,
                        Code.PERMISSION_DENIED})
_MATCHER = _EVERY_RPC | {Code.NOT_FOUND, Code.UNAVAILABLE}
# Only the matcher's expensive calls queue, and refuse beyond their queue.
_MATCHER_HEAVY = _MATCHER | {Code.RESOURCE_EXHAUSTED}
_MIXER = _EVERY_RPC | {Code.NOT_FOUND, Code.FAILED_PRECONDITION, Code.UNAVAILABLE,
                       Code.RESOURCE_EXHAUSTED}
DOCUMENTED: dict[str, frozenset[Code]] = {
    "Embedder.Analyze": _EVERY_RPC | {Code.FAILED_PRECONDITION, Code.RESOURCE_EXHAUSTED,
                                      Code.UNAVAILABLE},
    "Embedder.EmbedClip": _EVERY_RPC | {Code.RESOURCE_EXHAUSTED, Code.UNAVAILABLE},
    "Embedder.ModelInfo": _EVERY_RPC,
    **{rpc.name: _MATCHER for rpc in RPCS if rpc.service == "Matcher"},
    "Matcher.PlanPlaylist": _MATCHER_HEAVY,
    "Matcher.Cluster": _MATCHER_HEAVY,
    **{rpc.name: _MIXER for rpc in RPCS if rpc.service == "Mixer"},
}
NEVER = frozenset({Code.UNKNOWN, Code.INTERNAL})


# ---- what requests are made of --------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Material:
    """Real audio and its real analysis, the stuff of valid requests.

    `pcm` is a mono float32 clip at `rate_hz` (a few seconds of a real song), `analysis` the
    embedder's analysis of exactly that clip, `encoded` a real encoded file (cut short in
    requests), `stored_ids` songs the matcher holds, `resume_token` a checkpoint's token of
    an Analyze stream of the clip (song `resume_song_id`, 2 s in).
    """

    pcm: FloatArray
    rate_hz: int
    analysis: common_pb2.SongAnalysis
    encoded: bytes
    stored_ids: tuple[str, ...]
    # A real checkpoint's resume token of an Analyze stream of this clip, and its song id.
    resume_token: bytes = b""
    resume_song_id: str = ""

    def __repr__(self) -> str:
        return (f"Material({self.pcm.size / self.rate_hz:.1f} s at {self.rate_hz} Hz, "
                f"song {self.analysis.song_id!r}, stored {self.stored_ids})")

    @cached_property
    def f32(self) -> bytes:
        return mono_to_pcm(self.pcm, common_pb2.SAMPLE_FORMAT_F32LE)

    @property
    def audio_format(self) -> common_pb2.AudioFormat:
        return common_pb2.AudioFormat(sample_rate_hz=self.rate_hz, channels=1,
                                      sample_format=common_pb2.SAMPLE_FORMAT_F32LE)

    def seconds(self, start_s: float, length_s: float) -> bytes:
        """F32LE bytes of the clip from `start_s` for `length_s` seconds."""
        a, n = int(start_s * self.rate_hz), int(length_s * self.rate_hz)
        return mono_to_pcm(self.pcm[a:a + n], common_pb2.SAMPLE_FORMAT_F32LE)


def seed_analyses(analysis: common_pb2.SongAnalysis, count: int,
                  prefix: str = FUZZ_ID_PREFIX + "seed-") -> list[common_pb2.SongAnalysis]:
    """`count` storable songs made from one analysis: ids `<prefix><i>`, each feel and
    transition vector turned a little (deterministically) so that the songs differ."""
    rng = np.random.default_rng(7)
    out = []
    for i in range(count):
        song = common_pb2.SongAnalysis()
        song.CopyFrom(analysis)
        song.song_id = f"{prefix}{i}"
        song.ClearField("feel")
        song.feel.extend(_turned(np.asarray(analysis.feel), rng))
        for segment in song.segments:
            for vector in (segment.entry, segment.exit):
                turned = _turned(np.asarray(vector), rng)
                del vector[:]
                vector.extend(turned)
        out.append(song)
    return out


def _turned(vector: npt.NDArray[np.float64], rng: np.random.Generator) -> list[float]:
    moved = vector + 0.3 * rng.normal(size=vector.size) * (np.linalg.norm(vector) or 1.0)
    return [float(v) for v in moved / (np.linalg.norm(moved) or 1.0)]


# ---- values of each field type -----------------------------------------------------------


def float_values() -> st.SearchStrategy[float]:
    return st.one_of(st.sampled_from(SPECIAL_FLOATS), st.floats(-1e3, 1e3),
                     st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True))


def int_values(lo: int, hi: int) -> st.SearchStrategy[int]:
    edges = sorted({v for v in (lo, lo + 1, -1, hi - 1, hi, *SPECIAL_INTS) if lo <= v <= hi})
    return st.one_of(st.sampled_from(edges), st.integers(lo, hi), st.integers(0, 300))


# Characters a protobuf string can hold (no lone surrogates: they have no UTF-8 encoding).
UTF8 = st.characters(codec="utf-8")


def string_values(material: Material) -> st.SearchStrategy[str]:
    ids = (*material.stored_ids, FUZZ_ID_PREFIX + "0", "x" * 256, "x" * 257, "x" * 512,
           "x" * 513)
    return st.one_of(
        st.just(""),
        st.sampled_from(ids),
        st.sampled_from(MEANINGFUL_STRINGS),
        st.sampled_from(CONTROL_STRINGS),
        st.text(UTF8, max_size=24),
        st.text(st.characters(min_codepoint=0x80, codec="utf-8"), max_size=24),
        st.text(st.characters(max_codepoint=0x1F), min_size=1, max_size=8),
        st.sampled_from(HUGE_STRING_CHARS).map(lambda n: "é" * n),
    )


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def token_values(token: bytes) -> st.SearchStrategy[bytes]:
    """A real resume token, whole, with one bit flipped, or cut short."""
    if not token:
        return st.just(b"")
    return st.one_of(st.just(token),
                     st.integers(0, 8 * len(token) - 1).map(lambda bit: _flip(token, bit)),
                     st.integers(0, len(token) - 1).map(lambda n: token[:n]))


def bytes_values(material: Material) -> st.SearchStrategy[bytes]:
    f32 = material.f32
    return st.one_of(
        st.just(b""),
        token_values(material.resume_token),
        st.binary(max_size=512),
        st.just(NASTY_PCM),
        st.integers(1, 64 * 1024).map(lambda n: material.encoded[:n]),
        st.tuples(st.integers(0, len(f32) // 4), st.integers(0, 2 * material.rate_hz * 4)).map(
            lambda ab: f32[ab[0] * 4:ab[0] * 4 + ab[1]]),
        st.sampled_from(HUGE_BYTES).map(lambda n: b"\x00" * n),
        extreme_pcm(material),
    )


def extreme_pcm(material: Material) -> st.SearchStrategy[bytes]:
    """F32LE PCM of one extreme sample value, or a second of the real clip with one sample
    replaced by an extreme value."""
    rate = material.rate_hz
    constant = st.tuples(st.sampled_from(EXTREME_SAMPLES),
                         st.sampled_from((1, 3, 1000, rate, 2 * rate))).map(
        lambda vn: np.full(vn[1], vn[0], dtype="<f4").tobytes())

    def spoiled(value_at: tuple[float, int]) -> bytes:
        audio = material.pcm[:rate].astype("<f4")
        audio[value_at[1]] = value_at[0]
        return audio.tobytes()

    one = st.tuples(st.sampled_from(EXTREME_SAMPLES), st.integers(0, rate - 1)).map(spoiled)
    return st.one_of(constant, one)


def enum_values(f: FieldDescriptor) -> st.SearchStrategy[int]:
    assert f.enum_type is not None
    defined = [v.number for v in f.enum_type.values]
    return st.sampled_from([*defined, -1, max(defined) + 1, 99, 2**31 - 1])


def _scalar(f: FieldDescriptor, material: Material) -> st.SearchStrategy[Any]:
    if f.type in FLOAT_TYPES:
        return float_values()
    if f.type in INT_RANGES:
        return int_values(*INT_RANGES[f.type])
    if f.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if f.type == FieldDescriptor.TYPE_ENUM:
        return enum_values(f)
    if f.type == FieldDescriptor.TYPE_STRING:
        return string_values(material)
    if f.type == FieldDescriptor.TYPE_BYTES:
        return bytes_values(material)
    raise TypeError(f"no strategy for field {f.full_name} of type {f.type}")


def _is_map(f: FieldDescriptor) -> bool:
    return f.message_type is not None and f.message_type.GetOptions().map_entry


def field_values(f: FieldDescriptor, material: Material, depth: int) -> st.SearchStrategy[Any]:
    """Values for field `f` of a message at `depth`: a list for repeated fields, a dict for
    maps (string to string in segue.v1)."""
    if _is_map(f):
        text = string_values(material)
        return st.dictionaries(text, text, max_size=4)
    if f.message_type is not None:
        one: st.SearchStrategy[Any] = messages(f.message_type, material, depth + 1)
    else:
        one = _scalar(f, material)
    if not f.is_repeated:
        return one
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        return st.lists(one, max_size=MAX_MESSAGES if depth < 2 else 1)
    lists = [st.lists(one, max_size=MAX_SCALARS)]
    if f.type in FLOAT_TYPES:
        near_unit = st.one_of(st.floats(-1.0, 1.0), float_values())
        lists += [st.lists(near_unit, min_size=d, max_size=d) for d in VECTOR_DIMS]
    return st.one_of(lists)


def set_field(message: Message, f: FieldDescriptor, value: Any) -> None:
    """Sets field `f` of `message` to `value` (a list for repeated fields, a dict for maps)."""
    if _is_map(f):
        getattr(message, f.name).update(value)
    elif f.is_repeated:
        getattr(message, f.name).extend(value)
    elif f.type == FieldDescriptor.TYPE_MESSAGE:
        getattr(message, f.name).CopyFrom(value)
    else:
        setattr(message, f.name, value)


def _real_oneofs(descriptor: Descriptor) -> list[Any]:
    """The message's oneofs, without the synthetic ones of proto3 `optional` fields."""
    return [o for o in descriptor.oneofs
            if not (len(o.fields) == 1 and o.name == "_" + o.fields[0].name)]


def messages(descriptor: Descriptor, material: Material,
             depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of `descriptor`'s type with any subset of fields set (generic)."""
    return _messages(descriptor, material, depth)


@cache
def _messages(descriptor: Descriptor, material: Material, depth: int) -> st.SearchStrategy[Any]:
    cls = GetMessageClass(descriptor)
    if depth > MAX_DEPTH:
        return st.builds(cls)
    groups = _real_oneofs(descriptor)
    in_groups = {f.name for o in groups for f in o.fields}
    plain = {f.name: st.none() | field_values(f, material, depth)
             for f in descriptor.fields if f.name not in in_groups}
    chosen = [st.none() | st.one_of([st.tuples(st.just(f.name), field_values(f, material, depth))
                                     for f in o.fields]) for o in groups]

    def build(values: dict[str, Any], picks: tuple[tuple[str, Any] | None, ...]) -> Message:
        out = cls()
        settings = [*values.items(), *(p for p in picks if p is not None)]
        for name, value in settings:
            if value is not None:
                set_field(out, descriptor.fields_by_name[name], value)
        return out

    return st.builds(build, st.fixed_dictionaries(plain), st.tuples(*chosen))


# ---- valid requests, and one change to them ----------------------------------------------


M = TypeVar("M", bound=Message)


def _copy(message: M) -> M:
    out = type(message)()
    out.CopyFrom(message)
    return out


def valid_streams(rpc: Rpc, material: Material) -> list[list[Message]]:
    """Streams every server accepts: a config, audio chunks, an end; for Analyze also a
    stream resumed from a real checkpoint, for renders also excerpts as encoded files."""
    if rpc.name == "Embedder.Analyze":
        streams = [_analyze_stream(material, FUZZ_ID_PREFIX + "stream", b"", 0.0)]
        if material.resume_token:
            streams.append(_analyze_stream(material, material.resume_song_id,
                                           material.resume_token, RESUME_AT_S))
        return streams
    encoded = _copy_stream(valid_stream(rpc, material))
    config = encoded[0].config  # type: ignore[attr-defined]
    infos = ([s for s in config.songs] if rpc.name == "Mixer.RenderMix"
             else [config.outgoing, config.incoming])
    for info in infos:
        info.encoded = True
    for chunk in encoded[1:-1]:
        chunk.chunk.data = material.encoded  # type: ignore[attr-defined]
    return [valid_stream(rpc, material), encoded]


def _copy_stream(stream: list[Message]) -> list[Message]:
    return [_copy(m) for m in stream]


def _analyze_stream(material: Material, song_id: str, token: bytes,
                    start_s: float) -> list[Message]:
    config = embedder_pb2.StreamConfig(song_id=song_id, format=material.audio_format,
                                       resume_token=token)
    return [embedder_pb2.AnalyzeRequest(config=config),
            *(embedder_pb2.AnalyzeRequest(chunk=embedder_pb2.AudioChunk(
                pcm=material.seconds(start_s + s, 1.0))) for s in (0.0, 1.0)),
            embedder_pb2.AnalyzeRequest(end=embedder_pb2.EndOfStream())]


def valid_stream(rpc: Rpc, material: Material) -> list[Message]:
    """A stream every server accepts: config, audio chunks, end (shortened real audio)."""
    if rpc.name == "Embedder.Analyze":
        return _analyze_stream(material, FUZZ_ID_PREFIX + "stream", b"", 0.0)
    if rpc.name == "Mixer.RenderMix":
        mix = mixer_pb2.MixConfig(
            songs=[mixer_pb2.MixSong(song_id=material.stored_ids[i], pcm=material.audio_format,
                                     analysis=material.analysis) for i in range(2)],
            style=mixer_pb2.TransitionStyle(seconds=2.0),
            output_format=mixer_pb2.OUTPUT_FORMAT_WAV)
        pcm = material.f32
        return [mixer_pb2.RenderMixRequest(config=mix),
                *(mixer_pb2.RenderMixRequest(chunk=mixer_pb2.MixChunk(song_index=i, data=pcm))
                  for i in range(2)),
                mixer_pb2.RenderMixRequest(end=mixer_pb2.EndOfInput())]
    excerpt = mixer_pb2.ExcerptInfo(pcm=material.audio_format, analysis=material.analysis,
                                    song_id=material.stored_ids[0])
    render = mixer_pb2.RenderConfig(
        outgoing=excerpt, incoming=excerpt, style=mixer_pb2.TransitionStyle(seconds=2.0),
        output_format=mixer_pb2.OUTPUT_FORMAT_WAV, context_s=1.0, mashup_bars=1)
    return [mixer_pb2.RenderRequest(config=render),
            *(mixer_pb2.RenderRequest(chunk=mixer_pb2.ExcerptChunk(side=side, data=material.f32))
              for side in (mixer_pb2.SIDE_OUTGOING, mixer_pb2.SIDE_INCOMING)),
            mixer_pb2.RenderRequest(end=mixer_pb2.EndOfInput())]


def valid_requests(rpc: Rpc, material: Material) -> list[Message]:
    """Unary requests the server answers with OK (given material.stored_ids are stored): for
    most RPCs a second form too (raw vectors instead of a stored song, S16LE audio, ...)."""
    ids = material.stored_ids
    song = matcher_pb2.SongPosition(song_id=ids[0], song_end=True)
    analysis = _copy(material.analysis)
    analysis.song_id = FUZZ_ID_PREFIX + "upserted"
    segment = material.analysis.segments[0]
    raw = matcher_pb2.RawQuery(exit=segment.exit, feel=material.analysis.feel,
                               tempo_bpm=material.analysis.tempo.bpm, key=material.analysis.key,
                               energy=segment.energy)
    s16 = common_pb2.AudioFormat(sample_rate_hz=material.rate_hz, channels=1,
                                 sample_format=common_pb2.SAMPLE_FORMAT_S16LE)
    requests: dict[str, Callable[[], list[Message]]] = {
        "Embedder.EmbedClip": lambda: [
            embedder_pb2.EmbedClipRequest(format=material.audio_format,
                                          pcm=material.seconds(0.0, 2.0)),
            embedder_pb2.EmbedClipRequest(format=s16, pcm=mono_to_pcm(
                material.pcm[:3 * material.rate_hz], common_pb2.SAMPLE_FORMAT_S16LE))],
        "Embedder.ModelInfo": lambda: [embedder_pb2.ModelInfoRequest()],
        "Matcher.UpsertSong": lambda: [matcher_pb2.UpsertSongRequest(
            analysis=analysis, metadata=matcher_pb2.SongMetadata(
                title="t", artist="a", genre="g", extra={"mood": "calm"}, uri="/a.flac"))],
        "Matcher.DeleteSong": lambda: [matcher_pb2.DeleteSongRequest(song_id=ids[-1])],
        "Matcher.GetSong": lambda: [matcher_pb2.GetSongRequest(song_id=ids[0], with_vectors=True),
                                    matcher_pb2.GetSongRequest(song_id=ids[1])],
        "Matcher.ListSongs": lambda: [
            matcher_pb2.ListSongsRequest(page_size=2, with_vectors=True),
            matcher_pb2.ListSongsRequest(
                page_size=3, page_token=page_token(ids[0]), filter=matcher_pb2.Filter(
                    exclude_artists=["nobody"], conditions=[matcher_pb2.PayloadCondition(
                        field="song_id", any_of=matcher_pb2.StringList(values=ids[1:]))]))],
        "Matcher.NextSegment": lambda: [
            matcher_pb2.NextSegmentRequest(
                position=song, k=5, filter=matcher_pb2.Filter(exclude_artists=["nobody"]),
                weights=matcher_pb2.ScoreWeights(feel=0.3)),
            matcher_pb2.NextSegmentRequest(
                vectors=raw, k=3, allow_multiple_per_song=True, filter=matcher_pb2.Filter(
                    tempo_range=matcher_pb2.TempoRange(min_bpm=60.0, max_bpm=200.0),
                    conditions=[matcher_pb2.PayloadCondition(field="genre", equals="g")]))],
        "Matcher.SimilarSongs": lambda: [
            matcher_pb2.SimilarSongsRequest(song_id=ids[0], k=3),
            matcher_pb2.SimilarSongsRequest(
                feel=matcher_pb2.FloatList(values=material.analysis.feel), k=2)],
        "Matcher.PlanPlaylist": lambda: [
            matcher_pb2.PlanPlaylistRequest(seed_song_ids=[ids[0]], num_songs=3,
                                            energy_curve=[0.2, 0.8], beam_width=2),
            matcher_pb2.PlanPlaylistRequest(seed_song_ids=[ids[1], ids[2]], duration_s=30.0,
                                            weights=matcher_pb2.ScoreWeights(tempo=0.5))],
        "Matcher.Cluster": lambda: [
            matcher_pb2.ClusterRequest(num_clusters=2, seed=1),
            matcher_pb2.ClusterRequest(filter=matcher_pb2.Filter(exclude_song_ids=[ids[0]]))],
    }
    return requests[rpc.name]()


def _fields_of(message: Message) -> list[tuple[Message, Any, int]]:
    """Every (message, field, depth) of `message` and of its set sub-messages (the first two
    items of repeated ones): the places one change can go."""
    out: list[tuple[Message, Any, int]] = []

    def walk(m: Message, depth: int) -> None:
        fields: list[Any] = list(m.DESCRIPTOR.fields)
        for f in fields:
            out.append((m, f, depth))
            if f.type != FieldDescriptor.TYPE_MESSAGE or _is_map(f) or depth >= MAX_DEPTH:
                continue
            if f.is_repeated:
                for item in list(getattr(m, f.name))[:2]:
                    walk(item, depth + 1)
            elif m.HasField(f.name):
                walk(getattr(m, f.name), depth + 1)

    walk(message, 0)
    return out


@st.composite
def one_field_changed(draw: st.DrawFn, valid: Message, material: Material) -> Message:
    """`valid` with one field set to a drawn value, cleared, or one vector item spoiled."""
    out = _copy(valid)
    places = _fields_of(out)
    if not places:  # a message without fields (ModelInfoRequest) has nothing to change
        return out
    parent, f, depth = places[draw(st.integers(0, len(places) - 1))]
    how = draw(st.sampled_from(("set", "clear", "item")))
    items = getattr(parent, f.name) if f.is_repeated and not _is_map(f) else None
    if how == "item" and items and f.type in FLOAT_TYPES:
        items[draw(st.integers(0, len(items) - 1))] = draw(st.sampled_from(SPECIAL_FLOATS))
        return out
    parent.ClearField(f.name)
    if how != "clear":
        set_field(parent, f, draw(field_values(f, material, depth)))
    return out


# How a valid stream is spoiled; changing one field of one message is the likeliest.
STREAM_CHANGES = ("change", "change", "change", "change", "drop", "double", "move", "insert",
                  "after_end")


@st.composite
def stream_changed(draw: st.DrawFn, valids: list[list[Message]], material: Material,
                   generic: st.SearchStrategy[Message]) -> list[Message]:
    """One of the valid streams with one message changed, dropped, doubled, moved, or one
    added."""
    valid = valids[draw(st.integers(0, len(valids) - 1))]
    out = _copy_stream(valid)
    i = draw(st.integers(0, len(out) - 1))
    how = draw(st.sampled_from(STREAM_CHANGES))
    if how == "change":
        out[i] = draw(one_field_changed(out[i], material))
    elif how == "drop":
        del out[i]
    elif how == "double":
        out.insert(i, _copy(out[i]))
    elif how == "move":
        out.insert(draw(st.integers(0, len(out) - 1)), out.pop(i))
    elif how == "insert":
        out.insert(i, draw(generic))
    else:
        out.append(draw(st.sampled_from(valid)))
    return out


# ---- raw wire bytes ---------------------------------------------------------------------------


# Bytes no request message parses from: a length past the end (twice), a varint of 11 bytes,
# an end-group tag with no group, wire type 7 (there is none), a length cut short.
UNPARSEABLE = (
    b"\x0a\xff\xff\xff\xff\x0f",
    b"\x0a\x05abc",
    b"\x08" + b"\xff" * 10 + b"\x01",
    b"\x0c",
    b"\x0f",
    b"\x12\x80",
)
# Odd bytes some messages parse from and others not: field number 0, deep nesting.
ODD_BYTES = (b"\x00\x00", b"\x00", b"\x08\x00" * 64)

def _deeply_nested(levels: int) -> bytes:
    data = b""
    for _ in range(levels):
        data = b"\x0a" + _varint(len(data)) + data
    return data


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


@st.composite
def mangled(draw: st.DrawFn, valid: bytes, other: bytes) -> bytes:
    """A valid serialisation with bits flipped, cut short, spliced with another, padded with
    random bytes or with a string's bytes made invalid UTF-8."""
    how = draw(st.sampled_from(("flip", "cut", "splice", "insert", "utf8", "append")))
    data = bytearray(valid)
    if how == "flip" and data:
        for _ in range(draw(st.integers(1, 4))):
            bit = draw(st.integers(0, 8 * len(data) - 1))
            data[bit // 8] ^= 1 << (bit % 8)
    elif how == "cut":
        del data[draw(st.integers(0, len(data))):]
    elif how == "splice":
        data = data[:draw(st.integers(0, len(data)))] + other[draw(st.integers(0, len(other))):]
    elif how == "insert":
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(min_size=1, max_size=16))
    elif how == "utf8":
        data = bytearray(b"\x0a\x03\xff\xfe\xfd") + data  # field 1 as a string: invalid UTF-8
    else:
        data += draw(st.binary(min_size=1, max_size=32))
    return bytes(data)


def garbage() -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=256), st.sampled_from(UNPARSEABLE + ODD_BYTES),
                     st.integers(2, 300).map(_deeply_nested))


# ---- calls ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """What one call sends: its RPC, how it was made, and its request message(s) as bytes on
    the wire (one for a unary request, any number for a stream)."""

    rpc: Rpc
    kind: str
    wire: tuple[bytes, ...]
    messages: tuple[Message, ...] | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        if self.messages is not None:
            shown = [_short(text_format.MessageToString(m, as_one_line=True))
                     or "<empty>" for m in self.messages]
        else:
            shown = [_short(repr(b)) for b in self.wire]
        return f"Call({self.rpc.name}, {self.kind}, [{'; '.join(shown)}])"


def _short(text: str, limit: int = 600) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def message_call(rpc: Rpc, kind: str, items: Sequence[Message]) -> Call:
    return Call(rpc, kind, tuple(m.SerializeToString() for m in items), tuple(items))


def _small(items: Sequence[Message]) -> bool:
    return all(m.ByteSize() < MAX_MESSAGE_BYTES for m in items)


def generic_calls(rpc: Rpc, material: Material) -> st.SearchStrategy[Call]:
    """Requests of `rpc` built from its descriptor (a stream: a list of such messages)."""
    descriptor: Any = rpc.request_type.DESCRIPTOR
    generic = messages(descriptor, material)
    if rpc.client_streaming:
        made = st.lists(generic, max_size=5).map(lambda ms: message_call(rpc, "generic", ms))
    else:
        made = generic.map(lambda m: message_call(rpc, "generic", [m]))
    return made.filter(lambda c: c.messages is None or _small(c.messages))


def near_valid_calls(rpc: Rpc, material: Material) -> st.SearchStrategy[Call]:
    """A valid request of `rpc` with one change (a stream: one message changed or moved)."""
    if rpc.client_streaming:
        descriptor: Any = rpc.request_type.DESCRIPTOR
        changed = stream_changed(valid_streams(rpc, material), material,
                                 messages(descriptor, material, MAX_DEPTH - 1))
        made = changed.map(lambda ms: message_call(rpc, "near-valid", ms))
    else:
        bases = valid_requests(rpc, material)
        made = st.sampled_from(bases).flatmap(lambda base: one_field_changed(base, material)).map(
            lambda m: message_call(rpc, "near-valid", [m]))
    return made.filter(lambda c: c.messages is None or _small(c.messages))


def wire_calls(rpc: Rpc, material: Material) -> st.SearchStrategy[Call]:
    """Raw bytes as `rpc`'s request(s): garbage, or valid serialisations mangled; a stream
    is a valid one with one message replaced so, or a few such messages alone."""
    if rpc.client_streaming:
        streams = [[m.SerializeToString() for m in stream]
                   for stream in valid_streams(rpc, material)]
    else:
        streams = [[m.SerializeToString()] for m in valid_requests(rpc, material)]
    valid = [m for stream in streams for m in stream]
    first = valid[0]
    one = st.one_of(garbage(), st.sampled_from(valid).flatmap(lambda v: mangled(v, first)))
    if not rpc.client_streaming:
        return one.map(lambda b: Call(rpc, "wire", (b,)))

    @st.composite
    def stream(draw: st.DrawFn) -> Call:
        out = list(streams[draw(st.integers(0, len(streams) - 1))])
        out[draw(st.integers(0, len(out) - 1))] = draw(one)
        return Call(rpc, "wire", tuple(out))

    return st.one_of(stream(), st.lists(one, min_size=1, max_size=3).map(
        lambda bs: Call(rpc, "wire", tuple(bs))))


KINDS = ("generic", "near-valid", "wire")


def calls(rpc: Rpc, material: Material,
          kinds: Sequence[str] = KINDS) -> st.SearchStrategy[Call]:
    """Requests of `rpc` of the given kinds: near-valid ones twice as often as the others
    (they reach furthest into the services)."""
    made = {"generic": generic_calls, "near-valid": near_valid_calls, "wire": wire_calls}
    weights = {"generic": 1, "near-valid": 2, "wire": 1}
    return st.one_of([made[k](rpc, material) for k in kinds for _ in range(weights[k])])


# ---- sending, and judging the answer -----------------------------------------------------


@dataclass
class Outcome:
    """How a call ended: its status, the server's message, how long it took, what came back."""

    code: Code
    details: str
    elapsed_s: float
    responses: list[bytes] = field(default_factory=list)

    @property
    def hung(self) -> bool:
        return self.code == Code.DEADLINE_EXCEEDED


def send(channel: grpc.Channel, call: Call, timeout_s: float,
         metadata: Metadata | None = None) -> Outcome:
    """Sends `call`'s bytes as they are (a generic call: no serialiser) with a deadline."""
    rpc = call.rpc
    started = time.perf_counter()
    kwargs: dict[str, Any] = {"timeout": timeout_s, "metadata": metadata}
    try:
        if rpc.client_streaming:
            method = channel.stream_stream(rpc.path, request_serializer=None,
                                           response_deserializer=None)
            responses = list(method(iter(call.wire), **kwargs))
        elif rpc.server_streaming:
            unary_stream = channel.unary_stream(rpc.path, request_serializer=None,
                                                response_deserializer=None)
            responses = list(unary_stream(call.wire[0], **kwargs))
        else:
            unary = channel.unary_unary(rpc.path, request_serializer=None,
                                        response_deserializer=None)
            responses = [unary(call.wire[0], **kwargs)]
    except grpc.RpcError as e:
        failed: Any = e
        return Outcome(failed.code(), failed.details() or "", time.perf_counter() - started)
    return Outcome(Code.OK, "", time.perf_counter() - started, responses)


def problems(call: Call, outcome: Outcome) -> list[str]:
    """What is wrong with how `call` was answered: a hang, an undocumented status (UNKNOWN and
    INTERNAL above all), or a response that is no valid response message."""
    rpc = call.rpc
    found = []
    if outcome.hung:
        found.append(f"{rpc.name} hung: no answer within the deadline "
                     f"({outcome.elapsed_s:.1f} s)")
    elif outcome.code not in DOCUMENTED[rpc.name]:
        found.append(f"{rpc.name} answered {outcome.code.name} ({outcome.details!r}), "
                     "which its documentation does not allow")
    for data in outcome.responses:
        try:
            rpc.response_type.FromString(data)
        except DecodeError:
            found.append(f"{rpc.name} sent a response that is not a valid "
                         f"{rpc.response_type.__name__}")
            break
    return found


def iter_rpcs(service: str | None = None) -> Iterator[Rpc]:
    return (r for r in RPCS if service is None or r.service == service)


# ---- good streams beside the fuzzing --------------------------------------------------------

WITNESS_PREFIX = "reference-"
WITNESS_TIMEOUT_S = 120.0


def _same(a: Sequence[Message], b: Sequence[Message]) -> bool:
    """Equal messages, byte for byte (NaN equals NaN, -0.0 differs from 0.0)."""
    return [m.SerializeToString(deterministic=True) for m in a] == [
        m.SerializeToString(deterministic=True) for m in b]


class Witness:
    """Good requests sent beside the fuzzing, whose answers must not change: an Analyze stream
    of a real clip, an UpsertSong and GetSong of its analysis, a RenderTransition of it.

    `take_reference` runs them once (twice for the matcher: the second upsert replaces the
    first, as every later one does); `check` runs them again and names every answer that
    differs from the reference. Only resume tokens (sealed with a random nonce) and the render
    speed (a wall-clock figure) are left out of the comparison.
    """

    def __init__(self, channels: dict[str, grpc.Channel], pcm: FloatArray, rate_hz: int,
                 metadata: Metadata | None = None) -> None:
        self.channels = channels
        self.pcm = pcm
        self.rate_hz = rate_hz
        self.metadata = metadata
        self.reference: dict[str, list[Message]] = {}
        self.analysis = common_pb2.SongAnalysis()
        self.rounds = 0
        self.mismatches: list[str] = []
        # The first checkpoint's token (RESUME_AT_S into the clip), for near-valid requests.
        self.song_id = WITNESS_PREFIX + "analyze"
        self.resume_token = b""

    def _stream(self, service: str, method: str, requests: list[Message],
                response: type[Message]) -> list[Message]:
        call = self.channels[service].stream_stream(
            f"/segue.v1.{service}/{method}", request_serializer=None,
            response_deserializer=response.FromString)
        return list(call(iter([r.SerializeToString() for r in requests]),
                         timeout=WITNESS_TIMEOUT_S, metadata=self.metadata))

    def _unary(self, service: str, method: str, request: Message,
               response: type[Message]) -> Message:
        call = self.channels[service].unary_unary(
            f"/segue.v1.{service}/{method}", request_serializer=None,
            response_deserializer=response.FromString)
        out: Message = call(request.SerializeToString(), timeout=WITNESS_TIMEOUT_S,
                            metadata=self.metadata)
        return out

    def analyze(self) -> list[Message]:
        fmt = common_pb2.AudioFormat(sample_rate_hz=self.rate_hz, channels=1,
                                     sample_format=common_pb2.SAMPLE_FORMAT_F32LE)
        config = embedder_pb2.StreamConfig(song_id=self.song_id, format=fmt,
                                           checkpoint_interval_s=RESUME_AT_S)
        requests: list[Message] = [embedder_pb2.AnalyzeRequest(config=config)]
        for start in range(0, self.pcm.size, self.rate_hz):
            pcm = mono_to_pcm(self.pcm[start:start + self.rate_hz], fmt.sample_format)
            requests.append(embedder_pb2.AnalyzeRequest(chunk=embedder_pb2.AudioChunk(pcm=pcm)))
        requests.append(embedder_pb2.AnalyzeRequest(end=embedder_pb2.EndOfStream()))
        responses = self._stream("Embedder", "Analyze", requests, embedder_pb2.AnalyzeResponse)
        for r in responses:
            if isinstance(r, embedder_pb2.AnalyzeResponse) and r.HasField("checkpoint"):
                if not self.resume_token and r.checkpoint.position_s == RESUME_AT_S:
                    self.resume_token = r.checkpoint.resume_token
                r.checkpoint.resume_token = b""
        return responses

    def store(self) -> list[Message]:
        song = _copy(self.analysis)
        song.song_id = WITNESS_PREFIX + "song"
        upsert = matcher_pb2.UpsertSongRequest(
            analysis=song, metadata=matcher_pb2.SongMetadata(title="reference"))
        return [self._unary("Matcher", "UpsertSong", upsert, matcher_pb2.UpsertSongResponse),
                self._unary("Matcher", "GetSong", matcher_pb2.GetSongRequest(
                    song_id=song.song_id, with_vectors=True), matcher_pb2.StoredSong)]

    def render(self) -> list[Message]:
        fmt = common_pb2.AudioFormat(sample_rate_hz=self.rate_hz, channels=1,
                                     sample_format=common_pb2.SAMPLE_FORMAT_F32LE)
        excerpt = mixer_pb2.ExcerptInfo(pcm=fmt, analysis=self.analysis)
        config = mixer_pb2.RenderConfig(
            outgoing=excerpt, incoming=excerpt, style=mixer_pb2.TransitionStyle(seconds=2.0),
            output_format=mixer_pb2.OUTPUT_FORMAT_WAV, context_s=1.0)
        pcm = mono_to_pcm(self.pcm, fmt.sample_format)
        requests: list[Message] = [
            mixer_pb2.RenderRequest(config=config),
            *(mixer_pb2.RenderRequest(chunk=mixer_pb2.ExcerptChunk(side=side, data=pcm))
              for side in (mixer_pb2.SIDE_OUTGOING, mixer_pb2.SIDE_INCOMING)),
            mixer_pb2.RenderRequest(end=mixer_pb2.EndOfInput())]
        responses = self._stream("Mixer", "RenderTransition", requests,
                                 mixer_pb2.RenderResponse)
        for r in responses:
            if isinstance(r, mixer_pb2.RenderResponse) and r.HasField("report"):
                r.report.render_speed_x_realtime = 0.0
        return responses

    def operations(self) -> dict[str, Callable[[], list[Message]]]:
        return {"Embedder.Analyze": self.analyze, "Matcher.UpsertSong+GetSong": self.store,
                "Mixer.RenderTransition": self.render}

    def take_reference(self) -> None:
        """Runs every good request once (the store twice) and keeps the answers."""
        self.reference["Embedder.Analyze"] = self.analyze()
        last = self.reference["Embedder.Analyze"][-1]
        assert isinstance(last, embedder_pb2.AnalyzeResponse) and last.HasField("analysis")
        self.analysis.CopyFrom(last.analysis)
        self.store()
        self.reference["Matcher.UpsertSong+GetSong"] = self.store()
        self.reference["Mixer.RenderTransition"] = self.render()

    def check(self, only: Sequence[str] | None = None) -> list[str]:
        """Runs the good requests (or `only` those named) once; returns what differed."""
        found = []
        for name, operation in self.operations().items():
            if only is not None and name not in only:
                continue
            try:
                answers = operation()
            except grpc.RpcError as e:
                failed: Any = e
                found.append(f"{name} failed: {failed.code().name} {failed.details()!r}")
                continue
            if not _same(answers, self.reference[name]):
                found.append(f"{name} answered differently from its reference "
                             f"({len(answers)} responses, reference {len(self.reference[name])})")
        self.rounds += 1
        self.mismatches.extend(found)
        return found
