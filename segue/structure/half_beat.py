"""Whether a whole beat grid sits on the off-beat, judged band by band.

A tracker that follows the strongest onsets can settle, for a whole piece, on the eighths
between the beats: where guitars or synths that strike on the off-beat cover more bands
than the kick and snare on the beat. Each band group (onset.BAND_EDGES_HZ) votes with the
log ratio of its onset strength on the beats to that halfway between them, weighted by how
well its vote told the labelled grid from the same grid half a beat later on the tuning
split of the rendered-MIDI set (bench/midi_set.py; `training/fit_half_beat.py` fits the
weights by logistic regression). The grid moves half a beat when the vote is against it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

# Weights of the band groups' votes, bass first (training/fit_half_beat.py). Only their
# direction matters: the decision is the sign of the weighted sum.
BAND_WEIGHTS = (1.24, 0.79, 0.92, 3.64)
# Added to the strengths before their logarithm, so that a band silent at both the beats
# and the midpoints casts no vote (normalised onsets have unit standard deviation).
STRENGTH_FLOOR = 0.05
# Fewer beats than this give no reliable vote.
MIN_BEATS = 16


def band_strengths(frames: F64, bands: F32) -> F64:
    """Mean over `frames` (fractional frame indices) of each band's strongest onset within
    a frame of it, [BAND_GROUPS]; `bands` is [frames, BAND_GROUPS] of normalised onsets."""
    index = np.round(frames).astype(np.int64)
    index = index[(index >= 1) & (index < len(bands) - 1)]
    if len(index) == 0:
        return np.zeros(bands.shape[1])
    near = np.maximum(np.maximum(bands[index - 1], bands[index]), bands[index + 1])
    out: F64 = near.mean(axis=0, dtype=np.float64)
    return out


def off_beat_votes(beats_s: F64, bands: F32, fps: float) -> F64:
    """Each band's vote for the grid over the same grid half a beat later: the log ratio of
    its strength on the beats to that halfway between them, [BAND_GROUPS]."""
    frames = beats_s * fps
    midpoints = frames[:-1] + 0.5 * np.diff(frames)
    on = band_strengths(frames, bands) + STRENGTH_FLOOR
    off = band_strengths(midpoints, bands) + STRENGTH_FLOOR
    out: F64 = np.log(on) - np.log(off)
    return out


def on_the_beat(beats_s: F64, bands: F32, fps: float) -> F64:
    """The beats (s), or the points halfway between them where the bands' weighted vote
    says the grid sits on the off-beat."""
    if len(beats_s) < MIN_BEATS:
        return beats_s
    vote = float(np.dot(BAND_WEIGHTS, off_beat_votes(beats_s, bands, fps)))
    if vote >= 0.0:
        return beats_s
    out: F64 = beats_s[:-1] + 0.5 * np.diff(beats_s)
    return out
