"""One beat phase for a whole grid: undoes the dynamic-programming tracker's slides.

The tracker (beats.track_beats) may leave the beat for the off-beat, or for a swung eighth,
through a section where those onsets are the louder ones, and come back after it: over
three to six beats each interval runs a little long or short, and the grid ends up half or
a third of a beat away. On the rendered-MIDI tuning pieces such slides cost more beat
F-measure than any other error at the right tempo. Real music keeps its beat phase, so the
grid is put back on one phase: the one whose beats fall on the strongest onsets overall.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.ndimage

from segue.structure.beats import window_max

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

# Intervals (as a share of the local period) off by at least this much move the phase.
MOVE = 0.04
# A slide moves the phase by at least this share of a beat in all...
MIN_SLIDE = 0.3
# ...within at most this many intervals, allowing this many steady ones inside it.
MAX_SLIDE_INTERVALS = 6
MAX_GAP = 2
# The intervals on each side (up to SIDE of them, at least MIN_SIDE) must be steady: their
# median deviation stays below STEADY. Rubato changes the tempo without settling.
SIDE = 6
MIN_SIDE = 2
STEADY = 0.03
# Running-median length (intervals) of the local period.
PERIOD_INTERVALS = 17
# A one-phase grid replaces the tracked one only if its beats keep this share of the
# tracked grid's mean onset strength (the tracked grid follows the loudest onsets, so a
# one-phase grid is usually a little weaker).
KEEP_SHARE = 0.85


@dataclass(frozen=True)
class Slide:
    first: int  # index of the slide's first interval
    last: int  # index of its last interval
    beats: float  # phase moved, in beats (positive: later)


def unify_phase(beats_s: F64, onset: F32, fps: float) -> F64:
    """Beat times (s) with every slide undone, on the phase whose beats fall on the strongest
    `onset` (frames at `fps`); `beats_s` unchanged when it has no slide."""
    if len(beats_s) < 16:
        return beats_s
    intervals = np.diff(beats_s)
    period = scipy.ndimage.median_filter(intervals, size=PERIOD_INTERVALS, mode="nearest")
    slides = find_slides(intervals / period - 1.0)
    if not slides:
        return beats_s
    # The median of frame-quantised intervals is off by up to half a frame, which would add
    # up over the slides; the mean of the steady intervals is not.
    period = _steady_period(intervals, slides)
    slides = [_measured(s, intervals / period - 1.0) for s in slides]
    offset = np.zeros(len(beats_s))
    for slide in slides:
        offset[slide.last + 1 :] += slide.beats
    per_beat = np.r_[period, period[-1]]
    best, best_strength = beats_s, KEEP_SHARE * _strength(beats_s, onset, fps)
    for phase in np.unique(np.round(_wrap(offset), 3)):
        candidate = _on_phase(beats_s, offset, float(phase), per_beat, slides)
        strength = _strength(candidate, onset, fps)
        if strength > best_strength:
            best, best_strength = candidate, strength
    return best


def find_slides(deviation: F64) -> list[Slide]:
    """Slides in a grid's interval deviations from the local period (share of a beat): runs
    of same-signed deviations that add up to MIN_SLIDE or more, between steady stretches."""
    slides = []
    i = 0
    while i < len(deviation):
        if abs(deviation[i]) < MOVE:
            i += 1
            continue
        last = _run_end(deviation, i)
        total = float(deviation[i : last + 1].sum())
        if abs(total) >= MIN_SLIDE and last - i < MAX_SLIDE_INTERVALS:
            before = deviation[max(0, i - SIDE) : i]
            after = deviation[last + 1 : last + 1 + SIDE]
            if _steady(before) and _steady(after):
                slides.append(Slide(i, last, total))
        i = last + 1
    return slides


def _steady_period(intervals: F64, slides: list[Slide]) -> F64:
    """Running mean (PERIOD_INTERVALS long) of the intervals outside every slide (s)."""
    steady = np.ones(len(intervals))
    for slide in slides:
        steady[slide.first : slide.last + 1] = 0.0
    size = PERIOD_INTERVALS
    total = scipy.ndimage.uniform_filter1d(intervals * steady, size, mode="nearest")
    count = scipy.ndimage.uniform_filter1d(steady, size, mode="nearest")
    fallback = scipy.ndimage.median_filter(intervals, size=size, mode="nearest")
    out: F64 = np.where(count > 0.25, total / np.maximum(count, 1e-9), fallback)
    return out


def _measured(slide: Slide, deviation: F64) -> Slide:
    return Slide(slide.first, slide.last, float(deviation[slide.first : slide.last + 1].sum()))


def _run_end(deviation: F64, first: int) -> int:
    """Last interval of the run of deviations with the sign of deviation[first], bridging up
    to MAX_GAP small ones."""
    sign = np.sign(deviation[first])
    last = first
    while True:
        k = last + 1
        while k < len(deviation) and k - last - 1 < MAX_GAP and abs(deviation[k]) < MOVE:
            k += 1
        if k < len(deviation) and abs(deviation[k]) >= MOVE and np.sign(deviation[k]) == sign:
            last = k
        else:
            return last


def _steady(deviation: F64) -> bool:
    return len(deviation) >= MIN_SIDE and float(np.median(np.abs(deviation))) < STEADY


def _wrap(beats: F64) -> F64:
    """Phase in beats, wrapped to [-0.5, 0.5)."""
    out: F64 = (beats + 0.5) % 1.0 - 0.5
    return out


def _on_phase(
    beats_s: F64, offset: F64, phase: float, per_beat: F64, slides: list[Slide]
) -> F64:
    """The grid moved to `phase` everywhere: each beat shifted by its offset from it, the
    beats inside each slide dropped, and the gaps this leaves filled at the local period."""
    moved = beats_s - _wrap(offset - phase) * per_beat
    keep = np.ones(len(moved), bool)
    for slide in slides:
        keep[slide.first + 1 : slide.last + 1] = False
    return _evenly_filled(moved[keep], per_beat[keep])


def _evenly_filled(beats_s: F64, period_s: F64) -> F64:
    """Beats with gaps of about k periods filled by k - 1 evenly spaced beats, and any beat
    within half a period of the one before it dropped."""
    order = np.argsort(beats_s)
    out = [float(beats_s[order[0]])]
    for t, period in zip(beats_s[order[1:]], period_s[order[1:]], strict=True):
        steps = round((t - out[-1]) / period)
        if steps < 1:
            continue
        out.extend(np.linspace(out[-1], t, steps + 1)[1:].tolist())
    result = np.asarray(out)
    kept: F64 = result[result >= 0.0]
    return kept


def _strength(beats_s: F64, onset: F32, fps: float) -> float:
    """Mean onset strength at the beats (each the maximum within 1.5 frames)."""
    frames = beats_s * fps
    return float(np.mean(window_max(onset, frames - 1.5, frames + 1.5)))
