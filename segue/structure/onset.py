"""Onset strength (spectral flux) from log-mel frames, and a cheap numpy log-mel for raw PCM."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt
import scipy.fft

F32 = npt.NDArray[np.float32]

# Own log-mel front end: 46 ms frames every 23 ms at 22050 Hz, like the model's frames.
FRAME_LENGTH_S = 1024 / 22050
HOP_S = 512 / 22050
N_MELS = 40
# Bands centred below this carry the kick and bass: their flux marks downbeats.
LOW_BAND_HZ = 200.0
DYNAMIC_RANGE = 1e-6


def hz_to_mel(hz: npt.ArrayLike) -> npt.NDArray[np.float64]:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: npt.ArrayLike) -> npt.NDArray[np.float64]:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filterbank(sample_rate_hz: int, n_fft: int, n_mels: int = N_MELS) -> F32:
    """Triangular HTK mel filters, shape [n_fft // 2 + 1, n_mels], 30 Hz to min(8 kHz, Nyquist)."""
    fmax = min(8000.0, sample_rate_hz / 2)
    edges = mel_to_hz(np.linspace(hz_to_mel(30.0), hz_to_mel(fmax), n_mels + 2))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate_hz)
    lower = (freqs[:, None] - edges[None, :-2]) / (edges[1:-1] - edges[:-2])[None, :]
    upper = (edges[None, 2:] - freqs[:, None]) / (edges[2:] - edges[1:-1])[None, :]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights /= np.maximum(weights.sum(axis=0, keepdims=True), 1e-12)
    out: F32 = weights.astype(np.float32)
    out.setflags(write=False)
    return out


def low_band_count(n_mels: int, fmax_hz: float = 8000.0) -> int:
    """How many of the lowest mel bands lie below LOW_BAND_HZ (at least one)."""
    edges = mel_to_hz(np.linspace(hz_to_mel(30.0), hz_to_mel(fmax_hz), n_mels + 2))
    return max(1, int(np.sum(edges[1:-1] < LOW_BAND_HZ)))


class LogMel:
    """Log-mel frames on a grid of `hop` samples from the song's first sample.

    Frames straddle pushes, so the samples that the next frame still needs are carried.
    """

    def __init__(self, sample_rate_hz: int) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.hop = max(1, round(HOP_S * sample_rate_hz))
        self.n_fft = 2 * self.hop
        self.window = np.hanning(self.n_fft + 1)[:-1].astype(np.float32)
        self.filters = mel_filterbank(sample_rate_hz, self.n_fft)

    def frames(self, tail: F32, pcm: F32, next_frame: int, consumed: int) -> tuple[F32, F32, int]:
        """Log-mel of every frame that the samples seen so far complete.

        `tail` holds the samples from `consumed - len(tail)` to `consumed`; frame k spans
        samples [k*hop - hop, k*hop + hop), the first one padded with zeros.
        Returns (frames [n, n_mels], new tail, new next_frame).
        """
        buf = np.concatenate([tail, pcm])
        buf_start = consumed - len(tail)
        end = consumed + len(pcm)
        # Frames whose last sample has arrived.
        last = (end - self.hop) // self.hop
        count = max(0, last - next_frame + 1)
        if count:
            starts = (np.arange(next_frame, next_frame + count) - 1) * self.hop - buf_start
            pad = max(0, -int(starts[0]))
            if pad:
                buf = np.concatenate([np.zeros(pad, np.float32), buf])
                starts = starts + pad
                buf_start -= pad
            idx = starts[:, None] + np.arange(self.n_fft)[None, :]
            spectrum = scipy.fft.rfft(buf[idx] * self.window, axis=1)
            power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
            energy = power @ self.filters
            # Bands more than 60 dB below the frame's loudest are leakage, not music: their
            # log would wobble with the phase of a steady tone and read as onsets.
            floor = np.maximum(energy.max(axis=1, keepdims=True) * DYNAMIC_RANGE, 1e-10)
            mel = np.log(np.maximum(energy, floor)).astype(np.float32)
        else:
            mel = np.zeros((0, self.filters.shape[1]), np.float32)
        next_frame += count
        keep_from = (next_frame - 1) * self.hop - buf_start
        new_tail = buf[max(0, keep_from) :].astype(np.float32)
        return mel, new_tail, next_frame


def spectral_flux(log_mel: F32, previous: F32 | None, n_low: int) -> tuple[F32, F32]:
    """Half-wave rectified log-mel difference, averaged over all bands and over the low bands.

    `previous` is the frame before `log_mel[0]`; without one the first flux is 0.
    """
    if len(log_mel) == 0:
        empty = np.zeros(0, np.float32)
        return empty, empty
    first = log_mel[:1] if previous is None else previous[None, :]
    rise = np.maximum(np.diff(log_mel, axis=0, prepend=first), 0.0)
    return rise.mean(axis=1).astype(np.float32), rise[:, :n_low].mean(axis=1).astype(np.float32)
