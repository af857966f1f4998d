"""Songs' analyses: fetched from the matcher by song id instead of analysing again, and
checked value by value, the client's and the matcher's alike, before a render uses them.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping

import grpc
import numpy as np
import numpy.typing as npt

from segue.client.security import ClientSecurity, open_channel
from segue.v1 import common_pb2, matcher_pb2, matcher_pb2_grpc

# GetSong calls in flight at once for one render (a mix may name 200 songs).
_PARALLEL_FETCHES = 8
# Matcher answers that a retry may cure: the mixer reports them as UNAVAILABLE.
_TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.CANCELLED,
}


class StoredAnalysisError(Exception):
    """A stored analysis could not be had; `code` is the status the client gets."""

    code = grpc.StatusCode.INTERNAL


class NoMatcherError(StoredAnalysisError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class NotStoredError(StoredAnalysisError):
    code = grpc.StatusCode.NOT_FOUND


class MatcherUnavailableError(StoredAnalysisError):
    code = grpc.StatusCode.UNAVAILABLE


class BadStoredAnalysisError(StoredAnalysisError):
    """The matcher's analysis of a song is unusable (a value out of range): the request is
    fine, the stored data is not, so FAILED_PRECONDITION rather than INVALID_ARGUMENT."""

    code = grpc.StatusCode.FAILED_PRECONDITION


def require_matcher(address: str, field: str) -> None:
    """Raises NoMatcherError naming `field` when the mixer has no matcher to ask."""
    if not address:
        raise NoMatcherError(
            f"{field} is set without an analysis, but this mixer has no matcher to fetch the "
            "stored analysis from: send the analysis, or set SEGUE_MIXER_MATCHER_ADDR"
        )


class StoredAnalyses:
    """Fetches analyses from the matcher's GetSong; one channel, opened on first use."""

    def __init__(self, address: str, timeout_s: float) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._channel: grpc.aio.Channel | None = None
        self._matcher: matcher_pb2_grpc.MatcherAsyncStub | None = None

    def _stub(self) -> matcher_pb2_grpc.MatcherAsyncStub:
        if self._matcher is None:
            # Opened here, inside the serving event loop, which the channel is bound to.
            # With the token and TLS settings every Segue client reads (SEGUE_TOKEN_FILE, ...).
            channel = open_channel(self.address, ClientSecurity.from_env())
            self._channel, self._matcher = channel, matcher_pb2_grpc.MatcherStub(channel)
        return self._matcher

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = self._matcher = None

    async def fetch(self, field: str, song_id: str) -> common_pb2.SongAnalysis:
        """The stored analysis of `song_id` (song seconds); errors name `field`."""
        require_matcher(self.address, field)
        try:
            stored = await self._stub().GetSong(
                matcher_pb2.GetSongRequest(song_id=song_id), timeout=self.timeout_s
            )
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                raise NotStoredError(f"{field} {song_id!r} is not stored in the matcher") from e
            detail = f"{e.code().name}: {e.details()}"
            if e.code() in _TRANSIENT:
                raise MatcherUnavailableError(
                    f"the matcher at {self.address} did not give the analysis of {field} "
                    f"{song_id!r} ({detail}); retry later"
                ) from e
            raise MatcherUnavailableError(
                f"the matcher at {self.address} refused GetSong for {field} {song_id!r} ({detail})"
            ) from e
        analysis = common_pb2.SongAnalysis()
        analysis.CopyFrom(stored.analysis)
        analysis.song_id = analysis.song_id or song_id
        return analysis

    async def fetch_all(self, wanted: Mapping[str, str]) -> dict[str, common_pb2.SongAnalysis]:
        """Analyses by field name for {field: song id}, a few calls at a time."""
        if not wanted:
            return {}
        slots = asyncio.Semaphore(_PARALLEL_FETCHES)

        async def one(field: str, song_id: str) -> common_pb2.SongAnalysis:
            async with slots:
                return await self.fetch(field, song_id)

        fields = list(wanted)
        found = await asyncio.gather(*(one(f, wanted[f]) for f in fields))
        return dict(zip(fields, found, strict=True))


# Bounds of an analysis' values (documented in mixer.proto). Times of beats, cue points,
# sections and segments must lie within the audio they describe, give or take TIME_SLACK_S.
TIME_SLACK_S = 1.0
# Longest song a song-time value (song_start_s, entry_s, exit_s, a duration) may describe.
MAX_SONG_S = 86400.0
# Counts: beats up to 10 a second (600 BPM) of audio, sections, cue points and segments up
# to one a second, each plus COUNT_SLACK; vectors (feel, entry, exit) up to MAX_VECTOR.
MAX_BEATS_PER_S = 10.0
MAX_PARTS_PER_S = 1.0
COUNT_SLACK = 64
MAX_VECTOR = 4096
# Increasing beats (the only ones the mixer fits a grid to) must be this far apart at the
# median: a grid at a faster "tempo" would hold millions of beats.
MIN_BEAT_INTERVAL_S = 0.1
MAX_BPM = 1000.0
MAX_PHRASE_BARS = 256
# Integrated loudness: -inf is silence (as the embedder reports it), else within these.
LOUDNESS_RANGE_LUFS = (-200.0, 60.0)

F64 = npt.NDArray[np.float64]


class AnalysisValueError(ValueError):
    """A value of an analysis is out of range; the message starts with its field path
    (`beats[3].time_s`), relative to the analysis."""


def check_analysis_counts(analysis: common_pb2.SongAnalysis, duration_s: float) -> None:
    """Refuses more beats, sections, cue points or segments than `duration_s` of audio
    can hold (cheap: run before the audio arrives, with the longest duration allowed)."""
    limits = (
        ("beats", len(analysis.beats), MAX_BEATS_PER_S),
        ("sections", len(analysis.sections), MAX_PARTS_PER_S),
        ("cue_points", len(analysis.cue_points), MAX_PARTS_PER_S),
        ("segments", len(analysis.segments), MAX_PARTS_PER_S),
    )
    for name, count, per_s in limits:
        most = int(per_s * duration_s) + COUNT_SLACK
        if count > most:
            raise AnalysisValueError(
                f"{name}: {count} of them is over the limit of {most} for {duration_s:.0f} s "
                "of audio"
            )


def _wanted(lo: float, hi: float) -> str:
    return "finite" if (lo, hi) == (-math.inf, math.inf) else f"a number in [{lo:g}, {hi:g}]"


def _check_range(name: str, value: float, lo: float, hi: float) -> None:
    if not (math.isfinite(value) and lo <= value <= hi):
        raise AnalysisValueError(f"{name} must be {_wanted(lo, hi)}, got {value}")


def _check_all(name: str, field: str, values: Iterable[float], lo: float, hi: float) -> F64:
    """`values` as an array; names the first not finite or outside [lo, hi] as
    `name[i].field`."""
    array = np.fromiter(values, dtype=np.float64)
    bad = np.flatnonzero(~(np.isfinite(array) & (array >= lo) & (array <= hi)))
    if bad.size:
        i = int(bad[0])
        path = f"{name}[{i}].{field}" if field else f"{name}[{i}]"
        raise AnalysisValueError(f"{path} must be {_wanted(lo, hi)}, got {array[i]}")
    return array


def _check_summary(analysis: common_pb2.SongAnalysis) -> None:
    """The song-level numbers: duration, loudness, tempo and key."""
    _check_range("duration_s", analysis.duration_s, 0.0, MAX_SONG_S)
    if analysis.loudness_lufs != -math.inf:
        _check_range("loudness_lufs", analysis.loudness_lufs, *LOUDNESS_RANGE_LUFS)
    _check_range("tempo.bpm", analysis.tempo.bpm, 0.0, MAX_BPM)
    _check_range("tempo.stability", analysis.tempo.stability, 0.0, 1.0)
    _check_range("tempo.confidence", analysis.tempo.confidence, 0.0, 1.0)
    _check_range("key.confidence", analysis.key.confidence, 0.0, 1.0)
    _check_all("feel", "", analysis.feel, -math.inf, math.inf)
    if len(analysis.feel) > MAX_VECTOR:
        raise AnalysisValueError(f"feel: over {MAX_VECTOR} values")


def _check_beats(beats: Iterable[common_pb2.Beat], lo: float, hi: float) -> None:
    times = _check_all("beats", "time_s", (b.time_s for b in beats), lo, hi)
    gaps = np.diff(times)
    if gaps.size and np.all(gaps > 0) and float(np.median(gaps)) < MIN_BEAT_INTERVAL_S:
        raise AnalysisValueError(
            f"beats: their median interval {float(np.median(gaps)):.6g} s is under "
            f"{MIN_BEAT_INTERVAL_S:g} s ({60 / MIN_BEAT_INTERVAL_S:.0f} BPM)"
        )


def _check_spans(
    name: str, spans: Iterable[common_pb2.Section | common_pb2.Segment], lo: float, hi: float
) -> None:
    """Sections or segments: start_s <= end_s, both within [lo, hi]."""
    items = list(spans)
    starts = _check_all(name, "start_s", (s.start_s for s in items), lo, hi)
    ends = _check_all(name, "end_s", (s.end_s for s in items), lo, hi)
    backwards = np.flatnonzero(ends < starts)
    if backwards.size:
        raise AnalysisValueError(f"{name}[{int(backwards[0])}].end_s is before its start_s")


def check_analysis(analysis: common_pb2.SongAnalysis, duration_s: float) -> None:
    """Every number of an analysis of `duration_s` seconds of audio is finite and in range
    (mixer.proto lists the ranges); AnalysisValueError names the first that is not."""
    check_analysis_counts(analysis, duration_s)
    _check_summary(analysis)
    lo, hi = -TIME_SLACK_S, duration_s + TIME_SLACK_S
    _check_beats(analysis.beats, lo, hi)
    _check_spans("sections", analysis.sections, lo, hi)
    _check_all("sections", "confidence", (s.confidence for s in analysis.sections), 0.0, 1.0)
    _check_all("cue_points", "time_s", (c.time_s for c in analysis.cue_points), lo, hi)
    _check_all("cue_points", "energy", (c.energy for c in analysis.cue_points), 0.0, 1.0)
    _check_all(
        "cue_points", "phrase_bars", (c.phrase_bars for c in analysis.cue_points),
        0, MAX_PHRASE_BARS,
    )  # fmt: skip
    _check_spans("segments", analysis.segments, lo, hi)
    for i, segment in enumerate(analysis.segments):
        _check_range(f"segments[{i}].energy", segment.energy, 0.0, 1.0)
        for which in ("entry", "exit"):
            vector = getattr(segment, which)
            if len(vector) > MAX_VECTOR:
                raise AnalysisValueError(f"segments[{i}].{which}: over {MAX_VECTOR} values")
            _check_all(f"segments[{i}].{which}", "", vector, -math.inf, math.inf)
