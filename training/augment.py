"""Cheap augmentations for training crops.

Speed (pitch and tempo together) is applied to the waveform by linear resampling. EQ, noise and
gain are applied to the log-mel frames, where they are exact or close and nearly free: a gain
or a smooth EQ multiplies the power in each mel band (an addition in the log domain), and
stationary noise adds its expected power per band. Full-length FFTs per crop were the
bottleneck of a training step on a busy 2-core machine.

All randomness comes from the caller's numpy Generator, so a seeded run is reproducible.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from training.frontend import N_MELS

MAX_SPEED_CHANGE = 0.06
_DB_TO_LN_POWER = math.log(10.0) / 10.0


def read_crop(audio: np.ndarray, start: int, length: int, speed: float) -> torch.Tensor:
    """`length` samples of audio from `start`, played `speed` times faster (linear resampling,
    which shifts pitch and tempo together like a turntable)."""
    src_len = int(np.ceil(length * speed)) + 1
    src = torch.from_numpy(np.asarray(audio[start : start + src_len], dtype=np.float32))
    if speed == 1.0:
        return src[:length].clone()
    pos = torch.arange(length, dtype=torch.float64) * speed
    i0 = pos.floor().long().clamp(max=src.shape[0] - 2)
    frac = (pos - i0.double()).float()
    out: torch.Tensor = src[i0] * (1.0 - frac) + src[i0 + 1] * frac
    return out


def _eq_db(rng: np.random.Generator) -> np.ndarray:
    """A smooth random EQ curve over the mel bands: a tilt plus one bell, within about +-6 dB."""
    m = np.linspace(0.0, 1.0, N_MELS)
    tilt = rng.uniform(-6.0, 6.0) * (m - 0.5)
    centre, width, gain = rng.uniform(0.0, 1.0), rng.uniform(0.05, 0.3), rng.uniform(-6.0, 6.0)
    out: np.ndarray = tilt + gain * np.exp(-0.5 * ((m - centre) / width) ** 2)
    return out


def augment_frames(frames: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """frames [B, T, N_MELS] natural-log mel power -> augmented copy (EQ, noise, gain)."""
    batch = frames.shape[0]
    offset_db = np.zeros((batch, N_MELS))
    noise_db = np.full((batch, N_MELS), -np.inf)
    for b in range(batch):
        if rng.random() < 0.7:
            offset_db[b] += _eq_db(rng)
        offset_db[b] += rng.uniform(-12.0, 6.0)  # gain
        if rng.random() < 0.5:
            # Noise 15-40 dB below the crop's mean band power; white or tilted towards pink.
            slope = 0.0 if rng.random() < 0.5 else -10.0
            noise_db[b] = rng.uniform(-40.0, -15.0) + slope * np.linspace(0.0, 1.0, N_MELS)
    offset = torch.tensor(offset_db * _DB_TO_LN_POWER, dtype=frames.dtype)[:, None, :]
    out = frames + offset
    level = out.mean(dim=(1, 2), keepdim=True)
    noise = torch.tensor(noise_db * _DB_TO_LN_POWER, dtype=frames.dtype)[:, None, :] + level
    result: torch.Tensor = torch.logaddexp(out, noise)
    return result
