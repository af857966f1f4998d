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

from segue.structure.camelot import keys_compatible
from segue.v1 import common_pb2, mixer_pb2

from . import beatgrid, keys
from .auto_length import WEAK_BEAT, PairFacts, choose_length, phrase_bars
from .beatgrid import BeatGrid
from .curves import fade_gains, mashup_gains, step_gains
from .eq import highpass_sweep, split_bass
from .errors import MixInputError
from .excerpt import Excerpt
from .limiter import limit, true_peak_dbtp
from .loudness import gain_to_target, integrated_lufs
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
        return cls(kind, style.bars, style.seconds, style.curve or mixer_pb2.FADE_CURVE_EQUAL_POWER,
                   style.eq_bass_swap, style.filter_sweep, style.tempo_ramp_bars,
                   style.allow_key_shift)

    @classmethod
    def for_mashup(cls, bars: int, style: mixer_pb2.TransitionStyle) -> Style:
        if not 1 <= bars <= MAX_BARS:
            raise MixInputError(f"mashup_bars must be 1 to {MAX_BARS}, got {bars}")
        return cls("bars", bars, curve=mixer_pb2.FADE_CURVE_EQUAL_POWER, eq_bass_swap=True,
                   filter_sweep=style.filter_sweep, tempo_ramp_bars=style.tempo_ramp_bars,
                   allow_key_shift=True, mashup=True)


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
            f"+-{max_stretch * 100:.0f}% (half and double time were tried too)")
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


def render_transition(a: Excerpt, b: Excerpt, style: Style, params: Params) -> Rendered:
    """Renders A's last bars into B's first bars. Raises MixInputError on unusable inputs."""
    started = time.perf_counter()
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
    b_mono = b_audio.mean(axis=0, dtype=np.float32)
    b_duration = b_audio.shape[1] / rate

    free_time = min(grid_a.clarity, grid_b_own.clarity) < WEAK_BEAT
    if free_time:
        # No clear pulse to match (ballad, ambient): fade at B's own tempo, unstretched, with
        # B's "beats" laid at A's period so the overlap arithmetic below stays the same.
        start_b = float(grid_b_own.times_s[0]) / pitch
        times = start_b + grid_a.period_s * np.arange(
            int(b_duration / grid_a.period_s) + 2, dtype=np.float64)
        grid_b = BeatGrid(times, np.zeros(times.size, np.int64), grid_a.bpm, grid_b_own.clarity,
                          "free time")
        tempo_ratio = pitch
    else:
        grid_b, tempo_ratio = match_tempo(grid_a.bpm, grid_b_own.rescaled(pitch),
                                          params.max_stretch)
        tempo_ratio *= pitch  # relative to B's own tempo, before the resampling
    bpb = grid_a.beats_per_bar

    beats_a = grid_a.extended(a.duration_s)
    positions_a = np.resize(grid_a.positions, beats_a.size) if grid_a.positions.size else \
        np.zeros(beats_a.size, np.int64)
    if grid_a.positions.size and grid_a.positions.max() > 0:
        # Continue the bar count past the analysed beats.
        last = int(grid_a.positions[-1])
        tail = (last + np.arange(1, beats_a.size - grid_a.positions.size + 1) - 1) % bpb + 1
        positions_a = np.concatenate([grid_a.positions, tail]).astype(np.int64)
    if a.info.cue_s > a.duration_s + 1e-6:
        raise MixInputError(f"outgoing cue_s {a.info.cue_s:.2f} s is past the excerpt's end "
                            f"({a.duration_s:.2f} s)")
    ia_end = _end_beat(beats_a, positions_a, a.info.cue_s, a.duration_s)

    # Overlap length in beats of A's grid.
    reason: str
    if style.length == "bars":
        n_beats = style.bars * bpb
        reason = f"{style.bars} bars, as requested" + (" (mashup)" if style.mashup else "")
    elif style.length == "seconds":
        n_beats = max(1, round(style.seconds / grid_a.period_s))
        reason = (f"{style.seconds:.1f} s requested: {n_beats} beats of the outgoing grid "
                  f"({n_beats * grid_a.period_s:.1f} s)")
    else:
        beats_b_all = grid_b.extended(b_duration)
        b_beats_held = int(np.count_nonzero(beats_b_all < b_duration)) - 1
        max_bars = min(max(ia_end, 0), b_beats_held) // bpb
        facts = PairFacts(
            bpm_a=grid_a.bpm, beats_per_bar=bpb, tempo_ratio=tempo_ratio,
            max_stretch=params.max_stretch, clarity_a=grid_a.clarity, clarity_b=grid_b.clarity,
            keys_compatible=compatible, max_bars=max_bars,
            phrase_bars=phrase_bars(a.analysis, common_pb2.CUE_KIND_EXIT, a.info.cue_s or
                                    a.duration_s) or phrase_bars(b.analysis,
                                                                 common_pb2.CUE_KIND_ENTRY, 0.0),
        )
        choice = choose_length(facts)
        n_beats, reason = choice.bars * bpb, choice.reason
    overlap_need_s = n_beats * grid_a.period_s
    ia_start = ia_end - n_beats
    if ia_end < 0 or ia_start < 0:
        raise MixInputError(
            f"outgoing excerpt ({a.duration_s:.2f} s) is shorter than the requested overlap "
            f"({n_beats} beats, {overlap_need_s:.2f} s) before its cue")

    beats_b = grid_b.extended(b_duration + 120.0)
    if b.info.cue_s > 0:
        if b.info.cue_s > b.duration_s + 1e-6:
            raise MixInputError(f"incoming cue_s {b.info.cue_s:.2f} s is past the excerpt's end "
                                f"({b.duration_s:.2f} s)")
        ib_end = int(np.argmin(np.abs(beats_b - b.info.cue_s / pitch)))
        ib_start = ib_end - n_beats
    else:
        ib_start = grid_b.downbeat_offset()
        ib_end = ib_start + n_beats
    if ib_start < 0 or beats_b[ib_end] > b_duration + 1e-6:
        raise MixInputError(
            f"incoming excerpt ({b.duration_s:.2f} s) is shorter than the requested overlap "
            f"({n_beats} beats, {overlap_need_s * tempo_ratio:.2f} s of the incoming song)")

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
    while out_anchors[-1] < post_target + 1.0 and j + 1 < beats_b.size:
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
    n_out = round(duration * rate)

    # Stems.
    a_part = _window(a.audio, round(a_origin * rate), n_out)
    stem_from = max(0, int((ov_start - _PREROLL_S) * rate))
    shifted_map = TimeMap(time_map.output_s - stem_from / rate, time_map.input_s)
    b_stem = np.zeros((2, n_out), dtype=np.float32)
    b_stem[:, stem_from:] = stretch(b_audio, rate, shifted_map, n_out - stem_from)

    # Loudness: each song is brought to the target on the part of it that is heard.
    i_ov0, i_ov1 = round(ov_start * rate), round(ov_end * rate)
    gain_a = gain_to_target(integrated_lufs(a_part[:, :i_ov1], rate), params.target_lufs)
    gain_b = gain_to_target(integrated_lufs(b_stem[:, i_ov0:], rate), params.target_lufs)

    t = np.arange(n_out, dtype=np.float64) / rate
    x = (t - ov_start) / (ov_end - ov_start)
    fade_a, fade_b = mashup_gains(x) if style.mashup else fade_gains(x, style.curve)

    a_sig, b_sig = a_part, b_stem
    if style.filter_sweep:
        a_sig = a_sig.copy()
        a_sig[:, :i_ov1] = highpass_sweep(a_sig[:, :i_ov1], rate, np.clip(x[:i_ov1], 0.0, 1.0))
    if style.eq_bass_swap:
        low_a, high_a = split_bass(a_sig, rate)
        low_b, high_b = split_bass(b_sig, rate)
        bass_a, bass_b = step_gains(x, 0.5, float(np.clip(1.0 / n_beats, 0.02, 0.25)))
        a_sig = high_a + low_a * bass_a.astype(np.float32)
        b_sig = high_b + low_b * bass_b.astype(np.float32)
    mix = (a_sig * (gain_a * fade_a).astype(np.float32)
           + b_sig * (gain_b * fade_b).astype(np.float32))

    # Whole-mix loudness, then the limiter; a second small correction if limiting cost level.
    out = mix
    bound = 10 ** (_MAX_CORRECTION_DB / 20)
    output_lufs = integrated_lufs(out, rate)
    for _ in range(2):
        correction = gain_to_target(output_lufs, params.target_lufs)
        out = limit(out * np.float32(np.clip(correction, 1 / bound, bound)), rate,
                    params.ceiling_dbtp)
        output_lufs = integrated_lufs(out, rate)
        if abs(output_lufs - params.target_lufs) <= 0.3:
            break

    # Metrics.
    ref_a = a_out[ia_start : ia_end + 1]
    b_beats_overlap = beats_b[ib_start : ib_end + 1]
    predicted = time_map.to_output(b_beats_overlap)
    measured_b = measured_beat_positions(b_mono, b_beats_overlap, b_stem.mean(axis=0), predicted,
                                         rate)
    sc, mel = spectral_continuity(out, rate, ov_start, ov_end)
    env_t = np.arange(0.0, duration, 1.0 / ENVELOPE_RATE_HZ)
    env_x = (env_t - ov_start) / (ov_end - ov_start)
    env_a, env_b = mashup_gains(env_x) if style.mashup else fade_gains(env_x, style.curve)
    beats_b_out = time_map.to_output(beats_b[beats_b <= b_duration])
    elapsed = time.perf_counter() - started
    report = mixer_pb2.QualityReport(
        duration_s=n_out / rate,
        overlap_s=ov_end - ov_start,
        overlap_bars=round(n_beats / bpb),
        length_reason=reason,
        tempo_ratio=tempo_ratio,
        key_shift_semitones=shift,
        beat_alignment_error_ms=beat_alignment_error_ms(measured_b, ref_a),
        loudness_step_lu=loudness_step_lu(out, rate, ov_start, ov_end),
        spectral_convergence=sc,
        mel_mse=mel,
        true_peak_dbtp=true_peak_dbtp(out),
        output_loudness_lufs=output_lufs,
        render_speed_x_realtime=(n_out / rate) / max(elapsed, 1e-9),
        tempo_a_bpm=grid_a.bpm,
        tempo_b_bpm=grid_b_own.bpm,
    )
    return Rendered(
        audio=out, rate_hz=rate, gain_outgoing=env_a, gain_incoming=env_b,
        overlap_start_s=ov_start, overlap_end_s=ov_end,
        beats_outgoing_s=a_out[(a_out >= 0) & (a_out <= duration)],
        beats_incoming_s=beats_b_out[(beats_b_out >= ov_start) & (beats_b_out <= duration)],
        beats_incoming_measured_s=measured_b, a_origin_s=a_origin,
        b_start_s=float(beats_b[ib_start]), report=report,
    )
