"""The time series that the structure analysis works on, as gathered by the accumulator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class StructureFeatures:
    sample_rate_hz: int
    duration_s: float
    # Spectral flux over all bands, over the bass bands and over each group of bands
    # ([n, BAND_GROUPS], lowest first, the bass bands' included), at onset_times_s.
    onset_times_s: F64
    onset_full: F32
    onset_low: F32
    onset_bands: F32
    # log10 chroma energy [n, 12] and RMS level (dBFS) at chroma_times_s.
    chroma_times_s: F64
    chroma: F32
    level_db: F32
    # Cepstral timbre summary [n, TIMBRE_COEFFS] at timbre_times_s.
    timbre_times_s: F64
    timbre: F32


def uniform_onset(features: StructureFeatures, fps: float) -> F32:
    """Full-band onset strength resampled onto a grid of `fps` frames from t = 0."""
    return _resample(features.onset_times_s, features.onset_full, features.duration_s, fps)


def uniform_band_onsets(features: StructureFeatures, fps: float) -> F32:
    """Each band group's onset strength on a grid of `fps` frames from t = 0, [frames,
    BAND_GROUPS]."""
    columns = features.onset_bands.T
    return np.stack(
        [_resample(features.onset_times_s, c, features.duration_s, fps) for c in columns], axis=1
    )


def _resample(times: F64, values: F32, duration_s: float, fps: float) -> F32:
    n = int(np.floor(duration_s * fps)) + 1
    if len(times) == 0:
        return np.zeros(n, np.float32)
    grid = np.arange(n) / fps
    return np.interp(grid, times, values, left=0.0, right=0.0).astype(np.float32)
