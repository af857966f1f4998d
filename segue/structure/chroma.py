"""Cheap pitch-class profiles (chroma) of short PCM frames, for key and section analysis."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt
import scipy.fft

F32 = npt.NDArray[np.float32]

# Chroma frames per second of audio; each frame analyses a centred excerpt of FFT_S seconds.
FRAMES_PER_S = 4
FFT_S = 4096 / 22050
FMIN_HZ = 55.0
FMAX_HZ = 1760.0
TUNING_A4_HZ = 440.0


@lru_cache(maxsize=8)
def chroma_filterbank(sample_rate_hz: int, n_fft: int) -> F32:
    """Weights [n_fft // 2 + 1, 12] folding FFT bins between FMIN_HZ and FMAX_HZ into pitch classes.

    Each bin spreads over its two nearest pitch classes by distance in semitones, and bins
    wider than a semitone (the lowest ones) are weighted down since they blur classes.
    """
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate_hz)
    weights = np.zeros((len(freqs), 12))
    valid = (freqs >= FMIN_HZ) & (freqs <= min(FMAX_HZ, sample_rate_hz / 2))
    midi = 69.0 + 12.0 * np.log2(freqs[valid] / TUNING_A4_HZ)
    lower = np.floor(midi)
    frac = midi - lower
    rows = np.flatnonzero(valid)
    bin_hz = sample_rate_hz / n_fft
    semitone_hz = freqs[valid] * (2 ** (1 / 12) - 1)
    sharpness = np.clip(semitone_hz / (2 * bin_hz), 0.0, 1.0)
    weights[rows, lower.astype(int) % 12] += (1 - frac) * sharpness
    weights[rows, (lower.astype(int) + 1) % 12] += frac * sharpness
    out: F32 = weights.astype(np.float32)
    out.setflags(write=False)
    return out


class ChromaExtractor:
    """Log chroma energy and RMS level of the frames of one PCM window."""

    def __init__(self, sample_rate_hz: int) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.n_fft = 1 << max(8, round(np.log2(FFT_S * sample_rate_hz)))
        self.window = np.hanning(self.n_fft + 1)[:-1].astype(np.float32)
        self.filters = chroma_filterbank(sample_rate_hz, self.n_fft)

    def frame_count(self, n_samples: int) -> int:
        return max(1, round(n_samples * FRAMES_PER_S / self.sample_rate_hz))

    def __call__(self, pcm: F32) -> tuple[F32, F32]:
        """(log10 chroma energy [n, 12], RMS level in dBFS [n]) for n = frame_count(len(pcm))."""
        n = self.frame_count(len(pcm))
        bounds = np.round(np.linspace(0, len(pcm), n + 1)).astype(int)
        frames = np.zeros((n, self.n_fft), np.float32)
        levels = np.empty(n, np.float32)
        for i in range(n):
            part = pcm[bounds[i] : bounds[i + 1]]
            levels[i] = np.sqrt(np.mean(part * part)) if len(part) else 0.0
            # A centred excerpt is enough for pitch content and keeps the FFT small.
            take = min(len(part), self.n_fft)
            offset = (len(part) - take) // 2
            pad = (self.n_fft - take) // 2
            frames[i, pad : pad + take] = part[offset : offset + take]
        spectrum = scipy.fft.rfft(frames * self.window, axis=1)
        power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
        chroma = np.log10(power @ self.filters + 1e-6).astype(np.float32)
        level_db = (20.0 * np.log10(levels + 1e-6)).astype(np.float32)
        return chroma, level_db
