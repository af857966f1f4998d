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
def chroma_filterbank(sample_rate_hz: int, n_fft: int) -> tuple[int, F32]:
    """(first bin, weights [bins, 12]) folding FFT bins from FMIN_HZ to FMAX_HZ into classes.

    Each bin spreads over its two nearest pitch classes by distance in semitones, and bins
    wider than a semitone (the lowest ones) are weighted down since they blur classes. Only
    the bins in range are kept, so the fold is a small matrix product.
    """
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate_hz)
    valid = (freqs >= FMIN_HZ) & (freqs <= min(FMAX_HZ, sample_rate_hz / 2))
    rows = np.flatnonzero(valid)
    weights = np.zeros((len(rows), 12))
    midi = 69.0 + 12.0 * np.log2(freqs[rows] / TUNING_A4_HZ)
    lower = np.floor(midi)
    frac = midi - lower
    bin_hz = sample_rate_hz / n_fft
    semitone_hz = freqs[rows] * (2 ** (1 / 12) - 1)
    sharpness = np.clip(semitone_hz / (2 * bin_hz), 0.0, 1.0)
    at = np.arange(len(rows))
    weights[at, lower.astype(int) % 12] += (1 - frac) * sharpness
    weights[at, (lower.astype(int) + 1) % 12] += frac * sharpness
    out: F32 = weights.astype(np.float32)
    out.setflags(write=False)
    return int(rows[0]), out


class ChromaExtractor:
    """Log chroma energy and RMS level of the frames of one PCM window."""

    def __init__(self, sample_rate_hz: int) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.n_fft = 1 << max(8, round(np.log2(FFT_S * sample_rate_hz)))
        self.window = np.hanning(self.n_fft + 1)[:-1].astype(np.float32)
        self.first_bin, filters = chroma_filterbank(sample_rate_hz, self.n_fft)
        self.n_bins = len(filters)
        # The same weights for the real and the imaginary part of each bin, interleaved as a
        # complex64 spectrum viewed as float32 is: the fold is then one product of squares.
        self.pair_filters = np.repeat(filters, 2, axis=0)
        self.floor = np.array([1e-6] * 12 + [1e-12], np.float32)

    def frame_count(self, n_samples: int) -> int:
        return max(1, round(n_samples * FRAMES_PER_S / self.sample_rate_hz))

    def __call__(self, pcm: F32) -> F32:
        """[n, 13] per window of `pcm` ([samples] or [windows, samples], windows stacked) for
        n = frame_count(samples): log10 chroma energy, then RMS level in dBFS.

        Frame i covers the part window[i*step : (i+1)*step] (step = samples // n, the few
        samples left over are ignored); its chroma comes from the centred n_fft samples of
        the part, zero-padded when the part is shorter.
        """
        windows = pcm.reshape(-1, pcm.shape[-1])
        n = self.frame_count(windows.shape[1])
        step = windows.shape[1] // n
        parts = windows[:, : n * step].reshape(-1, step)
        if step >= self.n_fft:
            offset = (step - self.n_fft) // 2
            frames = parts[:, offset : offset + self.n_fft] * self.window
        else:
            pad = (self.n_fft - step) // 2
            frames = np.zeros((len(parts), self.n_fft), np.float32)
            frames[:, pad : pad + step] = parts * self.window[pad : pad + step]
        spectrum = scipy.fft.rfft(frames, axis=1)
        pairs = spectrum[:, self.first_bin : self.first_bin + self.n_bins].view(np.float32)
        out = np.empty((len(parts), 13), np.float32)
        out[:, :12] = np.square(pairs) @ self.pair_filters
        out[:, 12] = np.einsum("ij,ij->i", parts, parts) / step
        np.log10(out + self.floor, out=out)
        out[:, 12] *= 10.0
        return out
