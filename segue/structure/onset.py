"""Onset strength (spectral flux) from log-mel frames, and a numpy twin of the model's log-mel.

The embedder's ONNX model (models/segue_stream.onnx, training/frontend.py) emits natural-log
mel power of non-overlapping 490-sample Hann frames (45 per 1 s window at 22050 Hz, 40 HTK
bands from 30 Hz to 8 kHz, floor 1e-8). `LogMel` computes the same numbers from raw PCM, so
a stream analysed without the model gets the same onsets as one fed the model's frames.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import scipy.fft

F32 = npt.NDArray[np.float32]

FRAME_S = 490 / 22050
N_MELS = 40
F_MIN_HZ = 30.0
F_MAX_HZ = 8000.0
LOG_FLOOR = 1e-8
# Flux is kept per band group, split where the bands' centres cross these frequencies: the
# kick and bass (below 200 Hz, whose flux marks downbeats), the body of snares, voices and
# chords, their attack and the snare's rattle, and hats and cymbals (above 4 kHz).
BAND_EDGES_HZ = (200.0, 1000.0, 4000.0)
BAND_GROUPS = len(BAND_EDGES_HZ) + 1
# Bands more than 60 dB (natural log 13.8) below a frame's loudest are leakage, not music:
# with short frames they wobble with the phase of a steady tone and would read as onsets.
FLUX_RANGE_LOG = 6.0 * math.log(10.0)
# Rises below this (natural log, about 0.4 dB) are a steady sound's frame-to-frame jitter.
FLUX_DEAD_ZONE = 0.1


def hz_to_mel(hz: npt.ArrayLike) -> npt.NDArray[np.float64]:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: npt.ArrayLike) -> npt.NDArray[np.float64]:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def frame_samples(sample_rate_hz: int) -> int:
    return max(16, round(FRAME_S * sample_rate_hz))


@lru_cache(maxsize=8)
def mel_filterbank(sample_rate_hz: int, n_fft: int) -> tuple[int, F32]:
    """(first used bin, weights [used bins, N_MELS]): area-normalised triangular HTK filters."""
    fmax = min(F_MAX_HZ, sample_rate_hz / 2)
    edges = mel_to_hz(np.linspace(hz_to_mel(F_MIN_HZ), hz_to_mel(fmax), N_MELS + 2))
    freqs = np.arange(n_fft // 2 + 1) * sample_rate_hz / n_fft
    rising = (freqs[:, None] - edges[None, :-2]) / (edges[1:-1] - edges[:-2])[None, :]
    falling = (edges[None, 2:] - freqs[:, None]) / (edges[2:] - edges[1:-1])[None, :]
    weights = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (edges[2:] - edges[:-2]))
    used = np.flatnonzero(weights.sum(axis=1) > 0)
    first, last = int(used[0]), int(used[-1]) + 1
    out: F32 = weights[first:last].astype(np.float32)
    out.setflags(write=False)
    return first, out


@lru_cache(maxsize=8)
def band_group_sizes(n_mels: int) -> tuple[int, ...]:
    """How many of `n_mels` bands each group of BAND_EDGES_HZ holds, lowest first (each at
    least one where there are enough bands). Bands are taken to span F_MIN_HZ-F_MAX_HZ on
    the mel scale, as the model's do."""
    edges = mel_to_hz(np.linspace(hz_to_mel(F_MIN_HZ), hz_to_mel(F_MAX_HZ), n_mels + 2))
    starts = np.searchsorted(edges[1:-1], BAND_EDGES_HZ)
    if n_mels >= BAND_GROUPS:
        rank = np.arange(1, BAND_GROUPS)
        starts = np.clip(starts, rank, n_mels - BAND_GROUPS + rank)
    else:  # too few bands to go round: the upper groups stay empty (flux 0)
        starts = np.minimum(np.maximum(starts, 1), n_mels)
    bounds = np.r_[0, starts, n_mels]
    return tuple(int(size) for size in np.diff(bounds))


@lru_cache(maxsize=8)
def _band_means(n_mels: int) -> F32:
    """[n_mels, BAND_GROUPS]: the mean over each group's bands, as one matrix product."""
    out = np.zeros((n_mels, BAND_GROUPS), np.float32)
    start = 0
    for group, size in enumerate(band_group_sizes(n_mels)):
        out[start : start + size, group] = 1.0 / max(size, 1)
        start += size
    out.setflags(write=False)
    return out


@lru_cache(maxsize=8)
def band_group_shares(n_mels: int) -> F32:
    """[BAND_GROUPS]: each group's share of the bands, which weighs the group means into the
    mean over all bands."""
    out = np.asarray(band_group_sizes(n_mels), np.float32) / np.float32(n_mels)
    out.setflags(write=False)
    return out


class LogMel:
    """The model's log-mel front end in numpy: frame k covers samples [k*hop, (k+1)*hop)."""

    def __init__(self, sample_rate_hz: int) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.hop = frame_samples(sample_rate_hz)
        n = np.arange(self.hop)
        window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / self.hop)
        self.window = (window / window.sum()).astype(np.float32)
        self.first_bin, self.filters = mel_filterbank(sample_rate_hz, self.hop)

    def frames(self, tail: F32, pcm: F32) -> tuple[F32, F32]:
        """(log-mel of every frame completed by tail + pcm [n, N_MELS], the samples left over)."""
        buf = np.concatenate([tail, pcm]) if len(tail) else pcm
        count = len(buf) // self.hop
        used = count * self.hop
        blocks = buf[:used].reshape(count, self.hop) * self.window
        spectrum = scipy.fft.rfft(blocks, axis=1)
        band = spectrum[:, self.first_bin : self.first_bin + len(self.filters)]
        power = band.real**2 + band.imag**2
        mel = np.log(power @ self.filters + LOG_FLOOR).astype(np.float32)
        return mel, np.array(buf[used:], dtype=np.float32)


def spectral_flux(log_mel: F32, previous: F32 | None, *, overwrite: bool = False) -> F32:
    """Half-wave rectified log-mel difference averaged over each group of bands
    (BAND_EDGES_HZ), [frames, BAND_GROUPS], lowest group first.

    `previous` is the frame before `log_mel[0]`; without one the first flux is 0. Any log
    base works downstream (the envelope is normalised), but the leakage floor assumes ln.
    With `overwrite`, `log_mel` is floored in place instead of copied.
    """
    n_mels = log_mel.shape[1]
    floored = log_mel if overwrite else log_mel.copy()
    # Maxima down the columns of the transpose: numpy reduces short rows slowly.
    loudest = np.ascontiguousarray(floored.T).max(axis=0)
    np.maximum(floored, (loudest - FLUX_RANGE_LOG)[:, None], out=floored)
    rise = np.empty_like(floored)
    if previous is None:
        rise[0] = FLUX_DEAD_ZONE
    else:
        np.subtract(floored[0], np.maximum(previous, previous.max() - FLUX_RANGE_LOG), out=rise[0])
    np.subtract(floored[1:], floored[:-1], out=rise[1:])
    np.maximum(rise, FLUX_DEAD_ZONE, out=rise)
    rise -= np.float32(FLUX_DEAD_ZONE)
    out: F32 = rise @ _band_means(n_mels)
    return out
