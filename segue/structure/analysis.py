"""The final structure analysis: tempo, beats, meter, key, sections and cues from features."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from segue.structure import beat_activation
from segue.structure.beat_activation import activation_inputs
from segue.structure.beats import (
    DOUBLE_RATIO,
    metrical_level,
    midpoint_ratio,
    track_beats,
    track_beats_on_each,
)
from segue.structure.cues import energy_curve, find_cues
from segue.structure.features import (
    StructureFeatures,
    uniform_band_onsets,
    uniform_onset,
)
from segue.structure.key import estimate_key
from segue.structure.meter import estimate_meter
from segue.structure.onset import FRAME_S
from segue.structure.result import StructureResult
from segue.structure.sections import (
    BLOCK_S,
    KERNEL_HALF_BARS,
    KERNEL_HALF_S,
    label_sections,
    pool_blocks,
    segment,
)
from segue.structure.tempo import TempoEstimate, estimate_tempo, normalise_onset, rhythm_pattern

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

# Onset envelope rate: the model's log-mel frame rate (490-sample frames at 22050 Hz).
ONSET_FPS = 1.0 / FRAME_S
# Share of the bass-band flux in the envelope the tempo and its metrical level are read from:
# it favours the kick's period over off-beat hats. The beats are tracked on the learned beat
# activation (segue/structure/beat_activation.py), which tells a beat from an off-beat riff or
# a busy hi-hat better than any fixed mix of the band fluxes did. The activation's own tempo
# reading is not used: it reads slow, calm music at double time (models/README.md).
LOW_ONSET_WEIGHT = 0.5
# Below this tempo confidence no beat grid is reported.
MIN_TEMPO_CONFIDENCE = 0.05
# Tempo range the metrical-level correction may move the beat into.
MIN_LEVEL_BPM = 70.0
MAX_LEVEL_BPM = 170.0
# Up to this tempo when the points halfway between the beats are as strong as the beats.
MAX_FAST_LEVEL_BPM = 225.0
# Beats per span over which the reported tempo is measured (see grid_bpm), and how far an
# interval may stray from the median one before a span holding it is left out.
SPAN_BEATS = 8
REGULAR_SHARE = 0.15
# Bar-synchronous sections need a meter at least this confident.
MIN_METER_CONFIDENCE = 0.05


def band_onsets(features: StructureFeatures) -> tuple[F32, F32, F32]:
    """Normalised onset envelopes at ONSET_FPS: all bands, the bass bands, and each band
    group's [frames, BAND_GROUPS]."""
    full = normalise_onset(uniform_onset(features, ONSET_FPS), ONSET_FPS)
    columns = uniform_band_onsets(features, ONSET_FPS).T
    bands = np.stack([normalise_onset(c, ONSET_FPS) for c in columns], axis=1)
    low = np.ascontiguousarray(bands[:, 0])  # the bass group is the bass bands
    return full, low, bands


def _combine(full: F32, low: F32) -> F32:
    """The envelope the tempo is read from: all bands, with the bass's kicks weighted up."""
    out: F32 = (full + LOW_ONSET_WEIGHT * low).astype(np.float32)
    return out


def analyze_features(features: StructureFeatures) -> StructureResult:
    duration = features.duration_s
    full, low, bands = band_onsets(features)
    onset = _combine(full, low)
    tempo = estimate_tempo(onset, ONSET_FPS)
    beats = _beat_grid(tempo, onset, full, low, bands)
    meter = estimate_meter(beats, low, ONSET_FPS, features.chroma_times_s, features.chroma)
    key = estimate_key(features.chroma, features.level_db)

    downbeats = beats[meter.positions == 1] if len(beats) else beats
    use_bars = meter.confidence >= MIN_METER_CONFIDENCE and len(downbeats) >= 8
    if use_bars:
        edges = downbeats
        if edges[0] > 0.5:
            edges = np.r_[0.0, edges]
        edges = (
            np.r_[edges, duration] if duration - edges[-1] > 0.1 else np.r_[edges[:-1], duration]
        )
        bar_s = float(np.median(np.diff(downbeats)))
        kernel_half = KERNEL_HALF_BARS
    else:
        edges = np.r_[np.arange(0.0, duration, BLOCK_S), duration]
        edges = np.unique(edges)
        bar_s = BLOCK_S
        kernel_half = round(KERNEL_HALF_S / BLOCK_S)
    sections_list = []
    if len(edges) >= 2 and len(features.chroma):
        blocks = pool_blocks(
            edges,
            features.chroma_times_s,
            features.chroma,
            features.level_db,
            features.timbre_times_s,
            features.timbre,
            *rhythm_pattern(onset, ONSET_FPS),
        )
        bounds, strengths = segment(blocks, duration, bar_s, kernel_half)
        sections_list = label_sections(blocks, bounds, strengths, duration)
    energy_times, energy = energy_curve(features.chroma_times_s, features.level_db)
    cues = find_cues(sections_list, downbeats, duration, energy_times, energy)

    stability = _stability(beats)
    bpm = tempo.bpm if len(beats) else 0.0
    if len(beats) >= 8:
        bpm = grid_bpm(beats)
    return StructureResult(
        duration_s=duration,
        tempo_bpm=round(bpm, 3),
        tempo_stability=stability,
        tempo_confidence=round(tempo.confidence if len(beats) else 0.0, 3),
        beat_times_s=tuple(round(float(t), 4) for t in beats),
        beat_positions=tuple(int(p) for p in meter.positions) if len(beats) else (),
        beats_per_bar=meter.beats_per_bar,
        key=key,
        sections=tuple(sections_list),
        cue_points=tuple(cues),
    )


def _beat_grid(tempo: TempoEstimate, onset: F32, full: F32, low: F32, bands: F32) -> F64:
    """Beat times (s) tracked on the beat activation at the corrected metrical level; none
    when too few.

    The level is chosen on a grid tracked over all bands: the thresholds of metrical_level
    were set on such grids, and on the activation's grid they read a fast two-beat piece at
    half its tempo.
    """
    beats = np.zeros(0)
    if tempo.confidence >= MIN_TEMPO_CONFIDENCE:
        # The network runs only where there is a beat to place (not on silence or noise).
        activation = beat_activation.default()(activation_inputs(full, bands))
        # Both at the estimated level in one pass; the activation again at another level.
        over_all, beats = track_beats_on_each([full, activation], tempo.local_period, ONSET_FPS)
        factor = _level_factor(tempo, over_all, onset, full, low)
        if factor != 1.0:
            beats = track_beats(activation, tempo.local_period / factor, ONSET_FPS)
    if len(beats) < 4:
        beats = np.zeros(0)
    return beats


def _level_factor(tempo: TempoEstimate, beats: F64, onset: F32, full: F32, low: F32) -> float:
    """The factor (0.5, 1 or 2) the tempo estimate's beat rate moves by, judged on `beats`
    tracked over all bands."""
    factor = metrical_level(beats, onset, full, low, ONSET_FPS)
    if factor != 1.0 and _level_allowed(tempo.bpm * factor, beats, onset):
        return factor
    return 1.0


def _level_allowed(bpm_after: float, beats: F64, onset: F32) -> bool:
    """Whether the metrical-level correction may move the beat to `bpm_after`.

    Above MAX_LEVEL_BPM only when the onsets halfway between the tracked beats are as strong
    as those on them: a fast piece (a polka, a reel) read at half time.
    """
    if MIN_LEVEL_BPM <= bpm_after <= MAX_LEVEL_BPM:
        return True
    fast = MAX_LEVEL_BPM < bpm_after <= MAX_FAST_LEVEL_BPM
    return fast and midpoint_ratio(beats * ONSET_FPS, onset) > DOUBLE_RATIO


def grid_bpm(beats: F64) -> float:
    """The tempo (BPM) the beat grid follows: the median over SPAN_BEATS-beat spans whose
    intervals are all regular (within REGULAR_SHARE of the median interval).

    Beats sit on a 22 ms frame grid, so single intervals of a 120 BPM grid alternate 22 and
    23 frames and their median is off by 2%; a span of several beats divides that error. A
    span holding a skipped or extra beat would be off by far more, so those are left out.
    """
    intervals = np.diff(beats)
    median = float(np.median(intervals))
    span = min(SPAN_BEATS, len(beats) // 2)
    irregular = np.r_[0, np.cumsum(np.abs(intervals / median - 1.0) >= REGULAR_SHARE)]
    clean = irregular[span:] == irregular[:-span]
    if clean.sum() < 3:
        return 60.0 / median
    return 60.0 * span / float(np.median((beats[span:] - beats[:-span])[clean]))


def _stability(beats: F64) -> float:
    """1 for a steady grid, falling towards 0 as inter-beat intervals vary (rubato)."""
    if len(beats) < 4:
        return 0.0
    intervals = np.diff(beats)
    spread = float(np.std(np.log(intervals)))
    return round(float(np.clip(1.0 - spread / 0.1, 0.0, 1.0)), 3)
