"""Checks on what clients send, raising InvalidArgumentError that names the field."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from segue.structure.camelot import parse_camelot
from segue.v1 import common_pb2
from services.matcher.errors import InvalidArgumentError
from services.matcher.store import VectorDims

MAX_SONG_ID_LENGTH = 512
# The song point keeps the analysis's beats, sections and cue points in its payload (about 11
# bytes a beat): these bound it well above any song (40,000 beats is over two hours at
# 300 BPM; cues are phrase-aligned, sections longer still) and far below a payload that would
# slow every read of the song.
MAX_BEATS = 40_000
MAX_SECTIONS = 1_000
MAX_CUE_POINTS = 5_000


def check_song_id(song_id: str, field: str = "song_id") -> None:
    if not song_id:
        raise InvalidArgumentError(field, "is required")
    if len(song_id) > MAX_SONG_ID_LENGTH:
        raise InvalidArgumentError(field, f"longer than {MAX_SONG_ID_LENGTH} characters")


def check_vector(values: Sequence[float], dim: int, field: str) -> None:
    if len(values) != dim:
        raise InvalidArgumentError(field, f"has {len(values)} values, expected {dim}")
    array = np.asarray(values, dtype=np.float64)
    if not np.isfinite(array).all():
        raise InvalidArgumentError(field, "contains NaN or infinity")
    if not array.any():
        raise InvalidArgumentError(field, "is all zeros (no direction to compare)")


def check_analysis(analysis: common_pb2.SongAnalysis, dims: VectorDims) -> list[list[float]]:
    """A SongAnalysis is storable: ids, vector sizes, ordered segments. Returns the segments'
    entry and exit vectors as lists (entry 0, exit 0, entry 1, ...), converted once here."""
    check_song_id(analysis.song_id, "analysis.song_id")
    check_vector(analysis.feel, dims.feel, "analysis.feel")
    if not analysis.segments:
        raise InvalidArgumentError("analysis.segments", "a song needs at least one segment")
    previous_start = -math.inf
    for position, segment in enumerate(analysis.segments):
        field = f"analysis.segments[{position}]"
        if segment.index != position:
            raise InvalidArgumentError(f"{field}.index", f"is {segment.index}, expected {position}")
        if not (math.isfinite(segment.start_s) and math.isfinite(segment.end_s)):
            raise InvalidArgumentError(field, "times must be finite")
        if not 0 <= segment.start_s < segment.end_s:
            raise InvalidArgumentError(field, "needs 0 <= start_s < end_s")
        if segment.start_s < previous_start:
            raise InvalidArgumentError(field, "segments must be in time order")
        previous_start = segment.start_s
        for name, values in (("entry", segment.entry), ("exit", segment.exit)):
            if len(values) != dims.transition:
                raise InvalidArgumentError(
                    f"{field}.{name}", f"has {len(values)} values, expected {dims.transition}"
                )
    rows = _check_transition_values(analysis)
    _check_structure(analysis)
    if analysis.HasField("key") and analysis.key.camelot:
        try:
            parse_camelot(analysis.key.camelot)
        except ValueError as e:
            raise InvalidArgumentError("analysis.key.camelot", str(e)) from e
    if analysis.HasField("tempo") and not (
        math.isfinite(analysis.tempo.bpm) and analysis.tempo.bpm >= 0
    ):
        raise InvalidArgumentError("analysis.tempo.bpm", "must be a non-negative number")
    return rows


def _check_structure(analysis: common_pb2.SongAnalysis) -> None:
    """Beats, sections and cue points within their limits (counted before anything is read),
    at finite times."""
    _check_count("analysis.beats", len(analysis.beats), MAX_BEATS)
    _check_count("analysis.sections", len(analysis.sections), MAX_SECTIONS)
    _check_count("analysis.cue_points", len(analysis.cue_points), MAX_CUE_POINTS)
    _check_finite("analysis.beats", [b.time_s for b in analysis.beats])
    _check_finite("analysis.sections", [t for s in analysis.sections for t in (s.start_s, s.end_s)])
    _check_finite("analysis.cue_points", [c.time_s for c in analysis.cue_points])


def _check_count(field: str, count: int, limit: int) -> None:
    if count > limit:
        raise InvalidArgumentError(field, f"has {count} entries, at most {limit} are allowed")


def _check_finite(field: str, times_s: list[float]) -> None:
    if not np.isfinite(np.asarray(times_s, dtype=np.float64)).all():
        raise InvalidArgumentError(field, "times must be finite")


def _check_transition_values(analysis: common_pb2.SongAnalysis) -> list[list[float]]:
    """Every entry/exit vector finite and not all zeros, checked in one array (a check per
    vector cost more than the write itself); the first bad one is named."""
    rows = np.array([v for s in analysis.segments for v in (s.entry, s.exit)], dtype=np.float64)
    finite = np.all(np.isfinite(rows), axis=1, keepdims=False).reshape(-1)
    nonzero = np.any(rows, axis=1).reshape(-1)
    bad = np.flatnonzero(~(finite & nonzero))
    if bad.size:
        row = int(bad[0])
        field = f"analysis.segments[{row // 2}].{('entry', 'exit')[row % 2]}"
        reason = (
            "contains NaN or infinity"
            if not finite[row]
            else "is all zeros (no direction to compare)"
        )
        raise InvalidArgumentError(field, reason)
    out: list[list[float]] = rows.tolist()
    return out
