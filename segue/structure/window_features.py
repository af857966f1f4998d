"""Structure features of pushed windows, as pure functions: nothing here keeps state.

A group of windows of one shape yields `FeatureRows`: per mel frame the spectral flux, per
chroma frame the pitch-class energy and level, per half window a cepstral timbre summary.
`structure_features` puts rows stored so far on their time axes for the analysis.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import numpy.typing as npt
import scipy.fft

from segue.structure.chroma import ChromaExtractor, level_db
from segue.structure.features import StructureFeatures
from segue.structure.onset import (
    BAND_GROUPS,
    N_MELS,
    LogMel,
    band_group_shares,
    frame_samples,
    spectral_flux,
)

F32 = npt.NDArray[np.float32]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]

TIMBRE_COEFFS = 13
# Timbre summaries per pushed window (each covers the mel frames of one half).
TIMBRE_PER_WINDOW = 2
TONAL_WIDTH = 13  # 12 chroma classes and the level
ONSET_WIDTH = BAND_GROUPS  # flux per group of bands (onset.BAND_EDGES_HZ)
WINDOW_WIDTH = 3  # per window: samples, mel frames, chroma frames

# Where a stream's log-mel frames come from: the model ("mel") or our own front end ("pcm").
Source = Literal["pcm", "mel"]


# Built once per group of windows, so slotted, not frozen: that builds in a third of the time.
@dataclass(slots=True)
class FeatureRows:
    """Features of consecutive windows, one row per window, mel frame, chroma frame or
    half window (float32 here; stored as float16). Read-only by convention."""

    windows: I32  # [windows, WINDOW_WIDTH]: samples, mel frames, chroma frames
    onset: F32  # [mel frames, ONSET_WIDTH]
    tonal: F32  # [chroma frames, TONAL_WIDTH]: log10 chroma energy, then level in dBFS
    timbre: F32  # [windows * TIMBRE_PER_WINDOW, TIMBRE_COEFFS]
    last_mel: F32 | None  # the last log-mel frame: the reference of the next window's flux


def analyse_windows(
    chroma: ChromaExtractor,
    excerpts: F32,
    mean_square: F32,
    mel: F32,
    length: int,
    previous_mel: F32 | None,
    *,
    overwrite: bool = False,
) -> FeatureRows:
    """Features of `count` windows of `length` samples each.

    `excerpts` [count * parts, excerpt samples] are their decimated chroma excerpts
    (`ChromaExtractor.decimate`), `mean_square` [count] their mean squares (full scale 1),
    `mel` [count, frames, n_mels] their natural-log mel frames, and `previous_mel` the frame
    before the first (None at the start of a song). With `overwrite`, `excerpts` and `mel`
    serve as scratch space and lose their values, which saves copying them.
    """
    count, frames, n_mels = mel.shape
    parts = len(excerpts) // count if count else 0
    tonal = np.empty((len(excerpts), TONAL_WIDTH), np.float32)
    tonal[:, :12] = chroma.fold(excerpts if overwrite else excerpts.copy(), max(parts, 1))
    tonal[:, 12] = np.repeat(level_db(mean_square), parts)
    # Timbre first: the flux below floors the frames in place when overwriting.
    timbre = window_timbre(mel)
    if count and frames:
        flat = mel.reshape(-1, n_mels)
        last_mel = flat[-1].copy()
        onset = spectral_flux(flat, previous_mel, overwrite=overwrite)
    else:
        last_mel, onset = previous_mel, np.zeros((0, ONSET_WIDTH), np.float32)
    windows = np.empty((count, WINDOW_WIDTH), np.int32)
    windows[:] = (length, frames, parts)
    return FeatureRows(windows, onset, tonal, timbre, last_mel)


def log_mel_runs(front: LogMel, tail: F32, pcm: F32) -> tuple[list[F32], F32]:
    """Our own log-mel frames of windows `pcm` [windows, samples] that follow the unframed
    samples `tail`: ([windows, frames, n_mels] runs of equal frame counts, in order, and the
    samples left for the next window). Counts differ where frames straddle windows."""
    runs: list[list[F32]] = []
    for window in pcm:
        mel, tail = front.frames(tail, window)
        if runs and len(runs[-1][0]) == len(mel):
            runs[-1].append(mel)
        else:
            runs.append([mel])
    return [np.stack(run) for run in runs], tail


@lru_cache(maxsize=4)
def _dct_matrix(n_mels: int) -> F32:
    """Orthonormal DCT-II basis [n_mels, TIMBRE_COEFFS] (zero columns beyond n_mels)."""
    basis = scipy.fft.dct(np.eye(n_mels), type=2, norm="ortho", axis=0)
    out = np.zeros((n_mels, TIMBRE_COEFFS), np.float32)
    width = min(TIMBRE_COEFFS, n_mels)
    out[:, :width] = basis[:width].T
    return out


@lru_cache(maxsize=8)
def _half_means(frames: int) -> F32:
    """[TIMBRE_PER_WINDOW, frames]: averages over each part of a window's frames."""
    out = np.zeros((TIMBRE_PER_WINDOW, frames), np.float32)
    for i, part in enumerate(np.array_split(np.arange(frames), TIMBRE_PER_WINDOW)):
        part = part if len(part) else np.arange(frames)
        out[i, part] = 1.0 / len(part)
    return out


def window_timbre(log_mel: F32) -> F32:
    """Cepstral summary of each half of each window's log-mel frames [windows, frames, n_mels]
    as [windows * TIMBRE_PER_WINDOW, TIMBRE_COEFFS]."""
    windows, frames, n_mels = log_mel.shape
    if frames == 0:
        return np.zeros((windows * TIMBRE_PER_WINDOW, TIMBRE_COEFFS), np.float32)
    means = _half_means(frames) @ log_mel
    out: F32 = (means.reshape(-1, n_mels) @ _dct_matrix(n_mels)).astype(np.float32, copy=False)
    return out


def structure_features(
    sample_rate_hz: int,
    source: Source | None,
    windows: I32,
    onset: F32,
    tonal: F32,
    timbre: F32,
    n_mels: int = N_MELS,
) -> StructureFeatures:
    """Rows of a whole song so far (`FeatureRows` fields, concatenated) on their time axes, in
    seconds from the song's start; `n_mels` is the band count of the log-mel frames the
    onsets came from."""
    sr = sample_rate_hz
    counts = windows.astype(np.int64)
    lengths = counts[:, 0]
    starts = np.cumsum(lengths) - lengths
    # Flux k compares frames k-1 and k: it is dated at the start of frame k. The model's
    # frames tile each window evenly; our own log-mel tiles the song.
    if source == "pcm":
        onset_times = np.arange(int(counts[:, 1].sum())) * frame_samples(sr) / sr
    else:
        onset_times = _spread(starts, lengths, counts[:, 1], 0.0) / sr
    chroma_times = _spread(starts, lengths, counts[:, 2], 0.5) / sr
    timbre_counts = np.full(len(lengths), TIMBRE_PER_WINDOW)
    timbre_times = _spread(starts, lengths, timbre_counts, 0.5) / sr
    return StructureFeatures(
        sample_rate_hz=sr,
        duration_s=float(lengths.sum()) / sr,
        onset_times_s=np.asarray(onset_times, dtype=np.float64),
        onset_full=onset @ band_group_shares(n_mels),
        onset_low=onset[:, 0],
        onset_bands=onset,
        chroma_times_s=np.asarray(chroma_times, dtype=np.float64),
        chroma=tonal[:, :12],
        level_db=tonal[:, 12],
        timbre_times_s=np.asarray(timbre_times, dtype=np.float64),
        timbre=timbre,
    )


def _spread(starts: I64, lengths: I64, counts: I64, at: float) -> npt.NDArray[np.float64]:
    """Sample positions of `counts[i]` evenly spaced items in window i, `at` of the way in."""
    n = np.asarray(counts, dtype=np.int64)
    first = np.cumsum(n) - n
    index = np.arange(int(n.sum())) - np.repeat(first, n) + at
    spacing = np.repeat(lengths / np.maximum(n, 1), n)
    out: npt.NDArray[np.float64] = np.repeat(starts, n) + index * spacing
    return out
