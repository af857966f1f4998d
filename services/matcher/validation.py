"""Checks on what clients send, raising InvalidArgumentError that names the field.

Every number in a request is checked to be finite and within a documented range (the limits
below, listed in matcher.proto), and every repeated field is counted before any of it is
read, so that no small request makes the matcher allocate memory or spend time out of
proportion to its size, and no value reaches the store that it cannot hold (NaN, infinity).
A positive physical quantity has a sane minimum, so denormals (5e-324 s) are refused too.
Everything an UpsertSong writes is checked here before anything is written.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from segue.song_ids import MAX_SONG_ID_CHARS, song_id_problem
from segue.structure.camelot import parse_camelot
from segue.v1 import common_pb2, matcher_pb2
from services.matcher.errors import InvalidArgumentError, shown
from services.matcher.schema import MAP_KEY, MAP_KEY_GRAMMAR
from services.matcher.store import VectorDims

FloatArray = npt.NDArray[np.float64]

MAX_SONG_ID_LENGTH = MAX_SONG_ID_CHARS  # segue/song_ids.py: one rule for every service
# Free text (metadata, metadata.extra values, filter values) and short names.
MAX_TEXT_LENGTH = 4096
MAX_NAME_LENGTH = 256  # model_name, model_version
MAX_LABEL_LENGTH = 64  # key name, camelot code, section letters
# metadata.extra: keys are what filters name as "extra.<name>", so they share its grammar.
MAX_EXTRA_ENTRIES = 64
# A song lasts 0.1 s to 24 h; every time in its analysis lies within it.
MIN_DURATION_S = 0.1
MAX_DURATION_S = 86_400.0
# Tempo: 0 means unknown, otherwise 1 to 1,000 BPM.
MIN_BPM = 1.0
MAX_BPM = 1_000.0
# Integrated loudness, LUFS (the embedder reports silence as -70).
MIN_LUFS = -200.0
MAX_LUFS = 20.0
# Vectors are normalised on write: their L2 norm must be 1e-6 to 1e6 (a smaller or larger one
# would underflow or overflow in float32 when normalised).
MIN_VECTOR_NORM = 1e-6
MAX_VECTOR_NORM = 1e6
# The song point keeps the analysis's beats, sections and cue points in its payload (about 11
# bytes a beat): these bound it well above any song (40,000 beats is over two hours at
# 300 BPM; cues are phrase-aligned, sections longer still) and far below a payload that would
# slow every read of the song. Each segment is a point of its own: 10,000 is 22 hours of 8 s
# segments.
MAX_SEGMENTS = 10_000
MAX_BEATS = 40_000
MAX_SECTIONS = 1_000
MAX_CUE_POINTS = 5_000
MAX_POSITION_IN_BAR = 64
MAX_PHRASE_BARS = 1_024
MAX_PITCH_CLASS = 11


def check_song_id(song_id: str, field: str = "song_id") -> None:
    """A song id as segue/song_ids.py defines it (1 to 256 printable characters)."""
    if not song_id:
        raise InvalidArgumentError(field, "is required")
    problem = song_id_problem(song_id, field)
    if problem is not None:
        raise InvalidArgumentError(field, problem.removeprefix(f"{field} "))


def check_text(value: str, field: str, limit: int = MAX_TEXT_LENGTH) -> None:
    if len(value) > limit:
        raise InvalidArgumentError(field, f"longer than {limit} characters")


def check_count(field: str, count: int, limit: int) -> None:
    """A repeated field's length, checked before any of it is read."""
    if count > limit:
        raise InvalidArgumentError(field, f"has {count} entries, at most {limit} are allowed")


def check_number(value: float, field: str, low: float, high: float) -> float:
    """A finite number within [low, high]."""
    if not (math.isfinite(value) and low <= value <= high):
        raise InvalidArgumentError(
            field, f"must be a number from {low:g} to {high:g}, got {value!r}"
        )
    return value


def check_optional_number(value: float, field: str, low: float, high: float) -> float:
    """0 (unknown) or a finite number within [low, high]."""
    if value == 0:
        return 0.0
    if not (math.isfinite(value) and low <= value <= high):
        raise InvalidArgumentError(
            field, f"must be 0 (unknown) or a number from {low:g} to {high:g}, got {value!r}"
        )
    return value


def check_camelot(code: str, field: str) -> str:
    """A Camelot code ("8B"), normalised."""
    check_text(code, field, MAX_LABEL_LENGTH)
    try:
        parse_camelot(code)
    except ValueError as e:
        raise InvalidArgumentError(field, str(e)) from None
    return code.strip().upper()


def check_vector(values: Sequence[float], dim: int, field: str) -> None:
    if len(values) != dim:
        raise InvalidArgumentError(field, f"has {len(values)} values, expected {dim}")
    array = np.asarray(values, dtype=np.float64)
    if not np.isfinite(array).all():
        raise InvalidArgumentError(field, "contains NaN or infinity")
    if not array.any():
        raise InvalidArgumentError(field, "is all zeros (no direction to compare)")
    norm = float(np.linalg.norm(array))
    if not MIN_VECTOR_NORM <= norm <= MAX_VECTOR_NORM:
        raise InvalidArgumentError(
            field, f"has L2 norm {norm:g}, it must be {MIN_VECTOR_NORM:g} to {MAX_VECTOR_NORM:g}"
        )


def check_values_within(
    values: Iterable[float], count: int, field: str, low: float, high: float
) -> None:
    """Each of `count` values finite and within [low, high]; the first bad one is named as
    `field` formatted with its index (e.g. "analysis.beats[{}].time_s")."""
    array = np.fromiter(values, dtype=np.float64, count=count)
    bad = np.flatnonzero(~((array >= low) & (array <= high)))  # NaN compares False: bad
    if bad.size:
        i = int(bad[0])
        raise InvalidArgumentError(
            field.format(i), f"must be a number from {low:g} to {high:g}, got {float(array[i])!r}"
        )


def check_enum(value: int, allowed: Iterable[int], field: str) -> None:
    if value not in set(allowed):
        raise InvalidArgumentError(field, f"unknown value {value}")


def check_metadata(metadata: matcher_pb2.SongMetadata, field: str = "metadata") -> None:
    """Text fields at most MAX_TEXT_LENGTH; extra keys in the filterable grammar."""
    for name in ("title", "artist", "album", "genre", "uri"):
        check_text(getattr(metadata, name), f"{field}.{name}")
    check_count(f"{field}.extra", len(metadata.extra), MAX_EXTRA_ENTRIES)
    for key, value in metadata.extra.items():
        if not MAP_KEY.fullmatch(key):
            raise InvalidArgumentError(
                f"{field}.extra", f"key {shown(key)} must be {MAP_KEY_GRAMMAR}"
            )
        check_text(value, f"{field}.extra[{key}]")


def check_analysis(analysis: common_pb2.SongAnalysis, dims: VectorDims) -> list[list[float]]:
    """A SongAnalysis is storable: ids, names, numbers in range, vector sizes and norms,
    ordered segments and every time within the song. Returns the segments' entry and exit
    vectors as lists (entry 0, exit 0, entry 1, ...), converted once here."""
    check_song_id(analysis.song_id, "analysis.song_id")
    check_text(analysis.model_name, "analysis.model_name", MAX_NAME_LENGTH)
    check_text(analysis.model_version, "analysis.model_version", MAX_NAME_LENGTH)
    duration = check_number(
        analysis.duration_s, "analysis.duration_s", MIN_DURATION_S, MAX_DURATION_S
    )
    check_number(analysis.loudness_lufs, "analysis.loudness_lufs", MIN_LUFS, MAX_LUFS)
    check_vector(analysis.feel, dims.feel, "analysis.feel")
    _check_segments(analysis.segments, duration, dims)
    rows = _check_transition_values(analysis)
    if analysis.HasField("tempo"):
        _check_tempo(analysis.tempo, "analysis.tempo")
    if analysis.HasField("key"):
        check_key(analysis.key, "analysis.key")
    _check_beats(analysis.beats, duration)
    _check_sections(analysis.sections, duration)
    _check_cue_points(analysis.cue_points, duration)
    return rows


def _check_segments(
    segments: Sequence[common_pb2.Segment], duration: float, dims: VectorDims
) -> None:
    if not segments:
        raise InvalidArgumentError("analysis.segments", "a song needs at least one segment")
    check_count("analysis.segments", len(segments), MAX_SEGMENTS)
    previous_start = -math.inf
    for position, segment in enumerate(segments):
        field = f"analysis.segments[{position}]"
        if segment.index != position:
            raise InvalidArgumentError(f"{field}.index", f"is {segment.index}, expected {position}")
        for name in ("start_s", "end_s"):
            check_number(getattr(segment, name), f"{field}.{name}", 0.0, duration)
        if not segment.start_s < segment.end_s:
            raise InvalidArgumentError(field, "needs start_s < end_s")
        if segment.start_s < previous_start:
            raise InvalidArgumentError(field, "segments must be in time order")
        previous_start = segment.start_s
        check_number(segment.energy, f"{field}.energy", 0.0, 1.0)
        check_text(segment.section_letter, f"{field}.section_letter", MAX_LABEL_LENGTH)
        for name, values in (("entry", segment.entry), ("exit", segment.exit)):
            if len(values) != dims.transition:
                raise InvalidArgumentError(
                    f"{field}.{name}", f"has {len(values)} values, expected {dims.transition}"
                )


def _check_tempo(tempo: common_pb2.Tempo, field: str) -> None:
    check_optional_number(tempo.bpm, f"{field}.bpm", MIN_BPM, MAX_BPM)
    check_number(tempo.stability, f"{field}.stability", 0.0, 1.0)
    check_number(tempo.confidence, f"{field}.confidence", 0.0, 1.0)


def check_key(key: common_pb2.Key, field: str) -> None:
    if key.tonic_pitch_class > MAX_PITCH_CLASS:
        raise InvalidArgumentError(f"{field}.tonic_pitch_class", f"must be 0 to {MAX_PITCH_CLASS}")
    check_enum(key.mode, common_pb2.Mode.values(), f"{field}.mode")
    if key.camelot:
        check_camelot(key.camelot, f"{field}.camelot")
    check_text(key.name, f"{field}.name", MAX_LABEL_LENGTH)
    check_number(key.confidence, f"{field}.confidence", 0.0, 1.0)


def _check_beats(beats: Sequence[common_pb2.Beat], duration: float) -> None:
    """Counted before anything is read, then checked in arrays (40,000 beats)."""
    check_count("analysis.beats", len(beats), MAX_BEATS)
    n = len(beats)
    check_values_within((b.time_s for b in beats), n, "analysis.beats[{}].time_s", 0.0, duration)
    check_values_within(
        (b.position_in_bar for b in beats), n, "analysis.beats[{}].position_in_bar", 0,
        MAX_POSITION_IN_BAR,
    )  # fmt: skip


def _check_sections(sections: Sequence[common_pb2.Section], duration: float) -> None:
    check_count("analysis.sections", len(sections), MAX_SECTIONS)
    functions = set(common_pb2.SectionFunction.values())
    for i, section in enumerate(sections):
        field = f"analysis.sections[{i}]"
        check_number(section.start_s, f"{field}.start_s", 0.0, duration)
        check_number(section.end_s, f"{field}.end_s", 0.0, duration)
        if not section.start_s < section.end_s:
            raise InvalidArgumentError(field, "needs start_s < end_s")
        check_text(section.letter, f"{field}.letter", MAX_LABEL_LENGTH)
        check_enum(section.function, functions, f"{field}.function")
        check_number(section.confidence, f"{field}.confidence", 0.0, 1.0)


def _check_cue_points(cues: Sequence[common_pb2.CuePoint], duration: float) -> None:
    check_count("analysis.cue_points", len(cues), MAX_CUE_POINTS)
    n = len(cues)
    field = "analysis.cue_points[{}]"
    check_values_within((c.time_s for c in cues), n, field + ".time_s", 0.0, duration)
    check_values_within((c.energy for c in cues), n, field + ".energy", 0.0, 1.0)
    check_values_within(
        (c.phrase_bars for c in cues), n, field + ".phrase_bars", 0, MAX_PHRASE_BARS
    )
    kinds = set(common_pb2.CueKind.values())
    for i, cue in enumerate(cues):
        check_enum(cue.kind, kinds, field.format(i) + ".kind")


def _check_transition_values(analysis: common_pb2.SongAnalysis) -> list[list[float]]:
    """Every entry/exit vector finite with a norm in range, checked in one array (a check per
    vector cost more than the write itself); the first bad one is named."""
    rows = np.array([v for s in analysis.segments for v in (s.entry, s.exit)], dtype=np.float64)
    finite = np.all(np.isfinite(rows), axis=1, keepdims=False).reshape(-1)
    with np.errstate(invalid="ignore", over="ignore"):
        norms = np.linalg.norm(np.where(np.isfinite(rows), rows, 0.0), axis=1).reshape(-1)
    in_range = (norms >= MIN_VECTOR_NORM) & (norms <= MAX_VECTOR_NORM)
    bad = np.flatnonzero(~(finite & in_range))
    if bad.size:
        row = int(bad[0])
        field = f"analysis.segments[{row // 2}].{('entry', 'exit')[row % 2]}"
        if not finite[row]:
            reason = "contains NaN or infinity"
        elif norms[row] == 0:
            reason = "is all zeros (no direction to compare)"
        else:
            reason = (
                f"has L2 norm {norms[row]:g}, it must be {MIN_VECTOR_NORM:g} to {MAX_VECTOR_NORM:g}"
            )
        raise InvalidArgumentError(field, reason)
    out: list[list[float]] = rows.tolist()
    return out
