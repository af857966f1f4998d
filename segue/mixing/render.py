"""The transition renderer: from two decoded excerpts to one beat-matched, limited mix.

Pipeline: plan (`planner`: key shift, tempo at the metrical level that fits the stretch
limit, overlap placement on both grids, time map) -> mix (`mixdown`: WSOLA stretch of the
incoming song, loudness match (BS.1770), bass swap (`bass_swap`) and filter sweep,
crossfade) -> master (`mastering`: loudness, true-peak limiter) -> quality report
(`quality_report`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from segue.v1 import mixer_pb2

from .excerpt import Excerpt
from .length_reason import LengthReason
from .mastering import master
from .mixdown import ENVELOPE_RATE_HZ, mix_transition
from .planner import plan_transition
from .quality_report import Heard, quality_report
from .style import Params, Style

FloatArray = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


@dataclass
class Rendered:
    """A rendered transition and everything the client and the plot are told about it."""

    audio: FloatArray  # [2, frames]
    rate_hz: int
    gain_outgoing: F64  # the mix mask, at ENVELOPE_RATE_HZ
    gain_incoming: F64
    overlap_start_s: float
    overlap_end_s: float
    beats_outgoing_s: F64  # A's grid in output time
    beats_incoming_s: F64  # B's grid in output time (as planned by the time map)
    beats_incoming_measured_s: F64  # where B's overlap beats really are in the output
    length_reason: LengthReason  # the report's length_reason, as data
    a_origin_s: float = 0.0  # A's time at the output's first sample
    b_start_s: float = 0.0  # B's time (after any key-shift resampling) where the overlap starts
    report: mixer_pb2.QualityReport = field(default_factory=mixer_pb2.QualityReport)
    # Low-band gains (without the loudness levels) at ENVELOPE_RATE_HZ; empty: no bass swap.
    bass_outgoing: F64 = field(default_factory=lambda: np.zeros(0))
    bass_incoming: F64 = field(default_factory=lambda: np.zeros(0))
    bass_swap_s: float = float("nan")  # the downbeat the bass changed hands on (output time)

    def envelope(self) -> mixer_pb2.MixEnvelope:
        return mixer_pb2.MixEnvelope(
            rate_hz=ENVELOPE_RATE_HZ,
            gain_outgoing=self.gain_outgoing.astype(np.float32).tolist(),
            gain_incoming=self.gain_incoming.astype(np.float32).tolist(),
            overlap_start_s=self.overlap_start_s,
            overlap_end_s=self.overlap_end_s,
        )


def render_transition(a: Excerpt, b: Excerpt, style: Style, params: Params) -> Rendered:
    """Renders A's last bars into B's first bars. Raises MixInputError on unusable inputs."""
    started = time.perf_counter()
    plan = plan_transition(a, b, style, params)
    mixed = mix_transition(plan, a, style, params)
    mastered = master(mixed.audio, params)
    out, rate, duration = mastered.audio, plan.rate_hz, plan.duration_s
    overlap = plan.overlap
    reason = plan.reason.with_bass_swap(mixed.bass_swap)
    heard = Heard(
        out, rate, overlap.start_s, overlap.end_s, mastered.peak_dbtp, mastered.loudness_lufs
    )
    report = quality_report(plan, reason, mixed.beat_alignment_error_ms, heard)
    report.render_speed_x_realtime = duration / max(time.perf_counter() - started, 1e-9)
    a_out = overlap.beats_a
    b_duration = plan.b_audio.shape[1] / rate
    beats_b_out = plan.time_map.to_output(overlap.beats_b[overlap.beats_b <= b_duration])
    return Rendered(
        audio=out,
        rate_hz=rate,
        gain_outgoing=mixed.gain_outgoing,
        gain_incoming=mixed.gain_incoming,
        overlap_start_s=overlap.start_s,
        overlap_end_s=overlap.end_s,
        beats_outgoing_s=a_out[(a_out >= 0) & (a_out <= duration)],
        beats_incoming_s=beats_b_out[(beats_b_out >= overlap.start_s) & (beats_b_out <= duration)],
        beats_incoming_measured_s=mixed.beats_incoming_measured_s,
        length_reason=reason,
        a_origin_s=overlap.a_origin_s,
        b_start_s=float(overlap.beats_b[overlap.ib_start]),
        report=report,
        bass_outgoing=mixed.bass_outgoing,
        bass_incoming=mixed.bass_incoming,
        bass_swap_s=mixed.bass_swap_s,
    )
