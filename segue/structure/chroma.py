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
# Each excerpt is summed in groups of samples down to this many before its FFT. Chroma needs
# nothing above FMAX_HZ, so the sum (a box low-pass) keeps every bin it uses at the same
# spacing for a quarter of the FFT; what it folds down from above 3.7 kHz is weak in music
# (chroma of real recordings matches the full FFT's to a cosine of 0.9996).
DECIMATED_FFT = 1024
# Floors of log10 chroma energy and of mean square level.
CHROMA_FLOOR = 1e-6
LEVEL_FLOOR = 1e-12


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
    """Log chroma energy and RMS level of the frames of PCM windows, in steps: per window
    `mean_square` and `decimate` (the excerpts, cheap), then `fold` (window, FFT and
    pitch-class fold, best run on many excerpts at once)."""

    def __init__(self, sample_rate_hz: int) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.n_fft = 1 << max(8, round(np.log2(FFT_S * sample_rate_hz)))
        self.decimation = max(1, self.n_fft // DECIMATED_FFT)
        # Bin k of the short FFT of the decimated excerpt is bin k of the full-length FFT.
        self.excerpt_samples = self.n_fft // self.decimation
        self.window = np.hanning(self.excerpt_samples + 1)[:-1].astype(np.float32)
        self.first_bin, filters = chroma_filterbank(sample_rate_hz, self.n_fft)
        self.n_bins = len(filters)
        if self.first_bin + self.n_bins > self.excerpt_samples // 2 + 1:
            raise ValueError(f"sample rate {sample_rate_hz} too low for chroma up to {FMAX_HZ}")
        # The same weights for the real and the imaginary part of each bin, interleaved as a
        # complex64 spectrum viewed as float32 is: the fold is then one product of squares.
        self.pair_filters = np.repeat(filters, 2, axis=0)
        self._ones = np.ones(self.decimation, np.float32)

    def frame_count(self, n_samples: int) -> int:
        return max(1, round(n_samples * FRAMES_PER_S / self.sample_rate_hz))

    def frames_of(self, length: int) -> tuple[int, int]:
        """(frames, step): frame i of a window covers samples [i*step, (i+1)*step)."""
        n = self.frame_count(length)
        return n, length // n

    def mean_square(self, windows: F32) -> F32:
        """Mean square of each window [windows, samples]: the level is the whole window's,
        which loudness curves and key weights need no finer. A NaN or Inf sample makes its
        window's value non-finite."""
        if len(windows) == 1:
            out = np.asarray([np.dot(windows[0], windows[0])], np.float32)
        else:
            out = (windows[:, None, :] @ windows[:, :, None]).reshape(-1)
        out /= np.float32(windows.shape[1])
        return out

    def decimate(self, windows: F32, out: F32) -> None:
        """Writes the excerpts of windows [windows, samples] to out [windows * n,
        excerpt_samples], n = frame_count(samples).

        Frame i covers the part window[i*step : (i+1)*step] (the few samples after the last
        part are ignored); its chroma comes from the centred n_fft samples of the part,
        zero-padded when the part is shorter, summed in groups of `decimation` samples.
        """
        n, step = self.frames_of(windows.shape[1])
        parts = windows[:, : n * step].reshape(-1, step)
        if step >= self.n_fft:
            offset = (step - self.n_fft) // 2
            excerpt = parts[:, offset : offset + self.n_fft]
        else:
            pad = (self.n_fft - step) // 2
            excerpt = np.zeros((len(parts), self.n_fft), np.float32)
            excerpt[:, pad : pad + step] = parts
        grouped = excerpt.reshape(len(parts), self.excerpt_samples, self.decimation)
        np.matmul(grouped, self._ones, out=out)

    def fold(self, frames: F32) -> F32:
        """log10 chroma energy [frames, 12] of prepared excerpts (windowed in place)."""
        frames *= self.window
        spectrum = scipy.fft.rfft(frames, axis=1)
        pairs = spectrum[:, self.first_bin : self.first_bin + self.n_bins].view(np.float32)
        out: F32 = np.square(pairs) @ self.pair_filters
        out += np.float32(CHROMA_FLOOR)
        np.log10(out, out=out)
        return out

    def __call__(self, pcm: F32) -> F32:
        """[n, 13] per window of `pcm` ([samples] or [windows, samples], windows stacked) for
        n = frame_count(samples): log10 chroma energy, then the window's RMS level in dBFS."""
        windows = pcm.reshape(-1, pcm.shape[-1])
        n, _ = self.frames_of(windows.shape[1])
        frames = np.empty((len(windows) * n, self.excerpt_samples), np.float32)
        self.decimate(windows, frames)
        out = np.empty((len(frames), 13), np.float32)
        out[:, :12] = self.fold(frames)
        out[:, 12] = np.repeat(level_db(self.mean_square(windows)), n)
        return out


def level_db(mean_square: F32) -> F32:
    out: F32 = np.log10(mean_square + np.float32(LEVEL_FLOOR))
    out *= np.float32(10.0)
    return out
