"""The fixed spectral front end that lives inside the ONNX graphs.

Raw mono PCM at 22050 Hz is cut into non-overlapping 490-sample frames (45 per 1 s window, so
every frame lies inside exactly one window), each frame is multiplied by a fixed Hann-windowed
cos/sin basis (a real DFT as one MatMul, only the bins that the mel bank uses), squared, summed
over a fixed mel matrix and logged. No learned weights: any ONNX consumer gets the same numbers.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numpy.typing import NDArray

SAMPLE_RATE_HZ = 22050
WINDOW_SAMPLES = 22050
FRAME_SAMPLES = 490
FRAMES_PER_WINDOW = WINDOW_SAMPLES // FRAME_SAMPLES
N_MELS = 40
F_MIN_HZ = 30.0
F_MAX_HZ = 8000.0
# Floor of the mel power: about -80 dB below a full-scale sine.
LOG_FLOOR = 1e-8

assert FRAMES_PER_WINDOW * FRAME_SAMPLES == WINDOW_SAMPLES


def _hz_to_mel(f: NDArray[np.float64]) -> NDArray[np.float64]:
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _mel_to_hz(m: NDArray[np.float64]) -> NDArray[np.float64]:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_matrix() -> NDArray[np.float64]:
    """Triangular HTK-mel filters [n_fft_bins, N_MELS], area-normalised (Slaney style)."""
    n_bins = FRAME_SAMPLES // 2 + 1
    freqs = np.arange(n_bins) * SAMPLE_RATE_HZ / FRAME_SAMPLES
    edges = _mel_to_hz(
        np.linspace(_hz_to_mel(np.array(F_MIN_HZ)), _hz_to_mel(np.array(F_MAX_HZ)), N_MELS + 2)
    )
    weights = np.zeros((n_bins, N_MELS))
    for m in range(N_MELS):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        rising = (freqs - lo) / (mid - lo)
        falling = (hi - freqs) / (hi - mid)
        weights[:, m] = np.maximum(0.0, np.minimum(rising, falling)) * 2.0 / (hi - lo)
    assert (weights.sum(axis=0) > 0).all(), "a mel band covers no DFT bin"
    return weights


def used_bins() -> NDArray[np.int64]:
    """DFT bins with a nonzero weight in some mel band (the rest are never computed)."""
    nz = np.nonzero(mel_matrix().sum(axis=1) > 0)[0]
    return np.arange(int(nz.min()), int(nz.max()) + 1)


def dft_basis() -> NDArray[np.float64]:
    """[FRAME_SAMPLES, 2 * n_used_bins]: Hann window times cos | sin, scaled by 1/sum(window)."""
    n = np.arange(FRAME_SAMPLES)
    window = 0.5 - 0.5 * np.cos(2.0 * math.pi * n / FRAME_SAMPLES)
    bins = used_bins()
    phase = 2.0 * math.pi * np.outer(n, bins) / FRAME_SAMPLES
    scale = window[:, None] / window.sum()
    return np.concatenate([np.cos(phase) * scale, -np.sin(phase) * scale], axis=1)


class LogMelFrontEnd(torch.nn.Module):
    """pcm [B, S] (S a multiple of FRAME_SAMPLES) -> log-mel frames [B, S/FRAME_SAMPLES, N_MELS]."""

    basis: torch.Tensor
    mel: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.n_bins = len(used_bins())
        self.register_buffer("basis", torch.tensor(dft_basis(), dtype=torch.float32))
        self.register_buffer("mel", torch.tensor(mel_matrix()[used_bins()], dtype=torch.float32))

    def forward(self, pcm: torch.Tensor) -> torch.Tensor:
        frames = pcm.reshape(pcm.shape[0], -1, FRAME_SAMPLES)
        spec = frames @ self.basis
        re, im = spec[..., : self.n_bins], spec[..., self.n_bins :]
        power = re * re + im * im
        return torch.log(power @ self.mel + LOG_FLOOR)
