"""Crossfade gain curves: how much of each song is heard across the overlap."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import numpy.typing as npt

from segue.v1 import mixer_pb2

F64 = npt.NDArray[np.float64]
# Curves keep their input's precision: float32 per sample, float64 for envelopes.
Float = TypeVar("Float", np.float32, np.float64)


def fade_gains(x: npt.NDArray[Float], curve: int) -> tuple[npt.NDArray[Float], npt.NDArray[Float]]:
    """Gains (outgoing, incoming) at overlap positions x in [0, 1].

    Equal power keeps the summed power of two uncorrelated songs constant; linear keeps the
    summed amplitude constant (a dip of 3 dB mid-way on uncorrelated music); the S-curve
    holds each song near full level longer and swaps them quickly in the middle.
    """
    x = np.clip(x, 0.0, 1.0)
    if curve in (mixer_pb2.FADE_CURVE_EQUAL_POWER, mixer_pb2.FADE_CURVE_UNSPECIFIED):
        return np.cos(0.5 * np.pi * x), np.sin(0.5 * np.pi * x)
    if curve == mixer_pb2.FADE_CURVE_LINEAR:
        return 1.0 - x, x.copy()
    if curve == mixer_pb2.FADE_CURVE_S_CURVE:
        s = x * x * (3.0 - 2.0 * x)
        s = s * s * (3.0 - 2.0 * s)  # smoothstep twice: flatter ends, steeper middle
        return np.cos(0.5 * np.pi * s), np.sin(0.5 * np.pi * s)
    raise ValueError(f"unknown fade curve {curve}")


def mashup_gains(x: npt.NDArray[Float]) -> tuple[npt.NDArray[Float], npt.NDArray[Float]]:
    """The mashup mask: B rises over the first quarter, both play, A leaves in the last."""
    x = np.clip(x, 0.0, 1.0)
    rise = np.sin(0.5 * np.pi * np.clip(x / 0.25, 0.0, 1.0))
    fall = np.cos(0.5 * np.pi * np.clip((x - 0.75) / 0.25, 0.0, 1.0))
    return fall, rise


def swap_gains(
    x: npt.NDArray[Float], at: float, width: float
) -> tuple[npt.NDArray[Float], npt.NDArray[Float]]:
    """Gains (outgoing, incoming) of the low band: a smooth equal-power swap centred on `at`.

    `at` and `width` are fractions of the overlap. The swap's progress is a smoothstep, so
    the gains leave 1 and 0 with zero slope (no kink at either end of the ramp) and cross at
    `at`; the summed power of two uncorrelated bass lines stays constant throughout.
    """
    lo = at - 0.5 * width
    t = np.clip((x - lo) / max(width, 1e-9), 0.0, 1.0)
    s = t * t * (3.0 - 2.0 * t)
    return np.cos(0.5 * np.pi * s), np.sin(0.5 * np.pi * s)
