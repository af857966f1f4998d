"""What the structure analysis finds in a song, as plain data, and its protobuf mapping."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from segue.structure.camelot import KeyMode, camelot, key_name
from segue.v1 import common_pb2

SectionFunction = Literal[
    "intro", "verse", "chorus", "bridge", "outro", "instrumental", "unknown"
]  # fmt: skip
CueKind = Literal["entry", "exit"]


@dataclass(frozen=True)
class KeyEstimate:
    tonic_pitch_class: int
    mode: KeyMode
    # 0 for a guess (silence, noise, a single tone) to 1 for certain.
    confidence: float

    @property
    def camelot(self) -> str:
        return camelot(self.tonic_pitch_class, self.mode)

    @property
    def name(self) -> str:
        return key_name(self.tonic_pitch_class, self.mode)


@dataclass(frozen=True)
class Section:
    start_s: float
    end_s: float
    # SALAMI-style: equal letters repeat, a prime marks a variation ("A'").
    letter: str
    function: SectionFunction
    # How clearly the boundary at start_s stands out, 0 to 1.
    confidence: float


@dataclass(frozen=True)
class CuePoint:
    time_s: float
    kind: CueKind
    # Length of the phrase the point opens (entry) or closes (exit): 8, 16, 32; 0 unknown.
    phrase_bars: int
    # Short-term energy around the point relative to the song's loudest part, 0 to 1.
    energy: float


@dataclass(frozen=True)
class StructureResult:
    duration_s: float
    # 0 when no beat was found (silence, a held tone); then beat_times_s is empty.
    tempo_bpm: float
    tempo_stability: float
    tempo_confidence: float
    beat_times_s: tuple[float, ...]
    # 1-based position of each beat in its bar (1 = downbeat); 0 when the meter is unknown.
    beat_positions: tuple[int, ...]
    beats_per_bar: int
    key: KeyEstimate
    sections: tuple[Section, ...]
    cue_points: tuple[CuePoint, ...]

    @property
    def downbeat_times_s(self) -> tuple[float, ...]:
        return tuple(
            t for t, p in zip(self.beat_times_s, self.beat_positions, strict=True) if p == 1
        )


_MODES = {"major": common_pb2.MODE_MAJOR, "minor": common_pb2.MODE_MINOR}
_FUNCTIONS = {
    "intro": common_pb2.SECTION_FUNCTION_INTRO,
    "verse": common_pb2.SECTION_FUNCTION_VERSE,
    "chorus": common_pb2.SECTION_FUNCTION_CHORUS,
    "bridge": common_pb2.SECTION_FUNCTION_BRIDGE,
    "outro": common_pb2.SECTION_FUNCTION_OUTRO,
    "instrumental": common_pb2.SECTION_FUNCTION_INSTRUMENTAL,
    "unknown": common_pb2.SECTION_FUNCTION_UNSPECIFIED,
}
_FUNCTION_NAMES: dict[int, str] = {int(value): name for name, value in _FUNCTIONS.items()}


def section_function_name(function: int) -> str:
    """The name of a `SectionFunction` value ("chorus", ...); "unknown" when unspecified."""
    return _FUNCTION_NAMES.get(int(function), "unknown")


_CUE_KINDS = {"entry": common_pb2.CUE_KIND_ENTRY, "exit": common_pb2.CUE_KIND_EXIT}


def fill_analysis(result: StructureResult, analysis: common_pb2.SongAnalysis) -> None:
    """Writes tempo, beats, key, sections and cue points of `result` into `analysis`.

    Earlier values of those fields are replaced; other fields are left alone. Where
    `analysis.duration_s` is set, nothing lands past it: the structure's frames may reach a
    little beyond the last sample, and times are rounded, so later beats are dropped and
    section ends and cue points are held at the song's end.
    """
    end = analysis.duration_s if analysis.duration_s > 0 else math.inf
    analysis.tempo.bpm = result.tempo_bpm
    analysis.tempo.stability = result.tempo_stability
    analysis.tempo.confidence = result.tempo_confidence
    del analysis.beats[:]
    analysis.beats.extend(
        common_pb2.Beat(time_s=t, position_in_bar=p)
        for t, p in zip(result.beat_times_s, result.beat_positions, strict=True)
        if t <= end
    )
    key = result.key
    analysis.key.tonic_pitch_class = key.tonic_pitch_class
    analysis.key.mode = _MODES[key.mode]
    analysis.key.camelot = key.camelot
    analysis.key.name = key.name
    analysis.key.confidence = key.confidence
    del analysis.sections[:]
    analysis.sections.extend(
        common_pb2.Section(
            start_s=s.start_s,
            end_s=min(s.end_s, end),
            letter=s.letter,
            function=_FUNCTIONS[s.function],
            confidence=s.confidence,
        )
        for s in result.sections
        if s.start_s < end
    )
    del analysis.cue_points[:]
    analysis.cue_points.extend(
        common_pb2.CuePoint(
            time_s=min(c.time_s, end),
            kind=_CUE_KINDS[c.kind],
            phrase_bars=c.phrase_bars,
            energy=c.energy,
        )
        for c in result.cue_points
    )
