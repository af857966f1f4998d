"""Mastering a mixed transition: whole-mix loudness to the target, then the true-peak limiter."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from segue.loudness import gain_to_target, integrated_lufs

from .limiter import Limited, limit
from .style import Params

FloatArray = npt.NDArray[np.float32]

# Largest correction of the mix's loudness after crossfading (dB).
_MAX_CORRECTION_DB = 6.0


@dataclass(frozen=True)
class Mastered:
    audio: FloatArray  # [2, frames], at the target loudness, limited
    loudness_lufs: float
    peak_dbtp: float  # highest true peak


def master(mix: FloatArray, params: Params) -> Mastered:
    """Whole-mix loudness to the target, then the true-peak limiter.

    A second, small correction follows when limiting cost level.
    """
    rate = params.rate_hz
    bound = 10 ** (_MAX_CORRECTION_DB / 20)
    output_lufs = integrated_lufs(mix, rate)
    limited = Limited(mix, float("-inf"))
    for _ in range(2):
        correction = gain_to_target(output_lufs, params.target_lufs)
        limited = limit(
            limited.audio * np.float32(np.clip(correction, 1 / bound, bound)),
            rate,
            params.ceiling_dbtp,
        )
        output_lufs = integrated_lufs(limited.audio, rate)
        if abs(output_lufs - params.target_lufs) <= 0.3:
            break
    return Mastered(limited.audio, output_lufs, limited.peak_dbtp)
