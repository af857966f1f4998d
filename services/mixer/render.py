"""The transition renderer: from two decoded excerpts to one beat-matched, limited mix.

Pipeline: beat grids -> key shift (optional) -> tempo plan (half/double time, stretch limit)
-> overlap placement on both grids -> time map (beat to beat through the overlap, then the
tempo ramp) -> WSOLA stretch of the incoming song -> loudness match (BS.1770) -> bass swap and
filter sweep -> crossfade -> true-peak limiter -> quality metrics.
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
from .beatgrid import BeatGrid
from .curves import fade_gains, mashup_gains, step_gains
from .eq import highpass_sweep, low_band
from .errors import MixInputError
from .excerpt import Excerpt
from .limiter import limit, true_peak_dbtp
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
# Beats over which the bass passes from A to B.
BASS_SWAP_BEATS = 1.0
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

    def envelope(self) -> mixer_pb2.MixEnvelope:
        return mixer_pb2.MixEnvelope(
            rate_hz=ENVELOPE_RATE_HZ,
            gain_outgoing=self.gain_outgoing.astype(np.float32).tolist(),
            gain_incoming=self.gain_incoming.astype(np.float32).tolist(),
            overlap_start_s=self.overlap_start_s,
            overlap_end_s=self.overlap_end_s,
        )


def grid_of(excerpt: Excerpt) -> BeatGrid:
    """The excerpt's grid from its analysis, else estimated from its audio."""
    if excerpt.analysis is not None:
        grid = beatgrid.from_analysis(excerpt.analysis)
        if grid is not None:
            return grid
    return beatgrid.estimate(excerpt.mono, excerpt.rate_hz)


def key_of(excerpt: Excerpt) -> keys.KeyInfo:
    known = keys.from_analysis(excerpt.analysis) if excerpt.analysis is not None else None
    return known if known is not None else keys.estimate_key(excerpt.mono, excerpt.rate_hz)


def match_tempo(bpm_a: float, grid_b: BeatGrid, max_stretch: float) -> tuple[BeatGrid, float]:
    """B's grid at the metrical level nearest A's tempo, and the tempo ratio B is played at.

    Raises MixInputError when even half or double time needs more than `max_stretch`.
    """
    options = [(grid_b, 1.0), (grid_b.every_other(), 0.5), (grid_b.doubled(), 2.0)]
    grid, _ = min(options, key=lambda o: abs(math.log(bpm_a / o[0].bpm)))
    ratio = bpm_a / grid.bpm
    if abs(ratio - 1.0) > max_stretch + 1e-9:
        raise MixInputError(
            f"tempo ratio {ratio:.3f} between the outgoing ({bpm_a:.1f} BPM) and incoming "
            f"({grid_b.bpm:.1f} BPM) excerpts is beyond the stretch limit of "
            f"+-{max_stretch * 100:.0f}% (half and double time were tried too)"
        )
    return grid, ratio


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
    else:
        grid_b, tempo_ratio = match_tempo(
            grid_a.bpm, grid_b_own.rescaled(pitch), params.max_stretch
        )
        tempo_ratio *= pitch  # relative to B's own tempo, before the resampling
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
    )


def mix_transition(
    plan: Plan, a: Excerpt, style: Style, params: Params, levels: tuple[float, float] | None = None
) -> Mixed:
    """Stretches B along the plan's time map and mixes it with A, before any limiting.

    `levels` are the linear gains of A and B; by default each song is brought to the target
    loudness on the part of it that is heard (see `heard_loudness`).
    """
    rate, n_out = plan.rate_hz, plan.n_out
    ov_start, ov_end = plan.overlap_start_s, plan.overlap_end_s

    a_part = _window(a.audio, round(plan.a_origin_s * rate), n_out)
    stem_from = max(0, int((ov_start - _PREROLL_S) * rate))
    shifted_map = TimeMap(plan.time_map.output_s - stem_from / rate, plan.time_map.input_s)
    b_stem = np.zeros((2, n_out), dtype=np.float32)
    b_stem[:, stem_from:] = stretch(plan.b_audio, rate, shifted_map, n_out - stem_from)

    t = np.arange(n_out, dtype=np.float64) / rate
    x = (t - ov_start) / (ov_end - ov_start)
    fade_a, fade_b = mashup_gains(x) if style.mashup else fade_gains(x, style.curve)

    if levels is None:
        level_a = gain_to_target(heard_loudness(a_part, fade_a, rate), params.target_lufs)
        level_b = gain_to_target(heard_loudness(b_stem, fade_b, rate), params.target_lufs)
    else:
        level_a, level_b = levels

    i_ov1 = round(ov_end * rate)
    a_sig, b_sig = a_part, b_stem
    if style.filter_sweep:
        a_sig = a_sig.copy()
        a_sig[:, :i_ov1] = highpass_sweep(a_sig[:, :i_ov1], rate, np.clip(x[:i_ov1], 0.0, 1.0))
    if style.eq_bass_swap:
        a_sig, b_sig = _swap_bass(a_sig, b_sig, rate, x, fade_a, fade_b, plan.n_beats)
    mix = a_sig * (level_a * fade_a).astype(np.float32) + b_sig * (level_b * fade_b).astype(
        np.float32
    )

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
    return Mixed(mix, level_a, level_b, env_a, env_b, measured, error)


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


def _swap_bass(
    a_sig: FloatArray, b_sig: FloatArray, rate: int, x: F64, fade_a: F64, fade_b: F64, n_beats: int
) -> tuple[FloatArray, FloatArray]:
    """Hands the low end from A to B mid-way through the overlap, over about a beat.

    Only the stretches where a bass gain is neither 0 nor 1, or where it is 0 and the song is
    still heard, are filtered: elsewhere the song plays unchanged or is silent.
    """
    bass_a, bass_b = step_gains(x, 0.5, float(np.clip(BASS_SWAP_BEATS / n_beats, 0.02, 0.5)))
    a_out, b_out = a_sig.copy(), b_sig.copy()
    for sig, out, bass, fade in ((a_sig, a_out, bass_a, fade_a), (b_sig, b_out, bass_b, fade_b)):
        cut = np.flatnonzero((bass < 1.0 - 1e-7) & (fade > 0.0))
        if cut.size == 0:
            continue
        lo, hi = int(cut[0]), int(cut[-1]) + 1
        low = low_band(sig, rate, lo, hi)
        out[:, lo:hi] -= low * (1.0 - bass[lo:hi]).astype(np.float32)
    return a_out, b_out


def master(mix: FloatArray, params: Params) -> tuple[FloatArray, float]:
    """Whole-mix loudness to the target, then the true-peak limiter; (audio, loudness).

    A second, small correction follows when limiting cost level.
    """
    rate, out = params.rate_hz, mix
    bound = 10 ** (_MAX_CORRECTION_DB / 20)
    output_lufs = integrated_lufs(out, rate)
    for _ in range(2):
        correction = gain_to_target(output_lufs, params.target_lufs)
        out = limit(
            out * np.float32(np.clip(correction, 1 / bound, bound)), rate, params.ceiling_dbtp
        )
        output_lufs = integrated_lufs(out, rate)
        if abs(output_lufs - params.target_lufs) <= 0.3:
            break
    return out, output_lufs


def render_transition(a: Excerpt, b: Excerpt, style: Style, params: Params) -> Rendered:
    """Renders A's last bars into B's first bars. Raises MixInputError on unusable inputs."""
    started = time.perf_counter()
    plan = plan_transition(a, b, style, params)
    mixed = mix_transition(plan, a, style, params)
    out, output_lufs = master(mixed.audio, params)
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
        length_reason=plan.reason,
        tempo_ratio=plan.tempo_ratio,
        key_shift_semitones=plan.key_shift,
        beat_alignment_error_ms=mixed.beat_alignment_error_ms,
        loudness_step_lu=loudness_step_lu(out, rate, ov_start, ov_end),
        spectral_convergence=sc,
        mel_mse=mel,
        true_peak_dbtp=true_peak_dbtp(out),
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
    )
