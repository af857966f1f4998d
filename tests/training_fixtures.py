"""Tiny generated songs and a tiny training configuration for the training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.train import Config

SR = 22050


def song(seed: int, seconds: float) -> np.ndarray:
    """A little procedural song: a chord progression over a pulse, with some noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    root = rng.uniform(110, 330)
    bpm = rng.uniform(80, 160)
    beat = np.exp(-12 * ((t * bpm / 60) % 1.0))
    chord = sum(np.sin(2 * np.pi * root * r * t) for r in (1.0, 1.25, 1.5))
    audio = 0.2 * chord * (
        0.5 + 0.5 * np.sin(2 * np.pi * t / 4)
    ) + 0.3 * beat * rng.standard_normal(len(t))
    out: np.ndarray = (0.5 * audio / np.abs(audio).max()).astype(np.float16)
    return out


def tiny_config(data: Path, out: Path) -> Config:
    return Config(
        data=data,
        out=out,
        checkpoint=out / "c.pt",
        steps=3,
        batch_tracks=4,
        labelled_per_batch=2,
        crop_windows=4,
        feel_windows=2,
        log_every=1000,
        threads=1,
        teacher="",
    )
