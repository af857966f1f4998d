"""Whole DJ mixes: songs played one after another, a rendered transition at every cue.

Every song is brought to the target loudness once (BS.1770, over the part of it that is
heard), so a song's body and both of its transitions play at one gain. Each transition is
the transition renderer's plan and mix (beat-matched, bass swap, ...) of the outgoing song's
remaining audio into the incoming song from its entry point; the incoming song then ramps
back to its own tempo, so between transitions every song plays untouched, sample for
sample. Two joins per transition:

- into the transition: its first samples are the outgoing song itself at the same gain, so
  the body and the transition meet exactly;
- out of it: the incoming song has been through WSOLA, which leaves it a few samples off its
  own timeline; the join finds that offset by normalised cross-correlation and crossfades
  over 20 ms into the untouched song at the matching sample.

Each song's beats and key come from its analysis: the caller's (the embedder's final analysis,
`segue mix --playlist --analyses DIR`) or else the structure analysis of the song, made once,
so every transition knows both grids.

One true-peak limiter runs over the whole mix at the end, then every transition is measured
where it lies in the final mix (the same metrics as a single render).

Songs are shared between their incoming and outgoing transitions: the incoming transition
(overlap, tempo ramp, a second of context) may use at most `INCOMING_SHARE` of the song's
heard part, and the outgoing one only what the incoming one left. When the requested
length does not fit, it is halved until it does, and the transition's length_reason says so.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from segue.audio import decode
from segue.export.cue import CueTrack
from segue.export.cue import cue_sheet as cue_sheet_text
from segue.loudness import gain_to_target, integrated_lufs
from segue.v1 import common_pb2, matcher_pb2, mixer_pb2

from . import beatgrid
from .beatgrid import BeatGrid
from .errors import MixInputError, TempoMismatchError
from .excerpt import Excerpt
from .length_reason import Halving, LengthReason, LengthRequest, UnmatchedFade
from .limiter import limit, true_peak_dbtp
from .mixdown import ENVELOPE_RATE_HZ, Mixed, mix_transition
from .plan import Plan
from .planner import plan_transition
from .quality_report import Heard, quality_report
from .style import Params, Style

FloatArray = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

INCOMING_SHARE = 0.5
DEFAULT_RAMP_BARS = 2
JOIN_S = 0.02
UNMATCHED_FADE_S = 8.0
_CONTEXT_S = 1.0
_ALIGN_SPAN = 4096
_ALIGN_SEARCH = 640  # more than WSOLA's largest offset (256) plus rounding
_METRIC_MARGIN_S = 4.0


@dataclass(frozen=True)
class MixTrack:
    """One song of the mix: its audio and where it is entered and left (song seconds)."""

    audio: FloatArray  # [2, frames] at the mix's rate
    entry_s: float = 0.0  # where the song starts to be heard
    exit_s: float = 0.0  # where it is gone; 0 or past the end = its end
    title: str = ""
    song_id: str = ""
    uri: str = ""
    # Beats etc. of the whole song (song seconds); estimated from the audio when absent.
    analysis: common_pb2.SongAnalysis | None = None

    def bounds(self, rate_hz: int) -> tuple[int, int]:
        frames = self.audio.shape[1]
        lo = min(max(0, round(self.entry_s * rate_hz)), frames)
        hi = frames if self.exit_s <= 0 else min(frames, round(self.exit_s * rate_hz))
        return lo, hi


@dataclass(frozen=True)
class CueEntry:
    """Where one song sits in the mix."""

    number: int
    title: str
    song_id: str
    uri: str
    start_s: float  # where it becomes the main song (the crossover point; 0 for the first)
    heard_from_s: float  # where it starts to be heard (the start of its incoming overlap)
    heard_until_s: float
    song_entry_s: float  # the song's own time at heard_from_s
    song_exit_s: float
    tempo_bpm: float
    level_db: float  # gain that brought it to the target loudness


@dataclass(frozen=True)
class TransitionSummary:
    """One transition: where it lies in the mix and its quality report (measured in the mix)."""

    number: int  # 1 = from song 1 into song 2
    start_s: float  # where the rendered transition begins in the mix (context included)
    overlap_start_s: float
    overlap_end_s: float
    report: mixer_pb2.QualityReport
    join_offset_samples: int  # how far WSOLA had left the incoming song from its own timeline
    end_s: float = 0.0  # where the transition ends in the mix and the incoming song plays on
    incoming_resume_s: float = 0.0  # the incoming song's own time at end_s
    # The report's length_reason as data; None for a summary read back from a sheet.
    length_reason: LengthReason | None = None


@dataclass(frozen=True)
class SongPlacement:
    """One song's own time on the mix's time axis, and its beats and sections placed there.

    `clock_mix_s`/`clock_song_s` are matching anchors (both strictly increasing), linear in
    between: the song plays untouched (slope 1) except where it is stretched into a
    transition. Beats and sections are in mix seconds, kept where the song is heard.
    """

    clock_mix_s: F64
    clock_song_s: F64
    beats_s: F64
    beat_positions: npt.NDArray[np.int64]  # 1 = downbeat, 0 = unknown
    beat_source: str  # the grid's source: "analysis", "estimated" or "free time"
    sections: list[dict[str, Any]]  # start_s, end_s (mix seconds), letter, function

    def to_mix(self, song_s: F64) -> F64:
        """Mix seconds of song seconds (linear past either end of the clock)."""
        out: F64 = np.interp(song_s, self.clock_song_s, self.clock_mix_s, left=np.nan, right=np.nan)
        return out


# Largest error of the simplified gain curves the sheet carries (linear gain).
GAIN_TOLERANCE = 0.002


def simplify_curve(values: F64, tolerance: float = GAIN_TOLERANCE) -> list[int]:
    """Indexes of the points that keep a sampled curve within `tolerance` when drawn as
    straight lines between them (Ramer-Douglas-Peucker on the sample index)."""
    n = values.size
    if n <= 2:
        return list(range(n))
    keep = np.zeros(n, dtype=bool)
    keep[0] = keep[-1] = True
    stack = [(0, n - 1)]
    while stack:
        i, j = stack.pop()
        if j - i < 2:
            continue
        x = np.arange(i + 1, j)
        line = values[i] + (values[j] - values[i]) * (x - i) / (j - i)
        err = np.abs(values[i + 1 : j] - line)
        k = int(np.argmax(err))
        if err[k] > tolerance:
            mid = i + 1 + k
            keep[mid] = True
            stack.extend(((i, mid), (mid, j)))
    return [int(i) for i in np.flatnonzero(keep)]


def gain_points(lane: F64, rate_hz: float = ENVELOPE_RATE_HZ) -> list[list[float]]:
    """A gain lane as [[mix seconds, gain], ...]: straight lines between the points, 0
    before the first and after the last; within GAIN_TOLERANCE of the lane."""
    heard = np.flatnonzero(lane > GAIN_TOLERANCE / 2)  # float dust is not heard
    if heard.size == 0:
        return []
    lo, hi = max(0, int(heard[0]) - 1), min(lane.size - 1, int(heard[-1]) + 1)
    part = lane[lo : hi + 1]
    return [[round((lo + i) / rate_hz, 3), round(float(part[i]), 4)] for i in simplify_curve(part)]


def timeline_json(gains: F64, placements: Sequence[SongPlacement]) -> dict[str, Any]:
    """The sheet's "timeline": the mix mask and every song placed on the mix's time axis.

    {"gain_tolerance": GAIN_TOLERANCE, "songs": [one per song, in order: {
        "number": 1-based, as in "songs",
        "gain": [[mix_s, gain], ...] the song's fade gain (0 to 1, before its loudness
            level), straight lines between points, 0 outside them,
        "clock": [[mix_s, song_s], ...] the song's own time at mix times, linear between,
        "beats_s": [mix_s, ...] its beat grid where it is heard,
        "beat_positions": [...] place of each beat in its bar (1 = downbeat, 0 = unknown),
        "beat_source": "analysis" | "estimated" | "free time",
        "sections": [{"start_s", "end_s", "letter", "function"}, ...] clipped to where
            it is heard}]}
    Mixes read back from a sheet have only "number" and "gain".
    """
    songs: list[dict[str, Any]] = []
    for i, lane in enumerate(gains):
        song: dict[str, Any] = {"number": i + 1, "gain": gain_points(lane)}
        if i < len(placements):
            p = placements[i]
            song |= {
                "clock": [
                    [round(float(m), 4), round(float(t), 4)]
                    for m, t in zip(p.clock_mix_s, p.clock_song_s, strict=True)
                ],
                "beats_s": [round(float(b), 4) for b in p.beats_s],
                "beat_positions": [int(b) for b in p.beat_positions],
                "beat_source": p.beat_source,
                "sections": p.sections,
            }
        songs.append(song)
    return {"gain_tolerance": GAIN_TOLERANCE, "songs": songs}


@dataclass
class ContinuousMix:
    audio: FloatArray  # [2, frames], limited
    rate_hz: int
    cues: list[CueEntry]
    transitions: list[TransitionSummary]
    # Gain of every song over the mix at ENVELOPE_RATE_HZ (the mix mask of the whole set).
    gains: F64  # [songs, points]
    loudness_lufs: float
    true_peak_dbtp: float
    render_s: float
    meta: dict[str, Any] = field(default_factory=dict)
    # Every song's own time, beats and sections placed on the mix timeline (same order as
    # `cues`); empty for a mix read back from a sheet.
    placements: list[SongPlacement] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return float(self.audio.shape[1]) / self.rate_hz

    def cue_sheet(self, audio_file: str, title: str = "Segue mix") -> str:
        """The mix as a CD cue sheet (.cue): one TRACK per song at its crossover point."""
        tracks = [CueTrack(c.number, c.title, c.song_id, c.start_s) for c in self.cues]
        return cue_sheet_text(tracks, audio_file, title)

    def to_json(self) -> dict[str, Any]:
        """The JSON sheet (`segue mix --playlist` writes it as SET.json).

        Keys: duration_s, sample_rate_hz, loudness_lufs, true_peak_dbtp, render_s,
        speed_x_realtime; "songs" (every CueEntry's fields); "transitions" (where each lies
        in the mix, its join, its quality report and length reason); and "timeline"
        (see `timeline_json`): every song's gain curve, clock, beats and sections on the
        mix's own time axis.
        """
        from google.protobuf.json_format import MessageToDict

        return {
            "duration_s": self.duration_s,
            "sample_rate_hz": self.rate_hz,
            "loudness_lufs": self.loudness_lufs,
            "true_peak_dbtp": self.true_peak_dbtp,
            "render_s": self.render_s,
            "speed_x_realtime": self.duration_s / max(self.render_s, 1e-9),
            "songs": [vars(c) for c in self.cues],
            "transitions": [
                {
                    "number": t.number,
                    "start_s": t.start_s,
                    "overlap_start_s": t.overlap_start_s,
                    "overlap_end_s": t.overlap_end_s,
                    "end_s": t.end_s,
                    "incoming_resume_s": t.incoming_resume_s,
                    "join_offset_samples": t.join_offset_samples,
                    "report": MessageToDict(t.report, preserving_proto_field_name=True),
                    **(
                        {"length_reason": t.length_reason.to_json()}
                        if t.length_reason is not None
                        else {}
                    ),
                }
                for t in self.transitions
            ],
            "timeline": timeline_json(self.gains, self.placements),
            **self.meta,
        }

    def to_json_text(self) -> str:
        return json.dumps(self.to_json(), indent=2)


def song_analysis(track: MixTrack, rate_hz: int) -> common_pb2.SongAnalysis:
    """The song's analysis (song seconds): the caller's when it has beats (the embedder's
    final analysis has beats, tempo and key), else the structure analysis of the part of the
    song that is heard, the same analysis the embedder would have made.
    """
    if track.analysis is not None and len(track.analysis.beats) >= beatgrid.MIN_BEATS:
        return track.analysis
    lo, hi = track.bounds(rate_hz)
    analysis = beatgrid.analyse(track.audio[:, lo:hi].mean(axis=0, dtype=np.float32), rate_hz)
    for beat in analysis.beats:
        beat.time_s += lo / rate_hz
    for section in analysis.sections:
        section.start_s += lo / rate_hz
        section.end_s += lo / rate_hz
    for cue in analysis.cue_points:
        cue.time_s += lo / rate_hz
    if track.analysis is not None and track.analysis.HasField("key"):
        analysis.key.CopyFrom(track.analysis.key)
    return analysis


def song_grid(
    track: MixTrack, rate_hz: int, analysis: common_pb2.SongAnalysis | None = None
) -> BeatGrid:
    """The song's beat grid, from `analysis` (default `song_analysis`); free time without beats.

    A grid from beats the mixer computed itself counts as "estimated" (see tempo.match_tempo).
    """
    analysis = analysis if analysis is not None else song_analysis(track, rate_hz)
    given = analysis is track.analysis
    grid = beatgrid.from_analysis(analysis, "analysis" if given else "estimated")
    if grid is not None:
        return grid
    lo, hi = track.bounds(rate_hz)
    free = beatgrid.free_time((hi - lo) / rate_hz)
    return replace(free, times_s=free.times_s + lo / rate_hz)


def _excerpt(
    name: str,
    analysis: common_pb2.SongAnalysis,
    track: MixTrack,
    grid: BeatGrid,
    lo: int,
    hi: int,
    rate_hz: int,
) -> Excerpt:
    """track.audio[:, lo:hi] with the song's grid and key moved to the excerpt's time."""
    offset = lo / rate_hz
    moved = grid.shifted(offset, offset, hi / rate_hz)
    info = mixer_pb2.ExcerptInfo(encoded=True)
    if analysis.HasField("key"):
        info.analysis.key.CopyFrom(analysis.key)
    return Excerpt(
        name,
        np.ascontiguousarray(track.audio[:, lo:hi]),
        rate_hz,
        info,
        grid=moved if moved.times_s.size >= beatgrid.MIN_BEATS else None,
    )


def _fits(plan: Plan) -> bool:
    """True when B is back at its own tempo (and unshifted) when the transition ends."""
    end = np.array([plan.duration_s - 1.0 / plan.rate_hz])
    return plan.playback.key_shift == 0 and abs(float(plan.time_map.speed_at(end)[0]) - 1.0) < 1e-6


def _plan(a: Excerpt, b: Excerpt, style: Style, params: Params, label: str) -> Plan:
    """The requested transition, or the longest halving of it that both songs have room for.

    A pair too far apart in tempo to beat-match (TempoMismatchError) is faded over
    UNMATCHED_FADE_S at the songs' own tempos instead, as a DJ would: a set must go on.
    """
    attempt, halved = style, False
    unmatched: UnmatchedFade | None = None
    while True:
        try:
            plan = plan_transition(a, b, attempt, params)
            if _fits(plan):
                halving = _halving(style, attempt) if halved else None
                reason = replace(plan.reason, unmatched=unmatched, halved=halving)
                return replace(plan, reason=reason)
            bars = plan.overlap.bars
            problem = f"{label}: the incoming song is not back at its own tempo in time"
        except MixInputError as e:
            if isinstance(e, TempoMismatchError) and attempt.beat_match:
                unmatched = UnmatchedFade(e.mismatch, UNMATCHED_FADE_S)
                attempt = replace(
                    attempt, beat_match=False, length="seconds", seconds=UNMATCHED_FADE_S
                )
                continue
            bars = attempt.bars if attempt.length == "bars" else 16
            problem = f"{label}: {e}"
        if bars <= 1:
            raise MixInputError(f"{problem} (even a 1-bar transition does not fit)")
        attempt, halved = _halved(attempt, bars), True


def _halved(attempt: Style, bars: int) -> Style:
    """The attempt at half of `bars`, with its tempo ramp no longer than that."""
    return replace(
        attempt,
        length="bars",
        bars=bars // 2,
        tempo_ramp_bars=max(1, min(attempt.tempo_ramp_bars, bars // 2)),
    )


def _halving(style: Style, attempt: Style) -> Halving:
    """The set's request (`style`) halved to `attempt`, for the length reason."""
    request = LengthRequest(style.length, style.bars, style.seconds, style.mashup)
    return Halving(request, attempt.bars, attempt.tempo_ramp_bars)


def _join_offset(stem_tail: FloatArray, song: FloatArray, at: int) -> int:
    """Offset d for which song[:, at + d - len : at + d] best matches the transition's tail."""
    n = stem_tail.shape[1]
    lo = max(0, at - n - _ALIGN_SEARCH)
    hi = min(song.shape[1], at + _ALIGN_SEARCH)
    ref = stem_tail.mean(axis=0).astype(np.float64)
    seg = song[:, lo:hi].mean(axis=0).astype(np.float64)
    if seg.size < n or float(np.dot(ref, ref)) < 1e-10:
        return 0
    corr = np.correlate(seg, ref, mode="valid")
    energy = np.concatenate([[0.0], np.cumsum(seg * seg)])
    window = energy[n:] - energy[:-n]
    ncc = corr / np.sqrt(np.maximum(window, 1e-12) * float(np.dot(ref, ref)))
    start = lo + int(np.argmax(ncc))  # where the matching stretch begins in the song
    return int(start + n - at)


@dataclass(frozen=True)
class _Song:
    """A song of the mix, ready to play: its part heard, its gain, its analysis and grid."""

    track: MixTrack
    lo: int  # the heard part, in the song's samples
    hi: int
    level: float  # linear gain to the target loudness
    analysis: common_pb2.SongAnalysis
    grid: BeatGrid

    @property
    def label(self) -> str:
        return self.track.title or self.track.song_id


_NO_AUDIO = np.zeros((2, 0), np.float32)  # in what is kept once its audio has been written


def _played(song: _Song, tracks: Sequence[MixTrack], i: int) -> _Song:
    """`song` (tracks[i]) without its audio, in `tracks` too, once it has been played."""
    if not isinstance(tracks, list):
        raise TypeError("consume=True needs the tracks as a list")
    track = replace(song.track, audio=np.zeros((song.track.audio.shape[0], 0), np.float32))
    tracks[i] = track
    return replace(song, track=track)


@dataclass(frozen=True)
class _Joined:
    """A transition mixed and joined to the untouched incoming song."""

    plan: Plan
    mixed: Mixed
    reason: LengthReason  # the plan's reason with the bass swap
    audio: FloatArray  # the transition, its tail crossfaded into the incoming song
    offset: int  # how far WSOLA had left the incoming song from its own timeline (samples)
    resume: int  # the incoming song's sample where the mix plays on untouched


@dataclass(frozen=True)
class _Placed:
    """A joined transition at its place in the mix."""

    number: int  # 1 = from song 1 into song 2
    start: int  # the mix's sample where the transition begins
    joined: _Joined


@dataclass
class _Timeline:
    """The mix as it is written: its audio pieces in order and every song's gain lanes."""

    rate_hz: int
    # Per song: (mix sample where a span starts, its length, gain at ENVELOPE_RATE_HZ or
    # None for a flat 1).
    lanes: list[list[tuple[int, int, F64 | None]]]
    pieces: list[FloatArray] = field(default_factory=list)
    written: int = 0

    def add(self, audio: FloatArray, gains: Mapping[int, F64 | None]) -> int:
        """Appends `audio`, heard as each song in `gains` at its curve; returns its start."""
        start = self.written
        self.pieces.append(audio)
        for song, curve in gains.items():
            self.lanes[song].append((start, audio.shape[1], curve))
        self.written += audio.shape[1]
        return start

    def audio(self) -> FloatArray:
        """The written audio as one array. The pieces are let go one by one as they are
        copied in, so a long mix is never held twice."""
        channels = self.pieces[0].shape[0] if self.pieces else 2
        out = np.empty((channels, self.written), np.float32)
        at = 0
        self.pieces.reverse()
        while self.pieces:
            piece = self.pieces.pop()
            out[:, at : at + piece.shape[1]] = piece
            at += piece.shape[1]
            del piece
        return out


def render_continuous_mix(
    tracks: Sequence[MixTrack], style: Style, params: Params, *, consume: bool = False
) -> ContinuousMix:
    """Renders the songs into one continuous mix with a transition at every cue.

    With `consume`, `tracks` (a list) gives up each song's audio once the song has been
    played, replacing it by a copy without audio: a long mix then holds its own audio and
    the songs still to come, never every song twice over.

    Raises MixInputError naming the transition when two songs cannot be mixed (tempo beyond
    the stretch limit, or too little audio for even a 1-bar transition).
    """
    started = time.perf_counter()
    songs = _songs(tracks, params)
    rate = params.rate_hz
    params = replace(params, context_s=_CONTEXT_S)
    # The incoming song must be back at its own tempo, and unshifted, when it plays alone.
    style = replace(
        style,
        allow_key_shift=False,
        mashup=False,
        tempo_ramp_bars=style.tempo_ramp_bars or DEFAULT_RAMP_BARS,
    )
    timeline = _Timeline(rate, [[] for _ in songs])
    placed: list[_Placed] = []
    clocks: list[list[tuple[F64, F64]]] = [[] for _ in songs]
    cursor = songs[0].lo  # next unplayed sample of the current song
    for i in range(len(songs) - 1):
        joined = _transition(songs[i], songs[i + 1], i + 1, cursor, style, params)
        placed.append(_play(songs[i], songs[i + 1], i, cursor, joined, timeline, clocks))
        cursor = joined.resume
        if consume:
            songs[i] = _played(songs[i], tracks, i)
    last = len(songs) - 1
    body = timeline.add(
        songs[last].track.audio[:, cursor : songs[last].hi] * np.float32(songs[last].level),
        {last: None},
    )
    clocks[last].append(_untouched(body, cursor, songs[last].hi - cursor, rate))
    if consume:
        songs[last] = _played(songs[last], tracks, last)
    return _finished(songs, timeline, placed, params, started, clocks)


def _play(a: _Song, b: _Song, i: int, cursor: int, joined: _Joined, timeline: _Timeline,
          clocks: list[list[tuple[F64, F64]]]) -> _Placed:
    """Writes song `i` (A) from `cursor` up to transition i+1, then the transition into B."""
    rate = timeline.rate_hz
    a_origin = cursor + round(joined.plan.overlap.a_origin_s * rate)
    body = timeline.add(a.track.audio[:, cursor:a_origin] * np.float32(a.level), {i: None})
    gains = {i: joined.mixed.gain_outgoing, i + 1: joined.mixed.gain_incoming}
    start = timeline.add(joined.audio, gains)
    # A plays untouched through its body and the transition; B along the time map.
    clocks[i].append(_untouched(body, cursor, a_origin - cursor + joined.plan.n_out, rate))
    clocks[i + 1].append(_stretched(start, b.lo, joined.plan))
    # What the summary needs: the audio is in the timeline, B's excerpt no longer needed.
    kept = replace(joined, audio=_NO_AUDIO, plan=replace(joined.plan, b_audio=_NO_AUDIO))
    return _Placed(i + 1, start, kept)


def _untouched(mix_at: int, song_at: int, frames: int, rate: int) -> tuple[F64, F64]:
    """Clock anchors of a song played sample for sample from song_at, at mix sample mix_at."""
    span = np.array([0.0, max(frames, 1) / rate])
    return mix_at / rate + span, song_at / rate + span


def _stretched(mix_at: int, song_lo: int, plan: Plan) -> tuple[F64, F64]:
    """Clock anchors of the incoming song stretched along the plan's time map (its excerpt
    begins at song_lo), for a transition placed at mix sample mix_at."""
    rate = plan.rate_hz
    inner = plan.time_map.output_s
    out_t = np.unique(
        np.concatenate([[0.0], inner[(inner > 0) & (inner < plan.duration_s)], [plan.duration_s]])
    )
    return mix_at / rate + out_t, song_lo / rate + plan.time_map.to_input(out_t)


def _clock(pieces: list[tuple[F64, F64]]) -> tuple[F64, F64]:
    """The pieces' anchors in order, keeping only those that move both times forward (the
    join onto the untouched song moves the song's time by a few samples)."""
    mix_s = np.concatenate([m for m, _ in pieces])
    song_s = np.concatenate([t for _, t in pieces])
    keep = [0]
    for k in range(1, mix_s.size):
        if mix_s[k] > mix_s[keep[-1]] and song_s[k] > song_s[keep[-1]]:
            keep.append(k)
    return mix_s[keep], song_s[keep]


_SECTION_FUNCTIONS = {
    v: k.removeprefix("SECTION_FUNCTION_").lower() for k, v in common_pb2.SectionFunction.items()
}


def _bar_positions_extended(grid: BeatGrid, count: int) -> npt.NDArray[np.int64]:
    """The grid's bar positions, counted on through the `count - len(grid)` extended beats."""
    known = grid.positions.astype(np.int64)
    extra = count - known.size
    if extra <= 0 or known.size == 0 or known[-1] <= 0:
        return np.concatenate([known, np.zeros(max(0, extra), np.int64)])[:count]
    bar = grid.beats_per_bar
    more = (int(known[-1]) - 1 + np.arange(1, extra + 1)) % bar + 1
    return np.concatenate([known, more.astype(np.int64)])


def _placement(
    song: _Song, pieces: list[tuple[F64, F64]], heard: tuple[float, float]
) -> SongPlacement:
    """The song's clock, and its beats and sections where it is heard, on the mix's axis."""
    mix_s, song_s = _clock(pieces)
    grid = song.grid
    # The grid continued to the song's end at its period, as the transitions use it.
    times = grid.extended(float(song_s[-1]))
    positions = _bar_positions_extended(grid, times.size)
    beats = np.interp(times, song_s, mix_s, left=np.nan, right=np.nan)
    inside = np.isfinite(beats) & (beats >= heard[0] - 1e-6) & (beats <= heard[1] + 1e-6)
    sections = []
    for sec in song.analysis.sections:
        ends = np.interp(np.array([sec.start_s, sec.end_s]), song_s, mix_s)
        lo, hi = max(float(ends[0]), heard[0]), min(float(ends[1]), heard[1])
        if hi > lo:
            sections.append(
                {
                    "start_s": round(lo, 3),
                    "end_s": round(hi, 3),
                    "letter": sec.letter,
                    "function": _SECTION_FUNCTIONS.get(sec.function, "unspecified"),
                }
            )
    return SongPlacement(
        mix_s,
        song_s,
        beats[inside],
        positions[inside],
        grid.source,
        sections,
    )


def _songs(tracks: Sequence[MixTrack], params: Params) -> list[_Song]:
    """Every song's heard part, gain, analysis and grid; refuses a mix it cannot play."""
    if len(tracks) < 1:
        raise MixInputError("a mix needs at least one song")
    rate = params.rate_hz
    bounds = [t.bounds(rate) for t in tracks]
    for t, (lo, hi) in zip(tracks, bounds, strict=True):
        if hi - lo < 2 * rate:
            raise MixInputError(
                f"song {t.title or t.song_id!r}: under 2 s between its entry "
                f"({t.entry_s:.1f} s) and exit"
            )
    levels = [
        gain_to_target(integrated_lufs(t.audio[:, lo:hi], rate), params.target_lufs)
        for t, (lo, hi) in zip(tracks, bounds, strict=True)
    ]
    # One analysis per song (the caller's, else computed once for the whole song).
    analyses = [song_analysis(t, rate) for t in tracks]
    return [
        _Song(t, lo, hi, level, analysis, song_grid(t, rate, analysis))
        for t, (lo, hi), level, analysis in zip(tracks, bounds, levels, analyses, strict=True)
    ]


def _transition(
    a: _Song, b: _Song, number: int, cursor: int, style: Style, params: Params
) -> _Joined:
    """Transition `number`: A from `cursor` into B, mixed at the songs' levels and joined."""
    rate = params.rate_hz
    label = f"transition {number} ({a.label} -> {b.label})"
    share = b.lo + int(INCOMING_SHARE * (b.hi - b.lo))
    a_ex = _excerpt("outgoing", a.analysis, a.track, a.grid, cursor, a.hi, rate)
    b_ex = _excerpt("incoming", b.analysis, b.track, b.grid, b.lo, share, rate)
    plan = _plan(a_ex, b_ex, style, params, label)
    mixed = mix_transition(plan, a_ex, style, params, levels=(a.level, b.level))
    # Join the transition's tail to the untouched incoming song.
    audio = mixed.audio
    n_join = round(JOIN_S * rate)
    b_end = b.lo + round(float(plan.time_map.to_input(np.array([plan.duration_s]))[0]) * rate)
    tail = audio[:, -_ALIGN_SPAN:] / np.float32(b.level)
    offset = _join_offset(tail, b.track.audio, b_end)
    resume = b_end + offset
    ramp = np.linspace(0.0, 1.0, n_join, dtype=np.float32)
    original = b.track.audio[:, resume - n_join : resume] * np.float32(b.level)
    audio[:, -n_join:] = audio[:, -n_join:] * (1.0 - ramp) + original * ramp  # ours to change
    reason = plan.reason.with_bass_swap(mixed.bass_swap)
    return _Joined(plan, replace(mixed, audio=_NO_AUDIO), reason, audio, offset, resume)


def _finished(
    songs: list[_Song],
    timeline: _Timeline,
    placed: list[_Placed],
    params: Params,
    started: float,
    clocks: list[list[tuple[F64, F64]]],
) -> ContinuousMix:
    """The written mix limited, every transition measured in it, and every song's cue."""
    rate = params.rate_hz
    limited = limit(timeline.audio(), rate, params.ceiling_dbtp, in_place=True)
    out = limited.audio
    transitions = [_summary(out, rate, p) for p in placed]
    cues = _cues(songs, placed, transitions, timeline.written / rate, rate)
    return ContinuousMix(
        audio=out,
        rate_hz=rate,
        cues=cues,
        transitions=transitions,
        gains=_gain_lanes(timeline.lanes, timeline.written, rate),
        loudness_lufs=integrated_lufs(out, rate),
        true_peak_dbtp=limited.peak_dbtp,
        render_s=time.perf_counter() - started,
        placements=[
            _placement(s, pieces, (c.heard_from_s, c.heard_until_s))
            for s, pieces, c in zip(songs, clocks, cues, strict=True)
        ],
    )


def _cues(
    songs: list[_Song],
    placed: list[_Placed],
    transitions: list[TransitionSummary],
    total_s: float,
    rate: int,
) -> list[CueEntry]:
    """Where each song sits in the mix: heard from its incoming overlap to its outgoing one."""
    heard_from = [0.0] * len(songs)
    starts = [0.0] * len(songs)
    song_entry = [songs[0].lo / rate] + [0.0] * (len(songs) - 1)
    for p in placed:
        overlap = p.joined.plan.overlap
        ov0 = (p.start + overlap.start_s * rate) / rate
        ov1 = (p.start + overlap.end_s * rate) / rate
        heard_from[p.number] = ov0
        starts[p.number] = 0.5 * (ov0 + ov1)
        song_entry[p.number] = songs[p.number].lo / rate + float(overlap.beats_b[overlap.ib_start])
    return [
        CueEntry(
            number=i + 1,
            title=s.track.title or s.track.song_id or f"song {i + 1}",
            song_id=s.track.song_id,
            uri=s.track.uri,
            start_s=starts[i],
            heard_from_s=heard_from[i],
            heard_until_s=transitions[i].overlap_end_s if i < len(transitions) else total_s,
            song_entry_s=song_entry[i],
            song_exit_s=s.hi / rate,
            tempo_bpm=s.grid.bpm,
            level_db=20.0 * math.log10(max(s.level, 1e-9)),
        )
        for i, s in enumerate(songs)
    ]


def _gain_lanes(lanes: list[list[tuple[int, int, F64 | None]]], frames: int, rate: int) -> F64:
    """Every song's gain over the mix [songs, points] at ENVELOPE_RATE_HZ."""
    points = int(frames / rate * ENVELOPE_RATE_HZ) + 1
    gains = np.zeros((len(lanes), points))
    for song, spans in enumerate(lanes):
        for start, length, curve in spans:
            p0 = int(start / rate * ENVELOPE_RATE_HZ)
            p1 = min(points, int((start + length) / rate * ENVELOPE_RATE_HZ) + 1)
            if curve is None:
                gains[song, p0:p1] = 1.0
            else:
                n = min(p1 - p0, curve.size)
                gains[song, p0 : p0 + n] = curve[:n]
    return gains


def _summary(out: FloatArray, rate: int, placed: _Placed) -> TransitionSummary:
    """The transition's quality report, measured where it lies in the final mix."""
    plan, joined = placed.joined.plan, placed.joined
    start = placed.start
    ov0 = start / rate + plan.overlap.start_s
    ov1 = start / rate + plan.overlap.end_s
    lo = max(0, int((ov0 - _METRIC_MARGIN_S) * rate))
    hi = min(out.shape[1], int((ov1 + _METRIC_MARGIN_S) * rate))
    region = out[:, lo:hi]
    heard = Heard(
        region,
        rate,
        ov0 - lo / rate,
        ov1 - lo / rate,
        true_peak_dbtp(region),
        integrated_lufs(region, rate),
    )
    error = joined.mixed.beat_alignment_error_ms
    return TransitionSummary(
        placed.number,
        start / rate,
        ov0,
        ov1,
        quality_report(plan, joined.reason, error, heard),
        joined.offset,
        end_s=start / rate + plan.duration_s,
        incoming_resume_s=joined.resume / rate,
        length_reason=joined.reason,
    )


def step_uri(step: matcher_pb2.PlaylistStep, n: int) -> str:
    """The file of playlist step `n` (1-based); MixInputError when the matcher stored none."""
    if not step.metadata.uri:
        raise MixInputError(
            f"playlist step {n} ({step.song_id}) has no metadata.uri: index "
            "songs with their file path (segue index) to mix them"
        )
    return step.metadata.uri


def tracks_from_plan(
    plan: matcher_pb2.PlanPlaylistResponse,
    rate_hz: int,
    analyses: Mapping[str, common_pb2.SongAnalysis] | None = None,
) -> list[MixTrack]:
    """The matcher's playlist as songs to mix, decoded from each step's metadata.uri.

    `analyses` (by song id, e.g. the embedder's) give the songs their beats and keys; songs
    without one are analysed here. Raises MixInputError naming the step whose audio is
    missing or undecodable.
    """
    analyses = analyses or {}
    tracks = []
    for n, step in enumerate(plan.steps, start=1):
        uri = step_uri(step, n)
        try:
            audio = decode(uri, rate_hz, channels=2).T.copy()
        except Exception as e:  # DecodeError, or the file is gone
            raise MixInputError(
                f"playlist step {n} ({step.song_id}): cannot read {uri}: {e}"
            ) from e
        tracks.append(
            MixTrack(
                audio=np.ascontiguousarray(audio, dtype=np.float32),
                entry_s=step.entry_time_s,
                exit_s=step.exit_time_s,
                title=step.metadata.title or step.song_id,
                song_id=step.song_id,
                uri=uri,
                analysis=analyses.get(step.song_id),
            )
        )
    return tracks
