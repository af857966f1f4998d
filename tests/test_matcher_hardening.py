"""The matcher against bad input and expensive calls, over real gRPC on loopback with the
embedded store (issue 18, "Trust").

A bad request is INVALID_ARGUMENT naming its field (never INTERNAL or UNKNOWN), however
extreme its numbers, strings or repeated fields; no small request costs memory or time out of
proportion to its size; a write that fails part-way leaves no orphan points; expensive calls
(PlanPlaylist, Cluster) run on their own bounded pool so that cheap ones never wait behind
them, and an over-full queue answers RESOURCE_EXHAUSTED at once; secrets in the Qdrant URL
are masked.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import threading
import time
import tracemalloc
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import grpc
import numpy as np
import pytest
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from matcher_fixtures import (
    DIMS,
    edge_store,
    free_port,
    make_library,
    make_song,
    metadata_for,
    running_matcher,
)

from segue.v1 import common_pb2, matcher_pb2, matcher_pb2_grpc
from services.matcher import clustering
from services.matcher import payload as pl
from services.matcher.admission import HEAVY_THREAD_PREFIX
from services.matcher.client_store import ClientStore
from services.matcher.conditions import Condition, Match
from services.matcher.config import MatcherConfig
from services.matcher.edge_store import EdgeStore
from services.matcher.errors import InvalidArgumentError, StoreUnavailableError, mask_urls
from services.matcher.library import SongLibrary
from services.matcher.listing import page_token
from services.matcher.servicer import BackgroundOptimizer, MatcherServicer
from services.matcher.store import PointData, SegmentStore, StoredRecord
from services.matcher.validation import MAX_SEGMENTS

T = TypeVar("T")
Code = grpc.StatusCode
if TYPE_CHECKING:
    Stub = matcher_pb2_grpc.MatcherAsyncStub  # only in the type stubs

# What the matcher may answer a request; never INTERNAL or UNKNOWN.
ALLOWED = frozenset(
    {
        Code.OK,
        Code.INVALID_ARGUMENT,
        Code.NOT_FOUND,
        Code.RESOURCE_EXHAUSTED,
        Code.FAILED_PRECONDITION,
        Code.ALREADY_EXISTS,
    }
)
KEEPER = "keeper"
LIBRARY_SONGS = 12
FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def full_song(song_id: str, seed: int = 7, segments: int = 6) -> common_pb2.SongAnalysis:
    """A synthetic song with beats, sections and cue points inside it."""
    song = make_song(song_id, np.random.default_rng(seed), segments=segments)
    song.loudness_lufs = -9.5
    for i in range(int(song.duration_s * 2)):
        song.beats.add(time_s=i * 0.5, position_in_bar=i % 4 + 1)
    third = song.duration_s / 3
    for i, letter in enumerate("ABA"):
        song.sections.add(start_s=i * third, end_s=(i + 1) * third, letter=letter, confidence=0.8)
    for i in range(4):
        song.cue_points.add(time_s=i * 8.0, kind=common_pb2.CUE_KIND_ENTRY, phrase_bars=8,
                            energy=0.5)  # fmt: skip
    return song


def without_vectors(analysis: common_pb2.SongAnalysis) -> common_pb2.SongAnalysis:
    out = common_pb2.SongAnalysis()
    out.CopyFrom(analysis)
    out.ClearField("feel")
    for segment in out.segments:
        segment.ClearField("entry")
        segment.ClearField("exit")
    return out


class Served:
    """A real matcher on loopback (matcher_fixtures.running_matcher) on its own event-loop
    thread, called synchronously: what Hypothesis's synchronous examples need."""

    def __init__(self, library: SongLibrary, **servicer_kwargs: int) -> None:
        self.library = library
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._running = running_matcher(library, **servicer_kwargs)
        self.stub, _ = self.wait(self._running.__aenter__())

    def wait(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def call(self, method: str, request: Message, timeout: float = 30) -> tuple[Code, Any, str]:
        """(status, response or None, details) of one call."""

        async def send() -> tuple[Code, Any, str]:
            try:
                response = await getattr(self.stub, method)(request, timeout=timeout)
            except grpc.aio.AioRpcError as e:
                return e.code(), None, e.details() or ""
            return Code.OK, response, ""

        return self.wait(send())

    def close(self) -> None:
        self.wait(self._running.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def serve(library: SongLibrary, scenario: Callable[[Stub], Coroutine[Any, Any, None]],
          **servicer_kwargs: int) -> None:  # fmt: skip
    async def main() -> None:
        async with running_matcher(library, **servicer_kwargs) as (stub, _):
            await scenario(stub)

    asyncio.run(main())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A matcher storing a small library and KEEPER, a song every test checks stays intact."""
    store = edge_store(tmp_path_factory.mktemp("hardening") / "edge")
    library = SongLibrary(store)
    for i, song in enumerate(make_library(LIBRARY_SONGS)):
        library.upsert(song, metadata_for(i))
    library.upsert(full_song(KEEPER), metadata_for(99))
    server = Served(library)
    yield server
    server.close()
    store.close()


def assert_keeper_intact(served: Served) -> None:
    """KEEPER is returned exactly as it was upserted, vectors included."""
    code, stored, details = served.call(
        "GetSong", matcher_pb2.GetSongRequest(song_id=KEEPER, with_vectors=True)
    )
    assert code == Code.OK, details
    sent = full_song(KEEPER)
    assert without_vectors(stored.analysis) == without_vectors(sent)
    assert stored.metadata == metadata_for(99)
    assert np.allclose(stored.analysis.feel, sent.feel, atol=1e-6)
    for got, want in zip(stored.analysis.segments, sent.segments, strict=True):
        assert np.allclose(got.entry, want.entry, atol=1e-6)
        assert np.allclose(got.exit, want.exit, atol=1e-6)


# ---- 1, 2, 6: every bad number, time, id and count is INVALID_ARGUMENT naming its field -------


def _set_path(song: common_pb2.SongAnalysis, path: str, value: Any) -> None:
    """Sets "a.b[2].c" on `song`."""
    target: Any = song
    parts = path.split(".")
    for part in parts[:-1]:
        name, _, index = part.partition("[")
        target = getattr(target, name)
        if index:
            target = target[int(index.rstrip("]"))]
    setattr(target, parts[-1], value)


NAN, INF = math.nan, math.inf
DENORMAL = 5e-324
BAD_VALUES: list[tuple[str, Any, str]] = [
    ("duration_s", NAN, "analysis.duration_s"),
    ("duration_s", INF, "analysis.duration_s"),
    ("duration_s", DENORMAL, "analysis.duration_s"),
    ("duration_s", 0.0, "analysis.duration_s"),
    ("duration_s", -1.0, "analysis.duration_s"),
    ("duration_s", 1e308, "analysis.duration_s"),
    ("loudness_lufs", INF, "analysis.loudness_lufs"),
    ("loudness_lufs", -INF, "analysis.loudness_lufs"),
    ("segments[3].energy", 3e38, "analysis.segments[3].energy"),
    ("segments[3].energy", NAN, "analysis.segments[3].energy"),
    ("segments[2].end_s", 1e12, "analysis.segments[2].end_s"),
    ("segments[5].end_s", 48.5, "analysis.segments[5].end_s"),  # past duration_s
    ("segments[1].index", 0, "analysis.segments[1].index"),  # a duplicate segment id
    ("key.confidence", NAN, "analysis.key.confidence"),
    ("key.tonic_pitch_class", 2**32 - 1, "analysis.key.tonic_pitch_class"),
    ("key.mode", 77, "analysis.key.mode"),
    ("key.name", "x" * 65, "analysis.key.name"),
    ("tempo.bpm", DENORMAL, "analysis.tempo.bpm"),
    ("tempo.bpm", -120.0, "analysis.tempo.bpm"),
    ("tempo.stability", NAN, "analysis.tempo.stability"),
    ("beats[3].time_s", 3e7, "analysis.beats[3].time_s"),
    ("beats[3].time_s", 1e12, "analysis.beats[3].time_s"),
    ("beats[0].time_s", -0.5, "analysis.beats[0].time_s"),
    ("beats[4].position_in_bar", 2**32 - 1, "analysis.beats[4].position_in_bar"),
    ("sections[1].end_s", 1.0, "analysis.sections[1]"),  # before its start
    ("sections[2].end_s", 1e9, "analysis.sections[2].end_s"),
    ("sections[0].confidence", INF, "analysis.sections[0].confidence"),
    ("sections[0].function", 99, "analysis.sections[0].function"),
    ("cue_points[2].time_s", 49.0, "analysis.cue_points[2].time_s"),
    ("cue_points[1].energy", -0.1, "analysis.cue_points[1].energy"),
    ("cue_points[1].kind", 7, "analysis.cue_points[1].kind"),
    ("song_id", "", "analysis.song_id"),
    ("song_id", "a\x00b", "analysis.song_id"),
    ("song_id", "tab\there", "analysis.song_id"),
    ("song_id", "x" * 513, "analysis.song_id"),
    ("model_version", "v" * 257, "analysis.model_version"),
]


@pytest.mark.parametrize(("path", "value", "field"), BAD_VALUES,
                         ids=[f"{p}={v!r}"[:40] for p, v, _ in BAD_VALUES])  # fmt: skip
def test_a_bad_value_anywhere_in_an_upsert_is_invalid_naming_its_field_and_writes_nothing(
    served: Served, path: str, value: Any, field: str
) -> None:
    song = full_song("bad-value")
    _set_path(song, path, value)
    code, _, details = served.call("UpsertSong", matcher_pb2.UpsertSongRequest(analysis=song))
    assert code == Code.INVALID_ARGUMENT, details
    assert details.startswith(field), details
    assert served.library.store.count(Match("song_id", song.song_id)) == 0


def spoiled_vector(name: str, values: list[float]) -> common_pb2.SongAnalysis:
    song = full_song("bad-vector")
    target = song.feel if name == "feel" else getattr(song.segments[2], name)
    del target[:]
    target.extend(values)
    return song


@pytest.mark.parametrize("name", ["feel", "entry", "exit"])
@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ([1e-45] * 64, "L2 norm"),  # denormal: normalising it divides by zero in float32
        ([3e38] * 64, "L2 norm"),  # overflows float32 when normalised
        ([0.0] * 64, "all zeros"),
        ([math.nan] + [1.0] * 63, "NaN"),
        ([1.0] * 65, "expected"),
        ([], "expected"),
    ],
    ids=["denormal", "huge", "zeros", "nan", "longer", "empty"],
)
def test_a_vector_that_cannot_be_normalised_or_compared_is_invalid_naming_it(
    served: Served, name: str, values: list[float], reason: str
) -> None:
    dim = DIMS.feel if name == "feel" else DIMS.transition
    fitted = values if reason == "expected" else values[:dim]
    song = spoiled_vector(name, fitted)
    code, _, details = served.call("UpsertSong", matcher_pb2.UpsertSongRequest(analysis=song))
    field = "analysis.feel" if name == "feel" else f"analysis.segments[2].{name}"
    assert code == Code.INVALID_ARGUMENT and details.startswith(field), details
    assert reason in details


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        (matcher_pb2.SongMetadata(extra={"a.b[": "x"}), "metadata.extra"),
        (matcher_pb2.SongMetadata(extra={"": "x"}), "metadata.extra"),
        (matcher_pb2.SongMetadata(extra={f"k{i}": "v" for i in range(65)}), "metadata.extra"),
        (matcher_pb2.SongMetadata(extra={"mood": "x" * 4097}), "metadata.extra[mood]"),
        (matcher_pb2.SongMetadata(title="t" * 4097), "metadata.title"),
    ],
    ids=["path syntax", "empty key", "too many", "long value", "long title"],
)
def test_metadata_over_its_limits_is_invalid_naming_the_field(
    served: Served, metadata: matcher_pb2.SongMetadata, field: str
) -> None:
    request = matcher_pb2.UpsertSongRequest(analysis=full_song("bad-meta"), metadata=metadata)
    code, _, details = served.call("UpsertSong", request)
    assert code == Code.INVALID_ARGUMENT and details.startswith(field), details


def test_a_song_of_more_segments_than_allowed_is_counted_before_any_is_read(
    served: Served,
) -> None:
    song = full_song("many")
    song.duration_s = 80_000.0
    template = song.segments[0]
    for i in range(len(song.segments), MAX_SEGMENTS + 1):
        song.segments.add(index=i, start_s=template.start_s, end_s=template.end_s)
    with pytest.raises(InvalidArgumentError, match=r"analysis\.segments: has 10001 entries"):
        served.library.upsert(song, matcher_pb2.SongMetadata())


@pytest.mark.parametrize("beat_s", [3e7, 1e12])
def test_a_tiny_analysis_with_beats_far_past_its_end_costs_nothing(beat_s: float) -> None:
    # The probe: a 261-byte analysis with beats at 3e7 s cost 2.4 GB; at 1e12 s, MemoryError.
    library = SongLibrary(cast(SegmentStore, _NoStore()))
    song = common_pb2.SongAnalysis(song_id="tiny", duration_s=10.0, feel=[1.0] * DIMS.feel)
    song.segments.add(index=0, start_s=0.0, end_s=10.0, entry=[1.0] * 64, exit=[1.0] * 64)
    song.beats.add(time_s=beat_s)
    assert song.ByteSize() < 1_000
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(InvalidArgumentError, match=r"analysis\.beats\[0\]\.time_s"):
            library.upsert(song, matcher_pb2.SongMetadata())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200_000 and time.perf_counter() - started < 0.5


class _NoStore:
    """A store that must never be reached (everything is refused before)."""

    dims = DIMS

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the store was used: {name}")


def _position(song_id: str = "song-001") -> matcher_pb2.SongPosition:
    return matcher_pb2.SongPosition(song_id=song_id, song_end=True)


# Built when a test runs (lambda), not when the module is collected: a few hold millions of
# entries.
HUGE_REQUESTS: list[tuple[str, Callable[[], Message], str]] = [
    ("NextSegment", lambda: matcher_pb2.NextSegmentRequest(
        position=_position(), filter=matcher_pb2.Filter(exclude_song_ids=[""] * 1_000_000)),
     "filter"),
    ("NextSegment", lambda: matcher_pb2.NextSegmentRequest(
        position=_position(),
        filter=matcher_pb2.Filter(conditions=[matcher_pb2.PayloadCondition()] * 500_000)),
     "filter.conditions"),
    ("NextSegment", lambda: matcher_pb2.NextSegmentRequest(
        position=_position(), filter=matcher_pb2.Filter(conditions=[matcher_pb2.PayloadCondition(
            field="genre", any_of=matcher_pb2.StringList(values=["x"] * 1_000_000))])),
     "filter"),
    ("NextSegment", lambda: matcher_pb2.NextSegmentRequest(
        vectors=matcher_pb2.RawQuery(exit=[0.5] * 1_000_000)), "vectors.exit"),
    ("NextSegment", lambda: matcher_pb2.NextSegmentRequest(position=_position(), k=2**32 - 1), "k"),
    ("NextSegment", lambda: matcher_pb2.NextSegmentRequest(position=_position("")),
     "position.song_id"),
    ("NextSegment", lambda: matcher_pb2.NextSegmentRequest(position=_position("x" * 100_000)),
     "position.song_id"),
    ("SimilarSongs", lambda: matcher_pb2.SimilarSongsRequest(song_id="song-001", k=10**9), "k"),
    ("SimilarSongs", lambda: matcher_pb2.SimilarSongsRequest(
        feel=matcher_pb2.FloatList(values=[1.0] * 900_000)), "feel.values"),
    ("PlanPlaylist", lambda: matcher_pb2.PlanPlaylistRequest(seed_song_ids=[""] * 1_000_000),
     "seed_song_ids"),
    ("PlanPlaylist", lambda: matcher_pb2.PlanPlaylistRequest(
        seed_song_ids=["song-001"], energy_curve=[0.5] * 900_000), "energy_curve"),
    ("PlanPlaylist", lambda: matcher_pb2.PlanPlaylistRequest(
        seed_song_ids=["song-001"], num_songs=2**32 - 1), "num_songs"),
    ("PlanPlaylist", lambda: matcher_pb2.PlanPlaylistRequest(
        seed_song_ids=["song-001"], num_songs=200, beam_width=32), "num_songs"),
    ("PlanPlaylist", lambda: matcher_pb2.PlanPlaylistRequest(
        seed_song_ids=["song-001"], beam_width=2**32 - 1), "beam_width"),
    ("Cluster", lambda: matcher_pb2.ClusterRequest(num_clusters=2**32 - 1), "num_clusters"),
    ("GetSong", lambda: matcher_pb2.GetSongRequest(song_id="\x7f"), "song_id"),
    ("ListSongs", lambda: matcher_pb2.ListSongsRequest(page_size=2**32 - 1), "page_size"),
    ("ListSongs", lambda: matcher_pb2.ListSongsRequest(page_token="A" * 4_000_000),
     "page_token"),
    ("DeleteSong", lambda: matcher_pb2.DeleteSongRequest(song_id="y" * 4_000_000), "song_id"),
]  # fmt: skip


HUGE_IDS = [f"{method}-{field}-{i}" for i, (method, _, field) in enumerate(HUGE_REQUESTS)]


@pytest.mark.parametrize(("method", "build", "field"), HUGE_REQUESTS, ids=HUGE_IDS)
def test_huge_counts_values_and_ids_are_invalid_naming_the_field_at_once(
    served: Served, method: str, build: Callable[[], Message], field: str
) -> None:
    request_ = build()
    assert request_.ByteSize() < 4 * 1024 * 1024  # within the server's message limit
    started = time.perf_counter()
    code, _, details = served.call(method, request_)
    assert code == Code.INVALID_ARGUMENT, details
    assert details.startswith(field), details
    assert len(details) < 1_000
    assert time.perf_counter() - started < 2.0


def test_a_plan_leaving_the_beam_to_the_server_is_narrowed_to_fit_the_cost_limit(
    served: Served,
) -> None:
    request = matcher_pb2.PlanPlaylistRequest(seed_song_ids=["song-001"], num_songs=200)
    code, response, details = served.call("PlanPlaylist", request)
    assert code == Code.OK, details
    songs = [step.song_id for step in response.steps]
    assert len(songs) > 1 and len(set(songs)) == len(songs)


# ---- 7: a refused request leaves nothing alive -----------------------------------------------


def test_memory_of_refused_requests_is_released_without_the_garbage_collector(
    served: Served,
) -> None:
    # ~1.4 MB each, refused at the last segment after its vectors were converted: with the
    # collector off, anything kept alive through a chained exception's traceback would stay.
    song = full_song("refused", segments=2_000)
    song.segments[-1].exit[3] = math.nan
    request = matcher_pb2.UpsertSongRequest(analysis=song)
    served.call("UpsertSong", request)  # warm up
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for _ in range(6):
            code, _, details = served.call("UpsertSong", request)
            assert code == Code.INVALID_ARGUMENT and "segments[1999].exit" in details
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        gc.enable()
    assert peak - before > 1_000_000  # the check did hold the vectors while it ran
    assert after - before < 1_000_000, f"{(after - before) / 1e6:.1f} MB kept"


# ---- 4: filter field grammar, fuzzed ----------------------------------------------------------

TEXT = st.one_of(
    st.sampled_from(["", "a", "mood", "\x00", "a\x1fb", "é" * 70, "x" * 5_000, "song-001",
                     KEEPER, "8B", "13C", " 8b ", "calm"]),
    st.text(max_size=20),
)  # fmt: skip
FILTER_FIELDS = st.one_of(
    st.sampled_from(["song_id", "artist", "album", "genre", "title", "tempo_bpm", "energy",
                     "camelot", "section_letter", "extra.mood", "extra", "extra.", "extra.a[",
                     "extra.*", "extra.a.b", "extra. ", 'extra."x"', "extra.a b", "kind",
                     "generation", "state", "start_frac", "extra.a[0]", "extra.$", "key.name",
                     "extra." + "k" * 65]),
    st.builds(lambda key: f"extra.{key}", st.text(max_size=12)),
    st.text(max_size=12),
)  # fmt: skip
FLOATS = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, DENORMAL, -DENORMAL, -0.0,
                     0.0, 0.5, 1.0, 120.0, 3.4e38, 1e-45, 86_400.0, 1e12, 1e9, -1e9]),
    st.floats(),
)  # fmt: skip
FLOAT32 = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, DENORMAL, -0.0, 0.0, 0.5, 1.0, 3.4e38,
                     1e-45, 2.0, -1.0]),
    st.floats(width=32),
)  # fmt: skip
UINTS = st.one_of(st.sampled_from([0, 1, 2, 3, 11, 12, 32, 33, 64, 100, 101, 200, 201,
                                   2**31 - 1, 2**32 - 1]),
                  st.integers(0, 2**32 - 1))  # fmt: skip


# A field of a fuzzed request is spoiled one time in four and valid otherwise, so that most
# requests get past their first check and reach deeper ones.
SPOIL = st.integers(0, 3).map(lambda x: x == 0)


def pick(draw: st.DrawFn, valid: st.SearchStrategy[T], hostile: st.SearchStrategy[T]) -> T:
    return draw(hostile) if draw(SPOIL) else draw(valid)


@st.composite
def conditions(draw: st.DrawFn) -> matcher_pb2.PayloadCondition:
    fields = st.sampled_from(["genre", "artist", "extra.mood", "energy", "tempo_bpm", "camelot"])
    out = matcher_pb2.PayloadCondition(field=pick(draw, fields, FILTER_FIELDS),
                                       negate=draw(st.booleans()))  # fmt: skip
    kind = draw(st.sampled_from(["equals", "any_of", "range", "none"]))
    words = st.sampled_from(["house", "calm", "8B", "artist-1"])
    if kind == "equals":
        out.equals = pick(draw, words, TEXT)
    elif kind == "any_of":
        out.any_of.values.extend(pick(draw, st.lists(words, min_size=1, max_size=3),
                                      st.lists(TEXT, max_size=3)))  # fmt: skip
    elif kind == "range":
        out.range.SetInParent()
        for bound in ("gte", "lte"):
            value = pick(draw, st.none() | st.floats(0, 200), st.none() | FLOATS)
            if value is not None:
                setattr(out.range, bound, value)
    return out


@st.composite
def filters(draw: st.DrawFn) -> matcher_pb2.Filter:
    if not draw(SPOIL):
        return matcher_pb2.Filter()
    ids = st.lists(st.sampled_from(["song-002", "song-003"]), max_size=2)
    out = matcher_pb2.Filter(
        exclude_song_ids=pick(draw, ids, st.lists(TEXT, max_size=3)),
        played_song_ids=pick(draw, ids, st.lists(TEXT, max_size=2)),
        exclude_artists=pick(draw, st.just([]), st.lists(TEXT, max_size=2)),
        tempo_compatible=draw(st.booleans()),
        key_compatible=draw(st.booleans()),
        conditions=draw(st.lists(conditions(), max_size=2)),
    )
    if draw(st.booleans()):
        bpm = st.floats(0, 300)
        out.tempo_range.min_bpm = pick(draw, bpm, FLOATS)
        out.tempo_range.max_bpm = pick(draw, bpm, FLOATS)
    return out


@FUZZ
@given(field=FILTER_FIELDS, value=TEXT, values=st.lists(TEXT, max_size=4),
       gte=st.none() | FLOATS, lte=st.none() | FLOATS, negate=st.booleans())  # fmt: skip
def test_no_filter_field_or_value_makes_next_segment_fail_internally(
    served: Served,
    field: str,
    value: str,
    values: list[str],
    gte: float | None,
    lte: float | None,
    negate: bool,
) -> None:
    for condition in (
        matcher_pb2.PayloadCondition(field=field, equals=value, negate=negate),
        matcher_pb2.PayloadCondition(field=field, any_of=matcher_pb2.StringList(values=values)),
        matcher_pb2.PayloadCondition(field=field, range=matcher_pb2.NumericRange(gte=gte, lte=lte)),
    ):
        request = matcher_pb2.NextSegmentRequest(
            position=_position(), filter=matcher_pb2.Filter(conditions=[condition])
        )
        code, _, details = served.call("NextSegment", request)
        assert code in ALLOWED, f"{code}: {details}"
        if code == Code.INVALID_ARGUMENT:
            assert details.startswith("filter.conditions[0]"), details


def test_a_filter_field_outside_the_grammar_is_invalid_naming_it(served: Served) -> None:
    for name in ("extra.a[", "extra.*", "extra.a.b", "extra. ", "extra.", "extra." + "k" * 65):
        condition = matcher_pb2.PayloadCondition(field=name, equals="x")
        request = matcher_pb2.NextSegmentRequest(
            position=_position(), filter=matcher_pb2.Filter(conditions=[condition])
        )
        code, _, details = served.call("NextSegment", request)
        assert code == Code.INVALID_ARGUMENT, details
        assert details.startswith("filter.conditions[0].field"), details
    ok = matcher_pb2.PayloadCondition(field="extra.Mood_2-b", equals="x")
    request = matcher_pb2.NextSegmentRequest(
        position=_position(), filter=matcher_pb2.Filter(conditions=[ok])
    )
    assert served.call("NextSegment", request)[0] == Code.OK


# ---- 6: every request type, fuzzed with extreme values ----------------------------------------

IDS = st.one_of(st.sampled_from(["song-001", "song-002", "song-011", "nope", ""]), TEXT).filter(
    lambda s: s != KEEPER
)


def _vector(draw: st.DrawFn, dim: int) -> list[float]:
    size = draw(st.sampled_from([dim, dim, dim, 0, 1, dim + 1]))
    base = draw(st.sampled_from([0.1, 1.0, 1e-20, 1e19]))
    values = [base] * size
    for _ in range(draw(st.integers(0, 2))):
        if values:
            values[draw(st.integers(0, size - 1))] = draw(FLOAT32)
    return values


@st.composite
def weights(draw: st.DrawFn) -> matcher_pb2.ScoreWeights:
    out = matcher_pb2.ScoreWeights()
    for name in ("transition", "feel", "tempo", "key", "energy"):
        value = pick(draw, st.none() | st.floats(0, 2, width=32), FLOAT32)
        if value is not None:
            setattr(out, name, value)
    return out


@st.composite
def keys(draw: st.DrawFn) -> common_pb2.Key:
    modes = st.sampled_from([0, 1, 2, 3, 2**31 - 1])
    return common_pb2.Key(
        tonic_pitch_class=pick(draw, st.integers(0, 11), UINTS),
        mode=cast(common_pb2.Mode.ValueType, pick(draw, st.sampled_from([0, 1, 2]), modes)),
        camelot=pick(draw, st.sampled_from(["", "8B", "12A"]),
                     st.sampled_from(["13C", "0A", " 8b "]) | TEXT),
        name=pick(draw, st.just("C major"), TEXT),
        confidence=pick(draw, st.floats(0, 1, width=32), FLOAT32),
    )  # fmt: skip


LIBRARY_IDS = st.sampled_from(["song-001", "song-002", "song-011"])
K = st.sampled_from([0, 1, 5, 100])


@st.composite
def next_segment_requests(draw: st.DrawFn) -> matcher_pb2.NextSegmentRequest:
    out = matcher_pb2.NextSegmentRequest(
        k=pick(draw, K, UINTS), filter=draw(filters()), weights=draw(weights()),
        allow_multiple_per_song=draw(st.booleans()),
    )  # fmt: skip
    kind = pick(draw, st.sampled_from(["position", "end", "vectors"]), st.just("none"))
    if kind == "position":
        out.position.song_id = pick(draw, LIBRARY_IDS, IDS)
        out.position.time_s = pick(draw, st.floats(0, 60), FLOATS)
    elif kind == "end":
        out.position.song_id, out.position.song_end = pick(draw, LIBRARY_IDS, IDS), True
    elif kind == "vectors":
        out.vectors.exit.extend(_vector(draw, DIMS.transition))
        if draw(st.booleans()):
            out.vectors.feel.extend(_vector(draw, DIMS.feel))
        out.vectors.tempo_bpm = pick(draw, st.sampled_from([0.0, 120.0]), FLOATS)
        out.vectors.energy = pick(draw, st.floats(0, 1, width=32), FLOAT32)
        if draw(st.booleans()):
            out.vectors.key.CopyFrom(draw(keys()))
    return out


@st.composite
def similar_requests(draw: st.DrawFn) -> matcher_pb2.SimilarSongsRequest:
    out = matcher_pb2.SimilarSongsRequest(k=pick(draw, K, UINTS), filter=draw(filters()))
    kind = pick(draw, st.sampled_from(["song_id", "feel"]), st.just("none"))
    if kind == "song_id":
        out.song_id = pick(draw, LIBRARY_IDS, IDS)
    elif kind == "feel":
        out.feel.values.extend(_vector(draw, DIMS.feel))
    return out


@st.composite
def plan_requests(draw: st.DrawFn) -> matcher_pb2.PlanPlaylistRequest:
    seeds = st.sampled_from([["song-001"], ["song-001", "song-011"], ["song-002"]])
    out = matcher_pb2.PlanPlaylistRequest(
        seed_song_ids=pick(draw, seeds, st.lists(IDS, max_size=3)),
        energy_curve=pick(draw, st.lists(st.floats(0, 1, width=32), max_size=4),
                          st.lists(FLOAT32, max_size=4)),
        filter=draw(filters()), weights=draw(weights()),
        beam_width=pick(draw, st.integers(0, 4), st.sampled_from([32, 33, 2**32 - 1]) | UINTS),
    )  # fmt: skip
    kind = draw(st.sampled_from(["num_songs", "duration_s", "none"]))
    if kind == "num_songs":
        out.num_songs = pick(draw, st.integers(2, 8), st.sampled_from([0, 1, 200, 201]) | UINTS)
    elif kind == "duration_s":
        out.duration_s = pick(draw, st.floats(1, 300), FLOATS)
    return out


@st.composite
def cluster_requests(draw: st.DrawFn) -> matcher_pb2.ClusterRequest:
    hostile = st.sampled_from([13, 100, 101]) | UINTS
    return matcher_pb2.ClusterRequest(
        num_clusters=pick(draw, st.integers(0, 12), hostile),
        seed=draw(st.sampled_from([0, 2**63, 2**64 - 1]) | st.integers(0, 2**64 - 1)),
        filter=draw(filters()),
    )


@st.composite
def list_requests(draw: st.DrawFn) -> matcher_pb2.ListSongsRequest:
    tokens = st.sampled_from(["", page_token("song-001"), page_token("zzz")])
    return matcher_pb2.ListSongsRequest(
        page_size=pick(draw, st.sampled_from([0, 1, 5, 1000]), UINTS),
        page_token=pick(draw, tokens, TEXT),
        filter=draw(filters()),
        with_vectors=draw(st.booleans()),
    )


# Fields of an analysis a mutation may set, with what it draws.
_SCALARS: list[tuple[str, st.SearchStrategy[Any]]] = [
    (path, FLOATS) for path in (
        "duration_s", "loudness_lufs", "tempo.bpm", "segments[0].start_s", "segments[2].end_s",
        "beats[1].time_s", "sections[1].start_s", "sections[2].end_s", "cue_points[0].time_s",
    )
] + [
    (path, FLOAT32) for path in (
        "tempo.stability", "tempo.confidence", "key.confidence", "segments[3].energy",
        "sections[0].confidence", "cue_points[3].energy",
    )
] + [
    (path, UINTS) for path in (
        "segments[1].index", "key.tonic_pitch_class", "beats[2].position_in_bar",
        "cue_points[1].phrase_bars",
    )
] + [
    (path, st.sampled_from([0, 1, 2, 3, 6, 7, 2**31 - 1]))
    for path in ("key.mode", "sections[1].function", "cue_points[2].kind")
] + [
    (path, TEXT.filter(lambda s: s != KEEPER)) for path in (
        "song_id", "model_name", "model_version", "key.camelot", "key.name",
        "segments[4].section_letter", "sections[0].letter",
    )
]  # fmt: skip


@st.composite
def upsert_requests(draw: st.DrawFn) -> matcher_pb2.UpsertSongRequest:
    """A valid song with a few fields set to extreme values (random requests rarely get past
    the first check)."""
    song = full_song("fuzz-song", seed=draw(st.integers(0, 3)))
    for _ in range(draw(st.integers(0, 2))):
        choice = draw(st.integers(0, len(_SCALARS) + 2))
        if choice < len(_SCALARS):
            path, values = _SCALARS[choice]
            _set_path(song, path, draw(values))
        elif choice == len(_SCALARS):
            target = draw(st.sampled_from(["feel", "entry", "exit"]))
            vector = song.feel if target == "feel" else getattr(song.segments[1], target)
            spoiled = _vector(draw, DIMS.feel if target == "feel" else DIMS.transition)
            del vector[:]
            vector.extend(spoiled)
        elif choice == len(_SCALARS) + 1:
            song.beats.add(time_s=draw(FLOATS), position_in_bar=draw(UINTS))
        else:
            del song.segments[draw(st.integers(0, len(song.segments) - 1)) :]
    extra = pick(draw, st.just({"mood": "calm"}), st.dictionaries(TEXT, TEXT, max_size=2))
    metadata = matcher_pb2.SongMetadata(title=pick(draw, st.just("A title"), TEXT), extra=extra)
    return matcher_pb2.UpsertSongRequest(analysis=song, metadata=metadata)


def _check_answers(served: Served, method: str, request: Message) -> None:
    code, _, details = served.call(method, request)
    assert code in ALLOWED, f"{method} answered {code}: {details}"


REQUESTS: dict[str, st.SearchStrategy[Any]] = {
    "UpsertSong": upsert_requests(),
    "GetSong": st.builds(matcher_pb2.GetSongRequest, song_id=IDS, with_vectors=st.booleans()),
    "ListSongs": list_requests(),
    # Not the library's songs, which other tests of the module leave from.
    "DeleteSong": st.builds(
        matcher_pb2.DeleteSongRequest, song_id=IDS.filter(lambda s: not s.startswith("song-"))
    ),
    "NextSegment": next_segment_requests(),
    "SimilarSongs": similar_requests(),
    "PlanPlaylist": plan_requests(),
    "Cluster": cluster_requests(),
}


@pytest.mark.parametrize("method", sorted(REQUESTS))
def test_no_request_of_extreme_values_gets_internal_or_unknown_and_a_good_song_survives(
    served: Served, method: str
) -> None:
    @FUZZ
    @given(request=REQUESTS[method])
    def check(request: Message) -> None:
        _check_answers(served, method, request)

    check()
    assert_keeper_intact(served)


# ---- 3: a failed write leaves no orphans ------------------------------------------------------


class FaultyStore(EdgeStore):
    """The real embedded store whose writes fail on demand: the `fail_at`-th write from
    `arm` raises (with `lasting`, it and every later one, until `heal`)."""

    def __init__(self, path: Path) -> None:
        edge_store(path).close()  # a copy of the empty store with its indexes
        super().__init__(path, DIMS)
        self.heal()

    def arm(self, fail_at: int, *, lasting: bool = False) -> None:
        self.writes, self.fail_at, self.lasting = 0, fail_at, lasting

    def heal(self) -> None:
        self.writes, self.fail_at, self.lasting = 0, 0, False

    def _write(self) -> None:
        self.writes += 1
        if self.writes == self.fail_at or (self.lasting and self.writes >= self.fail_at):
            raise StoreUnavailableError(f"injected failure of write {self.writes}")

    def upsert(self, points: Sequence[PointData]) -> None:
        self._write()
        super().upsert(points)

    def delete(self, where: Condition) -> None:
        self._write()
        super().delete(where)

    def set_payload(self, where: Condition, payload: dict[str, Any]) -> None:
        self._write()
        super().set_payload(where, payload)

    def set_payload_by_ids(self, ids: Sequence[str], payload: dict[str, Any]) -> None:
        self._write()
        super().set_payload_by_ids(ids, payload)


OLD = full_song("replaced", seed=1, segments=6)
NEW = full_song("replaced", seed=2, segments=4)


def assert_whole(library: SongLibrary, song_id: str) -> common_pb2.SongAnalysis | None:
    """The song's points are exactly one whole, committed version (returned), or none."""
    store = library.store
    assert store.count(Match("state", pl.PENDING)) == 0, "pending points were left behind"
    song = library.find(song_id, with_feel=True)
    points: list[StoredRecord] = store.scroll(Match("song_id", song_id))
    if song is None:
        assert points == [], "orphan points of a song that is not stored"
        return None
    segments = [p for p in points if p.payload.get("kind") != pl.SONG]
    assert {p.payload["generation"] for p in segments} == {song.generation}
    assert all(p.payload["state"] == pl.LIVE for p in segments)
    assert sorted(int(p.payload["segment_index"]) for p in segments) == list(
        range(len(song.segments))
    )
    return library.analysis(song, with_vectors=True)


def _matches(stored: common_pb2.SongAnalysis | None, sent: common_pb2.SongAnalysis) -> bool:
    return stored is not None and without_vectors(stored) == without_vectors(sent)


def assert_served_as(library: SongLibrary, expected: common_pb2.SongAnalysis | None) -> None:
    """GetSong returns `expected` whole (or NOT_FOUND for None), and NextSegment from another
    song enters exactly its segments, none of another version."""

    async def scenario(stub: Stub) -> None:
        try:
            got = await stub.GetSong(matcher_pb2.GetSongRequest(song_id="replaced"))
        except grpc.aio.AioRpcError as e:
            assert expected is None and e.code() == Code.NOT_FOUND
        else:
            assert expected is not None and got.analysis == without_vectors(expected)
        into = matcher_pb2.PayloadCondition(field="song_id", equals="replaced")
        found = await stub.NextSegment(
            matcher_pb2.NextSegmentRequest(
                position=_position("other"), k=100, allow_multiple_per_song=True,
                filter=matcher_pb2.Filter(conditions=[into]),
            )
        )  # fmt: skip
        entered = sorted((c.segment_index, c.entry_time_s) for c in found.candidates)
        segments = [] if expected is None else expected.segments
        assert entered == [(s.index, s.start_s) for s in segments]

    serve(library, scenario)


@pytest.fixture
def faulty(tmp_path: Path) -> Iterator[tuple[FaultyStore, SongLibrary]]:
    store = FaultyStore(tmp_path / "edge")
    library = SongLibrary(store)
    library.upsert(full_song("other", seed=9), matcher_pb2.SongMetadata())
    yield store, library
    store.close()


# A replacement writes: 1 the new segments (pending), 2 the song point (its commit record),
# 3 the delete of the old segments, 4 the commit of the new ones.
@pytest.mark.parametrize("fail_at", [1, 2, 3, 4])
def test_a_replacement_failing_at_any_write_leaves_one_whole_version_and_no_orphans(
    faulty: tuple[FaultyStore, SongLibrary], fail_at: int
) -> None:
    store, library = faulty
    library.upsert(OLD, matcher_pb2.SongMetadata())
    store.arm(fail_at)
    with pytest.raises(StoreUnavailableError):
        library.upsert(NEW, matcher_pb2.SongMetadata())
    # Before the commit record the old version stays; from it on the new one is finished.
    expected = OLD if fail_at <= 2 else NEW
    assert _matches(assert_whole(library, "replaced"), expected)
    assert_served_as(library, expected)
    library.upsert(NEW, matcher_pb2.SongMetadata())  # a retry succeeds
    assert _matches(assert_whole(library, "replaced"), NEW)
    assert_served_as(library, NEW)


# A new song writes: 1 its segments and song point at once, 2 the commit of its segments.
@pytest.mark.parametrize("fail_at", [1, 2])
def test_a_new_song_failing_at_any_write_is_stored_whole_or_not_at_all(
    faulty: tuple[FaultyStore, SongLibrary], fail_at: int
) -> None:
    store, library = faulty
    store.arm(fail_at)
    with pytest.raises(StoreUnavailableError):
        library.upsert(NEW, matcher_pb2.SongMetadata())
    expected = None if fail_at == 1 else NEW
    stored = assert_whole(library, "replaced")
    assert stored is None if expected is None else _matches(stored, expected)
    assert_served_as(library, expected)


def test_a_failed_write_that_cannot_be_settled_at_once_is_settled_once_the_store_is_back(
    faulty: tuple[FaultyStore, SongLibrary],
) -> None:
    store, library = faulty
    library.upsert(OLD, matcher_pb2.SongMetadata())
    store.arm(2, lasting=True)  # the commit record fails, and so does settling it
    with pytest.raises(StoreUnavailableError):
        library.upsert(NEW, matcher_pb2.SongMetadata())
    assert library.unsettled_count() == 1
    assert store.count(Match("state", pl.PENDING)) == len(NEW.segments)  # for now
    assert library.settle_unsettled() == 1  # still down
    store.heal()

    async def run_the_service_loop() -> None:
        task = asyncio.create_task(BackgroundOptimizer(library).run_periodically(0.05))
        await _until(lambda: library.unsettled_count() == 0)
        task.cancel()

    asyncio.run(run_the_service_loop())
    assert _matches(assert_whole(library, "replaced"), OLD)
    assert_served_as(library, OLD)


def test_over_grpc_a_failed_replacement_is_unavailable_and_get_song_sees_the_old_one_whole(
    faulty: tuple[FaultyStore, SongLibrary],
) -> None:
    store, library = faulty

    async def scenario(stub: Stub) -> None:
        await stub.UpsertSong(matcher_pb2.UpsertSongRequest(analysis=OLD))
        store.arm(2)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.UpsertSong(matcher_pb2.UpsertSongRequest(analysis=NEW))
        assert error.value.code() == Code.UNAVAILABLE
        got = await stub.GetSong(matcher_pb2.GetSongRequest(song_id="replaced"))
        assert got.analysis == without_vectors(OLD)

    serve(library, scenario)
    assert _matches(assert_whole(library, "replaced"), OLD)


# ---- 5: admission control of expensive calls --------------------------------------------------


class GatedStore(EdgeStore):
    """The real embedded store whose searches on heavy-call threads wait for `gate`."""

    def __init__(self, path: Path) -> None:
        edge_store(path).close()
        super().__init__(path, DIMS)
        self.gate = threading.Event()
        self.entered = threading.Event()

    def search(
        self,
        vector_name: str,
        vector: Sequence[float],
        where: Condition | None,
        limit: int,
        with_vectors: Sequence[str] = (),
        with_payload: Sequence[str] | None = None,
    ) -> list[StoredRecord]:
        if threading.current_thread().name.startswith(HEAVY_THREAD_PREFIX):
            self.entered.set()
            self.gate.wait(30)
        return super().search(vector_name, vector, where, limit, with_vectors, with_payload)


def _library_of(store: EdgeStore, songs: int) -> SongLibrary:
    library = SongLibrary(store)
    for i, song in enumerate(make_library(songs, seed=5)):
        library.upsert(song, metadata_for(i))
    return library


async def _until(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


def test_a_heavy_call_over_the_queue_is_resource_exhausted_at_once_and_cheap_calls_go_on(
    tmp_path: Path,
) -> None:
    store = GatedStore(tmp_path / "edge")
    library = _library_of(store, 20)
    plan = matcher_pb2.PlanPlaylistRequest(seed_song_ids=["song-001"], num_songs=5)

    async def scenario(stub: Stub) -> None:
        held = time.monotonic()
        running = asyncio.ensure_future(stub.PlanPlaylist(plan, timeout=30))
        await _until(store.entered.is_set)  # one heavy call runs (held at the gate)...
        waiting = asyncio.ensure_future(stub.Cluster(matcher_pb2.ClusterRequest(), timeout=30))
        await asyncio.sleep(0.3)  # ...and one waits in the queue
        refused = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.PlanPlaylist(plan, timeout=30)
        assert error.value.code() == Code.RESOURCE_EXHAUSTED
        refused_s = time.monotonic() - refused
        cheap_s = 0.0
        for _ in range(5):
            for call in (
                stub.NextSegment(matcher_pb2.NextSegmentRequest(position=_position())),
                stub.GetSong(matcher_pb2.GetSongRequest(song_id="song-002")),
                stub.SimilarSongs(matcher_pb2.SimilarSongsRequest(song_id="song-003")),
                stub.UpsertSong(matcher_pb2.UpsertSongRequest(analysis=full_song("new"))),
            ):
                sent = time.monotonic()
                await call
                cheap_s = max(cheap_s, time.monotonic() - sent)
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - held)))
        store.gate.set()
        assert len((await running).steps) == 5
        assert (await waiting).clusters
        heavy_s = time.monotonic() - held
        # Answered while both heavy places were taken, in a small part of the heavy call.
        assert refused_s < heavy_s / 4 and cheap_s < heavy_s / 4, (refused_s, cheap_s, heavy_s)

    serve(library, scenario, heavy_workers=1, heavy_queue=1)
    store.close()


def test_a_heavy_call_abandoned_while_it_waits_frees_its_place(
    tmp_path: Path,
) -> None:
    store = GatedStore(tmp_path / "edge")
    library = _library_of(store, 12)
    plan = matcher_pb2.PlanPlaylistRequest(seed_song_ids=["song-001"], num_songs=3)

    async def scenario(stub: Stub) -> None:
        running = asyncio.ensure_future(stub.PlanPlaylist(plan, timeout=30))
        await _until(store.entered.is_set)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.PlanPlaylist(plan, timeout=0.5)  # waits in the queue past its deadline
        assert error.value.code() == Code.DEADLINE_EXCEEDED
        await asyncio.sleep(0.2)
        queued = asyncio.ensure_future(stub.Cluster(matcher_pb2.ClusterRequest(), timeout=30))
        await asyncio.sleep(0.3)
        assert not queued.done()  # admitted to the freed place, not refused
        store.gate.set()
        await running
        await queued

    serve(library, scenario, heavy_workers=1, heavy_queue=1)
    store.close()


def _default_executor_workers() -> int:
    return min(32, (os.cpu_count() or 1) + 4)  # asyncio.to_thread's pool


def test_next_segment_answers_quickly_while_more_plans_run_than_the_default_pool_has_threads(
    tmp_path: Path,
) -> None:
    # Before admission control, plans filled asyncio's default pool and a NextSegment waited
    # for one of them to finish.
    library = _library_of(edge_store(tmp_path / "edge"), 150)
    plan = matcher_pb2.PlanPlaylistRequest(seed_song_ids=["song-001"], num_songs=60,
                                           beam_width=4)  # fmt: skip
    plans = min(_default_executor_workers() + 2, 12)

    async def scenario(stub: Stub) -> None:
        started = time.monotonic()
        await stub.PlanPlaylist(plan)
        alone_s = time.monotonic() - started
        heavy = [asyncio.ensure_future(stub.PlanPlaylist(plan)) for _ in range(plans)]
        await asyncio.sleep(0.05)
        latencies: list[float] = []
        while not all(h.done() for h in heavy):
            sent = time.monotonic()
            await stub.NextSegment(matcher_pb2.NextSegmentRequest(position=_position(), k=5))
            latencies.append(time.monotonic() - sent)
            await asyncio.sleep(0.02)
        for h in heavy:
            assert len((await h).steps) == 60
        assert len(latencies) >= 3
        # Queued behind the plans (the bug), a NextSegment waits until one of them finishes:
        # several times `alone_s` at this load, the first one sent longest. Served at once it
        # takes milliseconds, though on a 2-core machine the planners' threads hold the GIL
        # for up to most of a plan's time now and then.
        ordered = sorted(latencies)
        assert ordered[len(ordered) // 2] < alone_s / 2, (ordered, alone_s)
        assert ordered[-1] < 1.5 * alone_s, (ordered, alone_s)

    serve(library, scenario, heavy_workers=2, heavy_queue=plans)


# ---- 8: secrets in the Qdrant URL are masked --------------------------------------------------


def test_the_config_masks_the_qdrant_urls_credentials_and_the_api_key() -> None:
    config = MatcherConfig(
        qdrant_url="https://user:pa@ss-word@qdrant.example:6333/?api_key=sekrit1",
        qdrant_api_key="sekrit2",
    )
    for shown in (repr(config), str(config.describe())):
        for secret in ("pa@ss", "ss-word", "sekrit1", "sekrit2", "user"):
            assert secret not in shown, shown
    assert config.describe()["qdrant_url"] == "https://***@qdrant.example:6333/?api_key=***"
    assert mask_urls("http://qdrant:6333") == "http://qdrant:6333"


def test_an_unreachable_qdrant_url_with_credentials_is_never_shown_to_clients() -> None:
    url = f"http://admin:hunter2@127.0.0.1:{free_port()}"
    store = ClientStore.connect(url, "segue", DIMS, timeout_s=1, grpc_port=free_port())
    error = StoreUnavailableError(f"Qdrant unreachable: {url}/collections")
    assert "hunter2" not in str(error) and "admin" not in str(error)
    library = SongLibrary(store)

    async def scenario(stub: Stub) -> None:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.GetSong(matcher_pb2.GetSongRequest(song_id="a"), timeout=20)
        assert raised.value.code() == Code.UNAVAILABLE
        assert "hunter2" not in (raised.value.details() or "")

    try:
        serve(library, scenario)
    finally:
        store.close()


# ---- settings ---------------------------------------------------------------------------------


def test_the_admission_settings_are_read_validated_and_reach_the_servicer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    defaults = MatcherConfig.from_env()
    assert (defaults.max_plan_cost, defaults.heavy_workers, defaults.heavy_queue) == (320, 2, 8)
    for name, value in (("SEGUE_MAX_PLAN_COST", "640"), ("SEGUE_HEAVY_WORKERS", "3"),
                        ("SEGUE_HEAVY_QUEUE", "0")):  # fmt: skip
        monkeypatch.setenv(name, value)
    config = MatcherConfig.from_env()
    servicer = MatcherServicer.from_config(SongLibrary(cast(SegmentStore, _NoStore())), config)
    assert (servicer.max_plan_cost, servicer.heavy.workers, servicer.heavy.queue) == (640, 3, 0)
    servicer.close()
    bad = {
        "SEGUE_MAX_PLAN_COST": "63",
        "SEGUE_HEAVY_WORKERS": "0",
        "SEGUE_HEAVY_QUEUE": "-1",
        "SEGUE_QDRANT_TIMEOUT_S": "nan",
    }
    for name, value in bad.items():
        with monkeypatch.context() as patched:
            patched.setenv(name, value)
            with pytest.raises(ValueError, match=name):
                MatcherConfig.from_env()


def test_the_silhouette_of_a_large_library_never_holds_its_whole_distance_matrix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(0)
    feels = rng.normal(size=(4_000, DIMS.feel))
    feels /= np.linalg.norm(feels, axis=1, keepdims=True)
    labels = rng.integers(0, 4, size=len(feels))
    whole = clustering.silhouette(feels, labels, np.random.default_rng(1))
    monkeypatch.setattr(clustering, "DISTANCE_BLOCK_ELEMENTS", 100_000)
    tracemalloc.start()
    try:
        blocked = clustering.silhouette(feels, labels, np.random.default_rng(1))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert blocked == pytest.approx(whole, abs=1e-12)
    # The whole [2,000 sampled, 4,000] matrix is 64 MB.
    assert peak < 8_000_000, f"{peak / 1e6:.1f} MB"
