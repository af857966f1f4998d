"""Cue points: phrase-aligned places to enter or leave a song, for DJ transitions."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.ndimage

from segue.structure.result import CueKind, CuePoint, Section

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

PHRASES = (32, 16, 8)
ENERGY_WINDOW_S = 4.0


def energy_curve(chroma_times_s: F64, level_db: F32) -> tuple[F64, F64]:
    """Short-term energy (linear RMS smoothed over ENERGY_WINDOW_S) scaled to a peak of 1."""
    if len(level_db) == 0:
        return np.zeros(0), np.zeros(0)
    rms = np.power(10.0, level_db.astype(np.float64) / 20.0)
    step = float(np.median(np.diff(chroma_times_s))) if len(chroma_times_s) > 1 else 0.25
    width = max(1, round(ENERGY_WINDOW_S / step))
    smooth = scipy.ndimage.uniform_filter1d(rms, width, mode="nearest")
    peak = float(smooth.max())
    # Below -60 dBFS nothing is audible: report 0 rather than a rescaled hiss.
    scaled = smooth / peak if peak > 1e-3 else np.zeros_like(smooth)
    return chroma_times_s, scaled


def _phrase(bars: int) -> int:
    return next((p for p in PHRASES if bars >= p), 0)


def find_cues(
    sections: list[Section],
    downbeats_s: F64,
    duration_s: float,
    energy_times_s: F64,
    energy: F64,
) -> list[CuePoint]:
    """Entries at section starts in the first two thirds, exits at section ends in the last.

    The first downbeat is always an entry and the end of the last whole phrase an exit, so
    every song with a beat has somewhere to start and stop.
    """

    def bar_of(t: float) -> int:
        return int(np.argmin(np.abs(downbeats_s - t))) if len(downbeats_s) else 0

    def energy_at(t: float) -> float:
        if len(energy) == 0:
            return 0.0
        return round(float(np.interp(t, energy_times_s, energy)), 3)

    points: dict[tuple[float, CueKind], CuePoint] = {}

    def add(t: float, kind: CueKind, bars: int) -> None:
        t = round(float(t), 4)
        points[(t, kind)] = CuePoint(
            t, kind, _phrase(bars) if len(downbeats_s) else 0, energy_at(t)
        )

    starts = [s.start_s for s in sections] + [duration_s]
    boundary_bars = [bar_of(t) for t in starts[:-1]] + [len(downbeats_s)]
    for i, section in enumerate(sections):
        if i > 0 and section.start_s <= 2 * duration_s / 3:
            add(section.start_s, "entry", boundary_bars[i + 1] - boundary_bars[i])
        if i > 0 and section.start_s >= duration_s / 3:
            add(section.start_s, "exit", boundary_bars[i] - boundary_bars[i - 1])
    if len(downbeats_s):
        first = float(downbeats_s[0])
        add(first, "entry", boundary_bars[1] - 0 if len(sections) > 1 else len(downbeats_s))
        whole = ((len(downbeats_s) - 1) // 8) * 8
        if whole >= 8:
            add(float(downbeats_s[whole]), "exit", whole)
    else:
        add(0.0, "entry", 0)
        add(duration_s, "exit", 0)
    return sorted(points.values(), key=lambda c: (c.time_s, c.kind))
