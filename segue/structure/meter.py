"""Bar positions of beats: which beat is the downbeat, in 3/4 or 4/4."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from segue.structure.beats import window_max

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Meter:
    beats_per_bar: int
    # 1-based position of each beat in its bar; all 0 when the meter is unknown.
    positions: npt.NDArray[np.int64]
    confidence: float


def beat_chroma(beats_s: F64, chroma_times_s: F64, chroma: F32) -> F32:
    """Mean linear chroma over each inter-beat interval, L2-normalised, [beats, 12]."""
    linear = np.power(10.0, chroma.astype(np.float64))
    linear /= np.maximum(np.linalg.norm(linear, axis=1, keepdims=True), 1e-12)
    edges = np.append(
        beats_s, beats_s[-1] + (np.median(np.diff(beats_s)) if len(beats_s) > 1 else 0.5)
    )
    which = np.searchsorted(edges, chroma_times_s, side="right") - 1
    out = np.zeros((len(beats_s), 12))
    inside = (which >= 0) & (which < len(beats_s))
    np.add.at(out, which[inside], linear[inside])
    # Beats shorter than a chroma frame borrow the nearest frame.
    empty = ~np.any(out > 0, axis=1)
    if np.any(empty) and len(chroma_times_s):
        nearest = np.clip(
            np.searchsorted(chroma_times_s, beats_s[empty]), 0, len(chroma_times_s) - 1
        )
        out[empty] = linear[nearest]
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    result: F32 = out.astype(np.float32)
    return result


def estimate_meter(
    beats_s: F64, low_onset: F32, fps: float, chroma_times_s: F64, chroma: F32
) -> Meter:
    """Downbeats where harmony changes and bass notes start, tried for 4/4 and 3/4.

    Each beat gets a downbeat likelihood: the chroma change into it plus its bass onset
    strength. The meter and phase whose downbeats collect the most of it win; 3/4 must be
    clearly better since 4/4 is far more common.
    """
    n = len(beats_s)
    if n < 8:
        return Meter(4, np.zeros(n, np.int64), 0.0)
    per_beat = beat_chroma(beats_s, chroma_times_s, chroma)
    change = np.r_[0.0, 1.0 - np.sum(per_beat[1:] * per_beat[:-1], axis=1)]
    frames = np.clip(np.round(beats_s * fps), 0, len(low_onset) - 1)
    bass = window_max(low_onset, frames - 2, frames + 2)
    evidence = _z(change) + 0.5 * _z(bass)
    best: tuple[float, int, int] = (-np.inf, 4, 0)
    margins: dict[int, float] = {}
    for bpb in (4, 3):
        scores = [float(np.mean(evidence[phase::bpb])) for phase in range(bpb)]
        order = np.argsort(scores)[::-1]
        margins[bpb] = scores[order[0]] - scores[order[1]]
        # Bias towards 4/4: 3/4 must beat it by a margin.
        value = scores[order[0]] - (0.25 if bpb == 3 else 0.0)
        if value > best[0]:
            best = (value, bpb, int(order[0]))
    _, bpb, phase = best
    positions = ((np.arange(n) - phase) % bpb) + 1
    confidence = float(np.clip(margins[bpb] / 1.0, 0.0, 1.0)) * min(1.0, n / 32)
    return Meter(bpb, positions.astype(np.int64), confidence)


def _z(values: F64) -> F64:
    std = float(np.std(values))
    out: F64 = (values - np.mean(values)) / std if std > 1e-12 else np.zeros_like(values)
    return out
