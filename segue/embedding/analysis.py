"""Final SongAnalysis assembly from a finished SongStream."""

from __future__ import annotations

import numpy as np

from segue.embedding.stream_state import SongStream
from segue.log import get_logger
from segue.structure.result import fill_analysis
from segue.v1 import common_pb2

log = get_logger("segue.embedder.analysis")


def _section_letter(sections: list[common_pb2.Section], time_s: float) -> str:
    letter = ""
    for section in sections:
        if section.start_s <= time_s + 1e-9:
            letter = section.letter
    return letter


def build_analysis(stream: SongStream, *, with_structure: bool = True) -> common_pb2.SongAnalysis:
    """The analysis of everything the stream has seen (call after its final commit)."""
    spec = stream.spec
    duration = stream.position_s
    analysis = common_pb2.SongAnalysis(
        song_id=stream.song_id,
        model_name=spec.name,
        model_version=spec.version,
        duration_s=duration,
        feel=stream.feel.tolist(),
        loudness_lufs=stream.loudness.integrated_lufs(),
    )
    if with_structure and stream.structure.windows_pushed:
        try:
            result = stream.structure.analyze()
        except Exception:
            # The vectors stay valid without structure: send them, leave the fields empty.
            log.exception("structure analysis failed", song_id=stream.song_id)
        else:
            fill_analysis(result, analysis)
    sections = list(analysis.sections)
    segment_s = stream.windows_per_segment * spec.window_s
    means = [s.energy_sum / s.windows for s in stream.segments if s.windows]
    loudest = max(means, default=0.0)
    for i, seg in enumerate(stream.segments):
        start = i * segment_s
        mean = seg.energy_sum / seg.windows if seg.windows else 0.0
        analysis.segments.append(
            common_pb2.Segment(
                index=i,
                start_s=start,
                end_s=min(start + segment_s, duration),
                entry=seg.entry.tolist(),
                exit=seg.exit.tolist(),
                energy=float(np.float32(mean / loudest)) if loudest > 0 else 0.0,
                section_letter=_section_letter(sections, start),
            )
        )
    return analysis


__all__ = ["build_analysis"]
