"""Planning a transition: from two excerpts to where the overlap sits on both songs.

Decisions, in order: B's key shift (`keys.choose_key_shift`) -> how B is played: its grid
at the metrical level that fits the stretch limit, or a free-time fade (`tempo`) -> where A
is gone (its cue, else its last downbeat) -> the overlap's length (bars, seconds or `auto`)
-> where the overlap sits on B's grid -> the output's time axis -> the time map (beat to
beat through the overlap, then the tempo ramp back to B's own tempo).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from segue.v1 import common_pb2

from . import keys
from .auto_length import PairFacts, choose_length, phrase_bars
from .beatgrid import BeatGrid
from .errors import MixInputError
from .excerpt import Excerpt
from .length_reason import LengthReason, LengthRequest
from .plan import Overlap, Plan, Playback
from .stretch import TimeMap
from .style import Params, Style
from .tempo import choose_playback

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class OutgoingBeats:
    """A's beats through the excerpt, their places in the bar, and where A is gone."""

    times_s: F64  # A's time
    positions: I64  # 1 = downbeat; 0 = unknown
    end: int  # index of the beat where A is gone (-1: no beat inside the excerpt)


def plan_transition(a: Excerpt, b: Excerpt, style: Style, params: Params) -> Plan:
    """Places the overlap on both beat grids; raises MixInputError on unusable inputs."""
    key = keys.choose_key_shift(a, b, style.allow_key_shift)
    b_audio, pitch = keys.pitch_shift_by_resampling(b.audio, key.semitones)
    b_duration = b_audio.shape[1] / params.rate_hz
    playback = choose_playback(a, b, key, (pitch, b_duration), style, params)
    outgoing = outgoing_beats(a, playback.grid_a)
    reason = choose_overlap_length(a, b, style, params, playback, outgoing.end, b_duration)
    ia_start = outgoing_start(a, outgoing.end, reason.beats, playback.grid_a.period_s)
    beats_b, ib_start, ib_end = place_on_incoming(b, playback, reason.beats, b_duration)
    overlap = place_on_output(
        outgoing, ia_start, (beats_b, ib_start, ib_end), reason, params.context_s
    )
    time_map, latest_end_s = incoming_time_map(
        overlap, pitch, style.tempo_ramp_bars * overlap.beats_per_bar, params.context_s
    )
    b_end_out = float(time_map.to_output(np.array([b_duration]))[0])
    duration = min(latest_end_s, b_end_out)
    if duration <= overlap.end_s:
        raise MixInputError(f"incoming excerpt ({b.duration_s:.2f} s) ends inside the overlap")
    n_out = round(duration * params.rate_hz)
    return Plan(params.rate_hz, playback, overlap, time_map, n_out, b_audio, reason)


def outgoing_beats(a: Excerpt, grid_a: BeatGrid) -> OutgoingBeats:
    """A's grid continued to the excerpt's end, bar count included, and where A is gone."""
    bpb = grid_a.beats_per_bar
    beats_a = grid_a.extended(a.duration_s)
    positions_a = (
        np.resize(grid_a.positions, beats_a.size)
        if grid_a.positions.size
        else np.zeros(beats_a.size, np.int64)
    )
    if grid_a.positions.size and grid_a.positions.max() > 0:
        # Continue the bar count past the analysed beats.
        last = int(grid_a.positions[-1])
        tail = (last + np.arange(1, beats_a.size - grid_a.positions.size + 1) - 1) % bpb + 1
        positions_a = np.concatenate([grid_a.positions, tail]).astype(np.int64)
    if a.info.cue_s > a.duration_s + 1e-6:
        raise MixInputError(
            f"outgoing cue_s {a.info.cue_s:.2f} s is past the excerpt's end ({a.duration_s:.2f} s)"
        )
    end = _end_beat(beats_a, positions_a, a.info.cue_s, a.duration_s)
    return OutgoingBeats(beats_a, positions_a, end)


def _end_beat(beats: F64, positions: I64, cue_s: float, limit_s: float) -> int:
    """Index of the beat where A is gone: nearest the cue, or the last downbeat in the excerpt."""
    inside = np.flatnonzero(beats <= limit_s + 1e-6)
    if inside.size == 0:
        return -1
    if cue_s > 0:
        return int(inside[np.argmin(np.abs(beats[inside] - cue_s))])
    down = inside[inside < positions.size][positions[inside[inside < positions.size]] == 1]
    return int(down[-1]) if down.size else int(inside[-1])


def choose_overlap_length(
    a: Excerpt,
    b: Excerpt,
    style: Style,
    params: Params,
    playback: Playback,
    a_end: int,
    b_duration: float,
) -> LengthReason:
    """The overlap's length in beats of A's grid, and why.

    Bars and seconds are taken as asked (seconds rounded to whole beats); `auto` follows
    `auto_length.choose_length` on the pair's facts, within the bars both excerpts hold.
    """
    grid_a = playback.grid_a
    bpb = grid_a.beats_per_bar
    auto = None
    if style.length == "bars":
        beats = style.bars * bpb
    elif style.length == "seconds":
        beats = max(1, round(style.seconds / grid_a.period_s))
    else:
        auto = choose_length(_pair_facts(a, b, params, playback, a_end, b_duration))
        beats = auto.bars * bpb
    asked = LengthRequest(style.length, style.bars, style.seconds, style.mashup)
    return LengthReason(asked, beats, bpb, grid_a.period_s, auto, playback.reading)


def _pair_facts(
    a: Excerpt, b: Excerpt, params: Params, playback: Playback, a_end: int, b_duration: float
) -> PairFacts:
    """What `auto` reads: tempos, clarities, keys, room in both excerpts, cue-point phrases."""
    grid_a, grid_b = playback.grid_a, playback.grid_b
    bpb = grid_a.beats_per_bar
    beats_b_all = grid_b.extended(b_duration)
    b_beats_held = int(np.count_nonzero(beats_b_all < b_duration)) - 1
    a_exit_s = a.info.cue_s or a.duration_s
    return PairFacts(
        bpm_a=grid_a.bpm,
        beats_per_bar=bpb,
        tempo_ratio=playback.tempo_ratio,
        max_stretch=params.max_stretch,
        clarity_a=grid_a.clarity,
        clarity_b=grid_b.clarity,
        keys_compatible=playback.keys_compatible,
        max_bars=min(max(a_end, 0), b_beats_held) // bpb,
        phrase_bars=phrase_bars(a.analysis, common_pb2.CUE_KIND_EXIT, a_exit_s)
        or phrase_bars(b.analysis, common_pb2.CUE_KIND_ENTRY, 0.0),
    )


def outgoing_start(a: Excerpt, a_end: int, n_beats: int, period_s: float) -> int:
    """A's beat where the overlap starts, `n_beats` before A is gone; refuses too short an A."""
    ia_start = a_end - n_beats
    if a_end < 0 or ia_start < 0:
        raise MixInputError(
            f"outgoing excerpt ({a.duration_s:.2f} s) is shorter than the requested overlap "
            f"({n_beats} beats, {n_beats * period_s:.2f} s) before its cue"
        )
    return ia_start


def place_on_incoming(
    b: Excerpt, playback: Playback, n_beats: int, b_duration: float
) -> tuple[F64, int, int]:
    """B's beats (key-shifted time, s) and the overlap's first and last beat on them.

    The overlap ends on B's cue when it has one, else starts on B's first downbeat.
    """
    grid_b = playback.grid_b
    beats_b = grid_b.extended(b_duration + 120.0)
    if b.info.cue_s > 0:
        if b.info.cue_s > b.duration_s + 1e-6:
            raise MixInputError(
                f"incoming cue_s {b.info.cue_s:.2f} s is past the excerpt's end "
                f"({b.duration_s:.2f} s)"
            )
        ib_end = int(np.argmin(np.abs(beats_b - b.info.cue_s / playback.pitch)))
        ib_start = ib_end - n_beats
    else:
        ib_start = grid_b.downbeat_offset()
        ib_end = ib_start + n_beats
    if ib_start < 0 or beats_b[ib_end] > b_duration + 1e-6:
        need_s = n_beats * playback.grid_a.period_s * playback.tempo_ratio
        raise MixInputError(
            f"incoming excerpt ({b.duration_s:.2f} s) is shorter than the requested overlap "
            f"({n_beats} beats, {need_s:.2f} s of the incoming song)"
        )
    return beats_b, ib_start, ib_end


def place_on_output(
    outgoing: OutgoingBeats,
    ia_start: int,
    incoming: tuple[F64, int, int],
    reason: LengthReason,
    context_s: float,
) -> Overlap:
    """The output's time axis: A's time shifted so that it starts `context_s` before the overlap."""
    beats_a, ia_end = outgoing.times_s, outgoing.end
    pre = min(context_s, float(beats_a[ia_start]))
    a_origin = float(beats_a[ia_start]) - pre
    a_out = beats_a - a_origin
    inner = np.arange(ia_start + 1, ia_end)
    beats_b, ib_start, ib_end = incoming
    return Overlap(
        beats_per_bar=reason.beats_per_bar,
        n_beats=reason.beats,
        beat_period_s=reason.beat_period_s,
        beats_a=a_out,
        ia_start=ia_start,
        ia_end=ia_end,
        beats_b=beats_b,
        ib_start=ib_start,
        ib_end=ib_end,
        a_origin_s=a_origin,
        start_s=float(a_out[ia_start]),
        end_s=float(a_out[ia_end]),
        downbeats_s=a_out[inner[outgoing.positions[inner] == 1]],
    )


def incoming_time_map(
    overlap: Overlap, pitch: float, ramp_beats: int, context_s: float
) -> tuple[TimeMap, float]:
    """Output time -> B's time, and where the output ends at the latest (s).

    Beat onto beat through the overlap; after it, B's speed moves to its own (1 / pitch)
    over `ramp_beats` beats, or at once without a ramp, and the map runs on `context_s` past
    the ramp (or the overlap) and a second more.
    """
    ia, ib = overlap.ia_start, overlap.ib_start
    out_anchors = list(overlap.beats_a[ia : overlap.ia_end + 1])
    in_anchors = list(overlap.beats_b[ib : overlap.ib_end + 1])
    speed_overlap = (in_anchors[-1] - in_anchors[0]) / (out_anchors[-1] - out_anchors[0])
    beats_b, ib_end = overlap.beats_b, overlap.ib_end
    post_target = overlap.end_s + context_s
    j = ib_end
    while (out_anchors[-1] < post_target + 1.0 or j - ib_end < ramp_beats) and j + 1 < beats_b.size:
        k = j - ib_end
        frac = min(1.0, (k + 0.5) / ramp_beats) if ramp_beats else 0.0
        speed = speed_overlap + (1.0 / pitch - speed_overlap) * frac
        out_anchors.append(out_anchors[-1] + (beats_b[j + 1] - beats_b[j]) / speed)
        in_anchors.append(float(beats_b[j + 1]))
        j += 1
        if ramp_beats and k + 1 == ramp_beats:
            post_target = out_anchors[-1] + context_s
    return TimeMap(np.array(out_anchors), np.array(in_anchors)), post_target
