"""The QualityReport of a transition, from its plan and the audio it is heard in.

One builder for a single render (the whole mastered output) and for each transition of a
continuous mix (measured where it lies in the final, limited mix).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from segue.v1 import mixer_pb2

from .length_reason import LengthReason
from .plan import Plan
from .quality import loudness_step_lu, spectral_continuity

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Heard:
    """The transition's audio as it is heard, and where its overlap lies in it."""

    audio: FloatArray  # [2, frames]
    rate_hz: int
    overlap_start_s: float  # in the audio's time
    overlap_end_s: float
    true_peak_dbtp: float  # of the audio
    loudness_lufs: float  # integrated, of the audio


def quality_report(
    plan: Plan, reason: LengthReason, beat_alignment_error_ms: float, heard: Heard
) -> mixer_pb2.QualityReport:
    """The report's plan facts, the length reason and the metrics measured on `heard`.

    The render speed is the caller's to set: only it knows what it timed.
    """
    start, end = heard.overlap_start_s, heard.overlap_end_s
    sc, mel = spectral_continuity(heard.audio, heard.rate_hz, start, end)
    overlap, playback = plan.overlap, plan.playback
    return mixer_pb2.QualityReport(
        duration_s=plan.duration_s,
        overlap_s=overlap.end_s - overlap.start_s,
        overlap_bars=overlap.bars,
        length_reason=reason.text(),
        tempo_ratio=playback.tempo_ratio,
        key_shift_semitones=playback.key_shift,
        beat_alignment_error_ms=beat_alignment_error_ms,
        loudness_step_lu=loudness_step_lu(heard.audio, heard.rate_hz, start, end),
        spectral_convergence=sc,
        mel_mse=mel,
        true_peak_dbtp=heard.true_peak_dbtp,
        output_loudness_lufs=heard.loudness_lufs,
        tempo_a_bpm=playback.grid_a.bpm,
        tempo_b_bpm=playback.grid_b_own.bpm,
    )
