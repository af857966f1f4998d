"""The transition renderer: from two decoded excerpts to one beat-matched, limited mix.

Pipeline: beat grids (the client's analysis, else the structure analysis of the excerpt;
`beatgrid`) -> key shift (optional) -> tempo plan (the metrical level that fits the stretch
limit: half/double time, then 3:2 and 4:3 readings) -> overlap placement on both grids ->
time map (beat to beat through the overlap, then the tempo ramp) -> WSOLA stretch of the
incoming song -> loudness match (BS.1770) -> bass swap (the low band handed over by a
two-bar ramp on the downbeat where the mix changes sound least, through a crossover that sums
flat; `bass_swap`) and filter sweep ->
crossfade -> true-peak limiter -> quality metrics.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from segue.loudness import gain_to_target, integrated_lufs
from segue.structure.camelot import keys_compatible
from segue.v1 import common_pb2, mixer_pb2

from . import beatgrid, keys
from .auto_length import WEAK_BEAT, PairFacts, choose_length, phrase_bars
from .bass_swap import Fade, bass_swap_gains, choose_bass_swap, swap_note
from .beatgrid import BeatGrid
from .curves import fade_gains, mashup_gains
from .eq import highpass_sweep, low_pass
from .errors import MixInputError
from .excerpt import Excerpt
from .limiter import Limited, limit
from .quality import (
    beat_alignment_error_ms,
    loudness_step_lu,
    measured_beat_positions,
    spectral_continuity,
)
from .stretch import TimeMap, stretch

FloatArray = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

ENVELOPE_RATE_HZ = 100.0
DEFAULT_TARGET_LUFS = -14.0
DEFAULT_CONTEXT_S = 4.0
DEFAULT_MASHUP_BARS = 8
MAX_BARS = 64
# The stem of the incoming song starts this early, so WSOLA has settled when it is heard.
_PREROLL_S = 0.05
# Largest correction of the mix's loudness after crossfading.
_MAX_CORRECTION_DB = 6.0


@dataclass(frozen=True)
class Style:
    """A validated TransitionStyle (or mashup request)."""

    length: str  # "bars", "seconds" or "auto"
    bars: int = 0
    seconds: float = 0.0
    curve: int = mixer_pb2.FADE_CURVE_EQUAL_POWER
    eq_bass_swap: bool = False
    filter_sweep: bool = False
    tempo_ramp_bars: int = 0
    allow_key_shift: bool = False
    mashup: bool = False
    # False: fade at each song's own tempo, unstretched (for pairs too far apart in tempo).
    beat_match: bool = True

    @classmethod
    def from_proto(cls, style: mixer_pb2.TransitionStyle) -> Style:
        kind = style.WhichOneof("length") or "auto"
        if kind == "bars" and not 1 <= style.bars <= MAX_BARS:
            raise MixInputError(f"style.bars must be 1 to {MAX_BARS}, got {style.bars}")
        if kind == "seconds" and not (0.0 < style.seconds <= 120.0):
            raise MixInputError(f"style.seconds must be in (0, 120], got {style.seconds}")
        if kind == "auto" and style.HasField("auto") and not style.auto:
            raise MixInputError("style.auto is false: set bars, seconds or auto=true")
        if style.curve not in mixer_pb2.FadeCurve.values():
            raise MixInputError(f"style.curve {style.curve} is not a FadeCurve")
        if style.tempo_ramp_bars > MAX_BARS:
            raise MixInputError(f"style.tempo_ramp_bars must be at most {MAX_BARS}")
        return cls(
            kind,
            style.bars,
            style.seconds,
            style.curve or mixer_pb2.FADE_CURVE_EQUAL_POWER,
            style.eq_bass_swap,
            style.filter_sweep,
            style.tempo_ramp_bars,
            style.allow_key_shift,
        )

    @classmethod
    def for_mashup(cls, bars: int, style: mixer_pb2.TransitionStyle) -> Style:
        if not 1 <= bars <= MAX_BARS:
            raise MixInputError(f"mashup_bars must be 1 to {MAX_BARS}, got {bars}")
        return cls(
            "bars",
            bars,
            curve=mixer_pb2.FADE_CURVE_EQUAL_POWER,
            eq_bass_swap=True,
            filter_sweep=style.filter_sweep,
            tempo_ramp_bars=style.tempo_ramp_bars,
            allow_key_shift=True,
            mashup=True,
        )


@dataclass(frozen=True)
class Params:
    rate_hz: int = 44100
    target_lufs: float = DEFAULT_TARGET_LUFS
    context_s: float = DEFAULT_CONTEXT_S
    ceiling_dbtp: float = -1.0
    max_stretch: float = 0.12


@dataclass
class Rendered:
    """A rendered transition and everything the client and the plot are told about it."""

    audio: FloatArray  # [2, frames]
    rate_hz: int
    gain_outgoing: F64  # the mix mask, at ENVELOPE_RATE_HZ
    gain_incoming: F64
    overlap_start_s: float
    overlap_end_s: float
    beats_outgoing_s: F64  # A's grid in output time
    beats_incoming_s: F64  # B's grid in output time (as planned by the time map)
    beats_incoming_measured_s: F64  # where B's overlap beats really are in the output
    a_origin_s: float = 0.0  # A's time at the output's first sample
    b_start_s: float = 0.0  # B's time (after any key-shift resampling) where the overlap starts
    report: mixer_pb2.QualityReport = field(default_factory=mixer_pb2.QualityReport)
    # Low-band gains (without the loudness levels) at ENVELOPE_RATE_HZ; empty: no bass swap.
    bass_outgoing: F64 = field(default_factory=lambda: np.zeros(0))
    bass_incoming: F64 = field(default_factory=lambda: np.zeros(0))
    bass_swap_s: float = float("nan")  # the downbeat the bass changed hands on (output time)

    def envelope(self) -> mixer_pb2.MixEnvelope:
        return mixer_pb2.MixEnvelope(
            rate_hz=ENVELOPE_RATE_HZ,
            gain_outgoing=self.gain_outgoing.astype(np.float32).tolist(),
            gain_incoming=self.gain_incoming.astype(np.float32).tolist(),
            overlap_start_s=self.overlap_start_s,
            overlap_end_s=self.overlap_end_s,
        )


def grid_of(excerpt: Excerpt) -> BeatGrid:
    """The excerpt's grid: given with it, from the client's analysis, else from the audio.

    Without a client grid the beats come from the project's structure analysis of the
    excerpt (`Excerpt.structure`), the same tracker the embedder runs.
    """
    if excerpt.grid is not None:
        return excerpt.grid
    if excerpt.analysis is not None:
        grid = beatgrid.from_analysis(excerpt.analysis)
        if grid is not None:
            return grid
    computed = beatgrid.from_analysis(excerpt.structure, "estimated")
    return computed if computed is not None else beatgrid.free_time(excerpt.duration_s)


def key_of(excerpt: Excerpt) -> keys.KeyInfo:
    """The client's key, else the structure analysis' key of the excerpt."""
    for analysis in (excerpt.analysis, excerpt.structure):
        known = keys.from_analysis(analysis) if analysis is not None else None
        if known is not None:
            return known
    return keys.estimate_key(excerpt.mono, excerpt.rate_hz)


# Readings of the incoming beat (beats of B per tracked beat) tried in turn, as a DJ would:
# the tracked beat, then half or double time, then the 3:2 and 4:3 family that a tracker
# confuses with the beat on short excerpts (dotted or triplet pulses). Within a tier the
# smallest stretch wins; the first tier with a reading inside the stretch limit is used.
# The 3:2 family re-reads only grids the mixer estimated itself: a client's analysis (of
# the whole song, usually) is taken at its word, as before.
TEMPO_LEVELS: tuple[tuple[float, ...], ...] = ((1.0,), (0.5, 2.0), (1.5, 2 / 3, 4 / 3, 3 / 4))
# ... and only when the new beats fall on onsets at least this strong, relative to the
# tracked beats (`beatgrid.reread`): a click track at another tempo scores 0.3 to 0.5.
MIN_REREAD_PLAUSIBILITY = 0.6


@dataclass(frozen=True)
class TempoMatch:
    grid_a: BeatGrid  # A's grid as it is mixed (re-read only in the 3:2 family)
    grid_b: BeatGrid  # B's grid at the level matched to A's
    ratio: float  # tempo ratio B is played at
    note: str  # how the levels were read, for the length reason ("" for the tracked beat)


def _level_name(factor: float) -> str:
    names = {0.5: "half time", 2.0: "double time", 1.5: "3:2", 2 / 3: "2:3", 4 / 3: "4:3"}
    return names.get(factor, "3:4")


def match_tempo(
    grid_a: BeatGrid,
    grid_b: BeatGrid,
    max_stretch: float,
    audio: tuple[FloatArray, FloatArray, int, float] | None = None,
) -> TempoMatch:
    """B's grid at the metrical level nearest A's tempo (see TEMPO_LEVELS).

    `audio` is (A's mono, B's mono, rate, B's pitch factor): without it the 3:2 family is
    not tried, since its readings are placed and checked on the onsets. For those, either
    song may be the misread one (of those whose grid the mixer estimated), so B read at f
    and A read at 1/f are both checked and the more plausible kept. Raises MixInputError
    when no reading fits within `max_stretch`.
    """
    bpm_a = grid_a.bpm
    bpb = grid_a.beats_per_bar
    for tier in TEMPO_LEVELS:
        fits = sorted(
            (abs(math.log(bpm_a / (grid_b.bpm * f))), f)
            for f in tier
            if abs(bpm_a / (grid_b.bpm * f) - 1.0) <= max_stretch + 1e-9
        )
        for _, f in fits:
            if f in (1.0, 0.5, 2.0):
                grid = grid_b.at_level(f, bpb)
                note = "" if f == 1.0 else f"incoming at {_level_name(f)}"
                return TempoMatch(grid_a, grid, bpm_a / grid.bpm, note)
            if audio is None:
                continue
            mono_a, mono_b, rate, pitch = audio
            # Either song may be the misread one: B read at f, or A at 1/f.
            b_plaus = a_plaus = 0.0
            b_read, a_read = grid_b, grid_a
            if grid_b.source != "analysis":  # B's grid is in the key-shifted time
                b_read, b_plaus = beatgrid.reread(grid_b.rescaled(1 / pitch), f, bpb, mono_b, rate)
            if grid_a.source != "analysis":
                a_read, a_plaus = beatgrid.reread(grid_a, 1 / f, bpb, mono_a, rate)
            if max(a_plaus, b_plaus) < MIN_REREAD_PLAUSIBILITY:
                continue
            if b_plaus >= a_plaus:
                grid = b_read.rescaled(pitch)
                note = (
                    f"incoming read at {_level_name(f)} of its tracked beat "
                    f"({grid_b.bpm:.1f} -> {grid.bpm:.1f} BPM; onsets on the new beats "
                    f"{b_plaus:.2f}x as strong)"
                )
                return TempoMatch(grid_a, grid, bpm_a / grid.bpm, note)
            note = (
                f"outgoing read at {_level_name(1 / f)} of its tracked beat "
                f"({bpm_a:.1f} -> {a_read.bpm:.1f} BPM; onsets on the new beats "
                f"{a_plaus:.2f}x as strong)"
            )
            return TempoMatch(a_read, grid_b, a_read.bpm / grid_b.bpm, note)
    nearest = bpm_a / grid_b.bpm
    raise MixInputError(
        f"tempo ratio {nearest:.3f} between the outgoing ({bpm_a:.1f} BPM) and incoming "
        f"({grid_b.bpm:.1f} BPM) excerpts is beyond the stretch limit of "
        f"+-{max_stretch * 100:.0f}% (half and double time, and 3:2 and 4:3 readings where "
        "the onsets allow them, were tried too)"
    )


def _window(audio: FloatArray, start: int, frames: int) -> FloatArray:
    """audio[:, start:start+frames], zero-padded where it runs off either end."""
    out = np.zeros((audio.shape[0], frames), dtype=np.float32)
    lo, hi = max(start, 0), min(start + frames, audio.shape[1])
    if hi > lo:
        out[:, lo - start : hi - start] = audio[:, lo:hi]
    return out


def _end_beat(beats: F64, positions: npt.NDArray[np.int64], cue_s: float, limit_s: float) -> int:
    """Index of the beat where A is gone: nearest the cue, or the last downbeat in the excerpt."""
    inside = np.flatnonzero(beats <= limit_s + 1e-6)
    if inside.size == 0:
        return -1
    if cue_s > 0:
        return int(inside[np.argmin(np.abs(beats[inside] - cue_s))])
    down = inside[inside < positions.size][positions[inside[inside < positions.size]] == 1]
    return int(down[-1]) if down.size else int(inside[-1])


@dataclass(frozen=True)
class Plan:
    """Where the overlap sits on both songs and how B is played: the render minus the audio."""

    rate_hz: int
    grid_a: BeatGrid
    grid_b_own: BeatGrid
    key_shift: int
    pitch: float  # B's speed-up from the key shift (1.0 = none)
    tempo_ratio: float
    beats_per_bar: int
    n_beats: int
    reason: str
    a_out: F64  # A's beats in output time
    ia_start: int
    ia_end: int
    beats_b: F64  # B's beats (after the key shift) in B's time
    ib_start: int
    ib_end: int
    a_origin_s: float  # A's time at the output's first sample
    overlap_start_s: float
    overlap_end_s: float
    time_map: TimeMap  # output time -> B's time
    n_out: int
    b_audio: FloatArray  # B after the key shift
    beat_matched: bool = True  # False for free-time fades (no beat grids to line up)
    # A's downbeats inside the overlap (output time): where the bass may change hands.
    downbeats_s: F64 = field(default_factory=lambda: np.zeros(0))

    @property
    def duration_s(self) -> float:
        return self.n_out / self.rate_hz


@dataclass
class Mixed:
    """A planned transition mixed, before the whole-mix loudness correction and the limiter."""

    audio: FloatArray  # [2, frames]
    level_a: float  # linear gains that brought each song to the target loudness
    level_b: float
    gain_outgoing: F64  # the mix mask, at ENVELOPE_RATE_HZ
    gain_incoming: F64
    beats_incoming_measured_s: F64
    beat_alignment_error_ms: float
    # The low band's gains at ENVELOPE_RATE_HZ when the bass was swapped, else empty.
    bass_outgoing: F64 = field(default_factory=lambda: np.zeros(0))
    bass_incoming: F64 = field(default_factory=lambda: np.zeros(0))
    # Where the bass was swapped (output time), and in words for the QualityReport.
    bass_swap_s: float = float("nan")
    bass_note: str = ""


def plan_transition(a: Excerpt, b: Excerpt, style: Style, params: Params) -> Plan:
    """Places the overlap on both beat grids; raises MixInputError on unusable inputs."""
    rate = params.rate_hz
    grid_a, grid_b_own = grid_of(a), grid_of(b)

    # Key: shift B by one semitone at most, and only when that makes the keys compatible.
    shift, compatible = 0, None
    if style.allow_key_shift:
        key_a, key_b = key_of(a), key_of(b)
        shift = keys.choose_shift(key_a, key_b)
        compatible = keys_compatible(key_a.camelot, key_b.shifted(shift).camelot)
    elif a.analysis is not None and b.analysis is not None:
        ka, kb = keys.from_analysis(a.analysis), keys.from_analysis(b.analysis)
        if ka is not None and kb is not None:
            compatible = keys_compatible(ka.camelot, kb.camelot)
    b_audio, pitch = keys.pitch_shift_by_resampling(b.audio, shift)
    b_duration = b_audio.shape[1] / rate

    free_time = min(grid_a.clarity, grid_b_own.clarity) < WEAK_BEAT or not style.beat_match
    if free_time:
        # No clear pulse to match (ballad, ambient): fade at B's own tempo, unstretched, with
        # B's "beats" laid at A's period so the overlap arithmetic below stays the same.
        start_b = float(grid_b_own.times_s[0]) / pitch
        times = start_b + grid_a.period_s * np.arange(
            int(b_duration / grid_a.period_s) + 2, dtype=np.float64
        )
        grid_b = BeatGrid(
            times, np.zeros(times.size, np.int64), grid_a.bpm, grid_b_own.clarity, "free time"
        )
        tempo_ratio = pitch
    level_note = ""
    if not free_time:
        matched = match_tempo(
            grid_a,
            grid_b_own.rescaled(pitch),
            params.max_stretch,
            (a.mono, b.mono, rate, pitch),
        )
        grid_a, grid_b, level_note = matched.grid_a, matched.grid_b, matched.note
        tempo_ratio = matched.ratio * pitch  # relative to B's own tempo, before the resampling
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
    ia_end = _end_beat(beats_a, positions_a, a.info.cue_s, a.duration_s)

    # Overlap length in beats of A's grid.
    reason: str
    if style.length == "bars":
        n_beats = style.bars * bpb
        reason = f"{style.bars} bars, as requested" + (" (mashup)" if style.mashup else "")
    elif style.length == "seconds":
        n_beats = max(1, round(style.seconds / grid_a.period_s))
        reason = (
            f"{style.seconds:.1f} s requested: {n_beats} beats of the outgoing grid "
            f"({n_beats * grid_a.period_s:.1f} s)"
        )
    else:
        beats_b_all = grid_b.extended(b_duration)
        b_beats_held = int(np.count_nonzero(beats_b_all < b_duration)) - 1
        max_bars = min(max(ia_end, 0), b_beats_held) // bpb
        facts = PairFacts(
            bpm_a=grid_a.bpm,
            beats_per_bar=bpb,
            tempo_ratio=tempo_ratio,
            max_stretch=params.max_stretch,
            clarity_a=grid_a.clarity,
            clarity_b=grid_b.clarity,
            keys_compatible=compatible,
            max_bars=max_bars,
            phrase_bars=phrase_bars(
                a.analysis, common_pb2.CUE_KIND_EXIT, a.info.cue_s or a.duration_s
            )
            or phrase_bars(b.analysis, common_pb2.CUE_KIND_ENTRY, 0.0),
        )
        choice = choose_length(facts)
        n_beats, reason = choice.bars * bpb, choice.reason
    if level_note:
        reason = f"{reason}; {level_note}"
    overlap_need_s = n_beats * grid_a.period_s
    ia_start = ia_end - n_beats
    if ia_end < 0 or ia_start < 0:
        raise MixInputError(
            f"outgoing excerpt ({a.duration_s:.2f} s) is shorter than the requested overlap "
            f"({n_beats} beats, {overlap_need_s:.2f} s) before its cue"
        )

    beats_b = grid_b.extended(b_duration + 120.0)
    if b.info.cue_s > 0:
        if b.info.cue_s > b.duration_s + 1e-6:
            raise MixInputError(
                f"incoming cue_s {b.info.cue_s:.2f} s is past the excerpt's end "
                f"({b.duration_s:.2f} s)"
            )
        ib_end = int(np.argmin(np.abs(beats_b - b.info.cue_s / pitch)))
        ib_start = ib_end - n_beats
    else:
        ib_start = grid_b.downbeat_offset()
        ib_end = ib_start + n_beats
    if ib_start < 0 or beats_b[ib_end] > b_duration + 1e-6:
        raise MixInputError(
            f"incoming excerpt ({b.duration_s:.2f} s) is shorter than the requested overlap "
            f"({n_beats} beats, {overlap_need_s * tempo_ratio:.2f} s of the incoming song)"
        )

    # Output time axis: A's time shifted so that the output starts `context_s` before the overlap.
    pre = min(params.context_s, float(beats_a[ia_start]))
    a_origin = float(beats_a[ia_start]) - pre
    a_out = beats_a - a_origin
    ov_start, ov_end = float(a_out[ia_start]), float(a_out[ia_end])
    inner = np.arange(ia_start + 1, ia_end)
    downbeats_s = a_out[inner[positions_a[inner] == 1]]

    # Time map of B: beat onto beat through the overlap, then steady or ramping to its own tempo.
    out_anchors = list(a_out[ia_start : ia_end + 1])
    in_anchors = list(beats_b[ib_start : ib_end + 1])
    speed_overlap = (in_anchors[-1] - in_anchors[0]) / (out_anchors[-1] - out_anchors[0])
    own_speed = 1.0 / pitch
    ramp_beats = style.tempo_ramp_bars * bpb
    ramp_end_out = ov_end
    post_target = ov_end + params.context_s
    j = ib_end
    while (out_anchors[-1] < post_target + 1.0 or j - ib_end < ramp_beats) and j + 1 < beats_b.size:
        k = j - ib_end
        frac = min(1.0, (k + 0.5) / ramp_beats) if ramp_beats else 0.0
        speed = speed_overlap + (own_speed - speed_overlap) * frac
        out_anchors.append(out_anchors[-1] + (beats_b[j + 1] - beats_b[j]) / speed)
        in_anchors.append(float(beats_b[j + 1]))
        j += 1
        if ramp_beats and k + 1 == ramp_beats:
            ramp_end_out = out_anchors[-1]
            post_target = ramp_end_out + params.context_s
    time_map = TimeMap(np.array(out_anchors), np.array(in_anchors))
    b_end_out = float(time_map.to_output(np.array([b_duration]))[0])
    duration = min(post_target, b_end_out)
    if duration <= ov_end:
        raise MixInputError(f"incoming excerpt ({b.duration_s:.2f} s) ends inside the overlap")
    return Plan(
        rate_hz=rate,
        grid_a=grid_a,
        grid_b_own=grid_b_own,
        key_shift=shift,
        pitch=pitch,
        tempo_ratio=tempo_ratio,
        beats_per_bar=bpb,
        n_beats=n_beats,
        reason=reason,
        a_out=a_out,
        ia_start=ia_start,
        ia_end=ia_end,
        beats_b=beats_b,
        ib_start=ib_start,
        ib_end=ib_end,
        a_origin_s=a_origin,
        overlap_start_s=ov_start,
        overlap_end_s=ov_end,
        time_map=time_map,
        n_out=round(duration * rate),
        b_audio=b_audio,
        beat_matched=not free_time,
        downbeats_s=downbeats_s,
    )


def mix_transition(
    plan: Plan, a: Excerpt, style: Style, params: Params, levels: tuple[float, float] | None = None
) -> Mixed:
    """Stretches B along the plan's time map and mixes it with A, before any limiting.

    `levels` are the linear gains of A and B; by default each song is brought to the target
    loudness on the part of it that is heard (see `heard_loudness`). The gains only move
    inside the overlap, so they are computed there alone (float32, like the audio).
    """
    rate, n_out = plan.rate_hz, plan.n_out
    ov_start, ov_end = plan.overlap_start_s, plan.overlap_end_s

    a_part = _window(a.audio, round(plan.a_origin_s * rate), n_out)
    stem_from = max(0, int((ov_start - _PREROLL_S) * rate))
    shifted_map = TimeMap(plan.time_map.output_s - stem_from / rate, plan.time_map.input_s)
    b_stem = np.zeros((2, n_out), dtype=np.float32)
    b_stem[:, stem_from:] = stretch(plan.b_audio, rate, shifted_map, n_out - stem_from)

    # Samples i0..i1 hold the overlap; before it A plays alone, after it B.
    i0 = min(n_out, max(0, int(np.floor(ov_start * rate))))
    i1 = min(n_out, max(i0, int(np.ceil(ov_end * rate)) + 1))
    x = ((np.arange(i0, i1, dtype=np.float64) / rate - ov_start) / (ov_end - ov_start)).astype(
        np.float32
    )
    fade = fader(style)
    gains = fade(x)

    if levels is None:
        fade_a = _full_curve(gains[0], n_out, i0, 1.0)
        fade_b = _full_curve(gains[1], n_out, i0, 0.0)
        level_a = gain_to_target(heard_loudness(a_part, fade_a, rate), params.target_lufs)
        level_b = gain_to_target(heard_loudness(b_stem, fade_b, rate), params.target_lufs)
    else:
        level_a, level_b = levels

    a_sig = a_part
    if style.filter_sweep:
        # The sweep rises over the overlap; before it A plays untouched (progress 0).
        progress = np.zeros(i1)
        progress[i0:i1] = np.clip(x, 0.0, 1.0)
        a_sig = a_sig.copy()
        a_sig[:, :i1] = highpass_sweep(a_sig[:, :i1], rate, progress)
    mix = np.empty((2, n_out), dtype=np.float32)
    np.multiply(a_sig[:, :i0], np.float32(level_a), out=mix[:, :i0])
    np.multiply(b_stem[:, i1:], np.float32(level_b), out=mix[:, i1:])
    gain_a = (level_a * gains[0]).astype(np.float32)
    gain_b = (level_b * gains[1]).astype(np.float32)
    mix[:, i0:i1] = a_sig[:, i0:i1] * gain_a + b_stem[:, i0:i1] * gain_b
    swap_s: float | None = None
    if style.eq_bass_swap:
        # The highs follow the fade; the low band stays with A until the swap, then with B.
        # Each song's low band moves from its fade gain to its bass gain (`eq.split_bass`):
        # + LP((bass - fade) * song), summed over both songs first since LP is linear, and
        # exact to within the filter's few milliseconds of memory as the gains move.
        swap_s = choose_bass_swap(plan, a_sig, b_stem, (level_a, level_b), fade)
        bass_a, bass_b = bass_swap_gains(plan, x, swap_s)
        moved = a_sig[:, i0:i1] * (level_a * bass_a - gain_a).astype(np.float32)
        moved += b_stem[:, i0:i1] * (level_b * bass_b - gain_b).astype(np.float32)
        mix[:, i0:i1] += low_pass(moved, rate)

    # Where B's overlap beats really landed, against A's grid.
    b_beats_overlap = plan.beats_b[plan.ib_start : plan.ib_end + 1]
    predicted = plan.time_map.to_output(b_beats_overlap)
    lo = max(0, int((float(b_beats_overlap[0]) - 1.0) * rate))
    hi = min(plan.b_audio.shape[1], int((float(b_beats_overlap[-1]) + 1.0) * rate))
    b_mono = plan.b_audio[:, lo:hi].mean(axis=0, dtype=np.float32)
    measured = measured_beat_positions(
        b_mono, b_beats_overlap - lo / rate, b_stem.mean(axis=0, dtype=np.float32), predicted, rate
    )
    env_t = np.arange(0.0, plan.duration_s, 1.0 / ENVELOPE_RATE_HZ)
    env_x = (env_t - ov_start) / (ov_end - ov_start)
    env_a, env_b = mashup_gains(env_x) if style.mashup else fade_gains(env_x, style.curve)
    # A free-time fade lines nothing up: there is no alignment to report.
    error = (
        beat_alignment_error_ms(measured, plan.a_out[plan.ia_start : plan.ia_end + 1])
        if plan.beat_matched
        else float("nan")
    )
    mixed = Mixed(mix, level_a, level_b, env_a, env_b, measured, error)
    if swap_s is not None:
        bass_env = bass_swap_gains(plan, env_x.astype(np.float32), swap_s)
        mixed.bass_outgoing, mixed.bass_incoming = (g.astype(np.float64) for g in bass_env)
        mixed.bass_swap_s, mixed.bass_note = swap_s, swap_note(plan, swap_s)
    return mixed


def length_reason(plan: Plan, mixed: Mixed) -> str:
    """The QualityReport's length_reason: the plan's choice of length, then the bass swap."""
    return "; ".join(r for r in (plan.reason, mixed.bass_note) if r)


def fader(style: Style) -> Fade:
    """The style's fade gains (outgoing, incoming) at overlap positions, as float32."""

    def gains(x: FloatArray) -> tuple[FloatArray, FloatArray]:
        return mashup_gains(x) if style.mashup else fade_gains(x, style.curve)

    return gains


def _full_curve(inside: FloatArray, frames: int, start: int, before: float) -> F64:
    """A gain curve over all frames: `before` up to `start`, `inside`, then its last value."""
    out = np.empty(frames, dtype=np.float64)
    out[:start] = before
    out[start : start + inside.size] = inside
    out[start + inside.size :] = inside[-1] if inside.size else 1.0 - before
    return out


def heard_loudness(audio: FloatArray, fade: F64, rate_hz: int) -> float:
    """Integrated loudness of a song where the listener hears it alone, next to the seam.

    A DJ sets the incoming channel's gain so that it sounds as loud as the outgoing song does
    just before the mix; the equivalent here is the part where the song plays at full level
    (A before the overlap, B after it). When that part is under a second long, the blocks of
    the whole heard part count in proportion to the song's power gain instead. On the real
    tracks of the benchmark (2026-11-21, 40 pairs) this halved the median loudness step
    across the transition against measuring the whole heard part unweighted (0.29 vs 0.74 LU).
    """
    full = np.flatnonzero(fade >= 1.0 - 1e-6)
    if full.size >= rate_hz:
        return integrated_lufs(audio[:, int(full[0]) : int(full[-1]) + 1], rate_hz)
    heard = np.flatnonzero(fade > 1e-3)
    if heard.size == 0:
        return float("-inf")
    lo, hi = int(heard[0]), int(heard[-1]) + 1
    return integrated_lufs(audio[:, lo:hi], rate_hz, weights=fade[lo:hi] ** 2)


@dataclass(frozen=True)
class Mastered:
    audio: FloatArray  # [2, frames], at the target loudness, limited
    loudness_lufs: float
    peak_dbtp: float  # highest true peak


def master(mix: FloatArray, params: Params) -> Mastered:
    """Whole-mix loudness to the target, then the true-peak limiter.

    A second, small correction follows when limiting cost level.
    """
    rate = params.rate_hz
    bound = 10 ** (_MAX_CORRECTION_DB / 20)
    output_lufs = integrated_lufs(mix, rate)
    limited = Limited(mix, float("-inf"))
    for _ in range(2):
        correction = gain_to_target(output_lufs, params.target_lufs)
        limited = limit(
            limited.audio * np.float32(np.clip(correction, 1 / bound, bound)),
            rate,
            params.ceiling_dbtp,
        )
        output_lufs = integrated_lufs(limited.audio, rate)
        if abs(output_lufs - params.target_lufs) <= 0.3:
            break
    return Mastered(limited.audio, output_lufs, limited.peak_dbtp)


def render_transition(a: Excerpt, b: Excerpt, style: Style, params: Params) -> Rendered:
    """Renders A's last bars into B's first bars. Raises MixInputError on unusable inputs."""
    started = time.perf_counter()
    plan = plan_transition(a, b, style, params)
    mixed = mix_transition(plan, a, style, params)
    mastered = master(mixed.audio, params)
    out, output_lufs = mastered.audio, mastered.loudness_lufs
    rate, duration = plan.rate_hz, plan.duration_s
    ov_start, ov_end = plan.overlap_start_s, plan.overlap_end_s
    sc, mel = spectral_continuity(out, rate, ov_start, ov_end)
    a_out = plan.a_out
    b_duration = plan.b_audio.shape[1] / rate
    beats_b_out = plan.time_map.to_output(plan.beats_b[plan.beats_b <= b_duration])
    elapsed = time.perf_counter() - started
    report = mixer_pb2.QualityReport(
        duration_s=duration,
        overlap_s=ov_end - ov_start,
        overlap_bars=round(plan.n_beats / plan.beats_per_bar),
        length_reason=length_reason(plan, mixed),
        tempo_ratio=plan.tempo_ratio,
        key_shift_semitones=plan.key_shift,
        beat_alignment_error_ms=mixed.beat_alignment_error_ms,
        loudness_step_lu=loudness_step_lu(out, rate, ov_start, ov_end),
        spectral_convergence=sc,
        mel_mse=mel,
        true_peak_dbtp=mastered.peak_dbtp,
        output_loudness_lufs=output_lufs,
        render_speed_x_realtime=duration / max(elapsed, 1e-9),
        tempo_a_bpm=plan.grid_a.bpm,
        tempo_b_bpm=plan.grid_b_own.bpm,
    )
    return Rendered(
        audio=out,
        rate_hz=rate,
        gain_outgoing=mixed.gain_outgoing,
        gain_incoming=mixed.gain_incoming,
        overlap_start_s=ov_start,
        overlap_end_s=ov_end,
        beats_outgoing_s=a_out[(a_out >= 0) & (a_out <= duration)],
        beats_incoming_s=beats_b_out[(beats_b_out >= ov_start) & (beats_b_out <= duration)],
        beats_incoming_measured_s=mixed.beats_incoming_measured_s,
        a_origin_s=plan.a_origin_s,
        b_start_s=float(plan.beats_b[plan.ib_start]),
        report=report,
        bass_outgoing=mixed.bass_outgoing,
        bass_incoming=mixed.bass_incoming,
        bass_swap_s=mixed.bass_swap_s,
    )
