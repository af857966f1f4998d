"""Composite songs made of excerpts of real recordings joined at known points.

They give section-boundary ground truth on real audio: each join is a boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import numpy.typing as npt
import scipy.signal
import soundfile

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

# Joins are crossfaded over this long so they do not click (a click is an easy boundary).
CROSSFADE_S = 0.05


@dataclass(frozen=True)
class SpliceComposite:
    audio: F32
    sample_rate_hz: int
    # 0, every join, and the end.
    boundaries_s: F64
    sources: tuple[str, ...]


def load_mono(path: str | Path, sample_rate_hz: int = 22050) -> F32:
    """Any file libsndfile reads (wav, flac, ogg, opus), averaged to mono and resampled."""
    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    if rate != sample_rate_hz:
        g = gcd(int(rate), sample_rate_hz)
        mono = scipy.signal.resample_poly(mono, sample_rate_hz // g, int(rate) // g)
    out: F32 = np.asarray(mono, dtype=np.float32)
    return out


def splice(
    recordings: Sequence[tuple[str, F32]],
    excerpt_s: Sequence[float],
    rng: np.random.Generator,
    sample_rate_hz: int = 22050,
) -> SpliceComposite:
    """Joins one excerpt of each recording, taken from a random offset, end to end.

    Excerpts are loudness-matched (RMS) so a join is not found merely by a level jump.
    """
    if len(recordings) != len(excerpt_s) or not recordings:
        raise ValueError("one excerpt length per recording is required")
    fade = round(CROSSFADE_S * sample_rate_hz)
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    out = np.zeros(0, np.float32)
    bounds = [0.0]
    for (_, pcm), length_s in zip(recordings, excerpt_s, strict=True):
        n = round(length_s * sample_rate_hz)
        if len(pcm) < n + fade:
            raise ValueError("recording shorter than its excerpt")
        start = int(rng.integers(0, len(pcm) - n - fade + 1))
        part = pcm[start : start + n + fade].copy()
        rms = float(np.sqrt(np.mean(part**2)))
        part *= 0.1 / max(rms, 1e-6)
        if len(out):
            out[-fade:] = out[-fade:] * ramp[::-1] + part[:fade] * ramp
            out = np.concatenate([out, part[fade:]])
        else:
            out = part
        bounds.append(len(out) / sample_rate_hz)
    bounds[-1] = len(out) / sample_rate_hz
    joins = np.asarray(bounds, dtype=np.float64)
    # Joins sit where the crossfade ends; its middle is the fairest boundary time.
    joins[1:-1] -= CROSSFADE_S / 2
    peak = float(np.max(np.abs(out)))
    if peak > 0.99:
        out *= 0.99 / peak
    return SpliceComposite(out, sample_rate_hz, joins, tuple(name for name, _ in recordings))
