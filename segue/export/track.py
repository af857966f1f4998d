"""The facts an export writes for one song, taken from its analysis and metadata once.

Every format writes the same facts, so that a song looks the same in Rekordbox, Traktor and
Mixxx:

- the file's path (see segue.export.paths), title, artist, album, genre and duration;
- the tempo: the grid's when there is one (a line through the beats is finer than the
  analysis's median beat period, which counts whole onset frames), else the analysis's;
- the beat grid of segue.export.grid, or none and the reason;
- the key, when the analysis gives one with confidence of at least MIN_KEY_CONFIDENCE;
- memory cues at section starts, named by section label ("B chorus");
- hot cues at the best entry (pad 0) and the best exit (pad 1), named by the section they
  fall in ("in: A intro", "out: C outro"). The best entry is the entry cue that opens the
  longest phrase, the earliest of equals (a DJ mixes in at the intro); the best exit closes
  the longest phrase, the latest of equals. A planned playlist passes its own entry and exit
  times, which take their place unless they are the song's very start or end (a set that
  plays a song whole).

What an export leaves out is said in `notes`, for the person exporting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from segue.export.grid import Grid, fit_grid
from segue.export.paths import local_path
from segue.structure.camelot import PITCH_CLASS_NAMES, KeyMode, camelot, parse_camelot
from segue.structure.result import section_function_name
from segue.v1 import common_pb2, matcher_pb2

KeyNotation = Literal["musical", "camelot"]
MarkerKind = Literal["section", "entry", "exit"]
NoteTopic = Literal["grid", "key", "cues"]

# Below this key confidence the key is a guess (noise, one held note) and is not written.
MIN_KEY_CONFIDENCE = 0.1
# Hot cue pads of the best entry and exit (Rekordbox A and B, Traktor and Mixxx 1 and 2).
ENTRY_HOT_CUE = 0
EXIT_HOT_CUE = 1
# A planned cue this close to the song's end is "play to the end", not a cue.
_END_MARGIN_S = 0.5
# Times this close are one instant (cue points are rounded to 0.1 ms, sections are not).
_SAME_TIME_S = 0.001



@dataclass(frozen=True)
class KeyFacts:
    tonic_pitch_class: int  # 0 = C ... 11 = B
    mode: KeyMode
    confidence: float  # 0 to 1

    @property
    def camelot(self) -> str:
        """Camelot code, "8A" for A minor."""
        return camelot(self.tonic_pitch_class, self.mode)

    @property
    def musical(self) -> str:
        """Short musical name as DJ programs show it: "Am", "F#m", "Eb"."""
        suffix = "m" if self.mode == "minor" else ""
        return PITCH_CLASS_NAMES[self.tonic_pitch_class] + suffix

    def text(self, notation: KeyNotation) -> str:
        return self.camelot if notation == "camelot" else self.musical


@dataclass(frozen=True)
class Marker:
    """A cue point: a memory cue (hot_cue None) or a hot cue on pad `hot_cue` (0-based)."""

    time_s: float  # seconds from the start of the song
    name: str
    kind: MarkerKind
    hot_cue: int | None = None


@dataclass(frozen=True)
class Note:
    """Something an export leaves out or assumes, and why."""

    topic: NoteTopic
    text: str


@dataclass(frozen=True)
class TrackFacts:
    song_id: str
    path: str  # absolute, forward slashes
    title: str
    artist: str
    album: str
    genre: str
    duration_s: float
    bpm: float  # 0 when unknown
    grid: Grid | None
    key: KeyFacts | None
    markers: tuple[Marker, ...]
    notes: tuple[Note, ...]  # what was left out or assumed, and why

    @property
    def memory_cues(self) -> tuple[Marker, ...]:
        return tuple(m for m in self.markers if m.hot_cue is None)

    @property
    def hot_cues(self) -> tuple[Marker, ...]:
        return tuple(m for m in self.markers if m.hot_cue is not None)

    @property
    def display_name(self) -> str:
        """Artist and title as "Artist - Title", or the title alone without an artist."""
        return f"{self.artist} - {self.title}" if self.artist else self.title


def track_facts(
    analysis: common_pb2.SongAnalysis,
    metadata: matcher_pb2.SongMetadata,
    *,
    entry_s: float | None = None,
    exit_s: float | None = None,
) -> TrackFacts:
    """The export facts of one song (module docstring). `entry_s` and `exit_s` are a
    planned playlist's cue times, in song seconds, when the song is exported as part of one.

    ExportError when `metadata.uri` names no local file.
    """
    path = local_path(metadata.uri)
    fitted = fit_grid(analysis)
    key, key_note = _key(analysis.key)
    hot, cue_note = _hot_cues(analysis, entry_s, exit_s)
    markers = sorted([*_section_cues(analysis), *hot], key=lambda m: (m.time_s, m.kind))
    notes = [Note("grid", n) for n in (fitted.reason, *fitted.notes) if n]
    notes += [Note("key", key_note)] if key_note else []
    notes += [Note("cues", cue_note)] if cue_note else []
    bpm = fitted.grid.mean_bpm if fitted.grid is not None else float(analysis.tempo.bpm)
    stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return TrackFacts(
        song_id=analysis.song_id,
        path=path,
        title=metadata.title or stem or analysis.song_id,
        artist=metadata.artist,
        album=metadata.album,
        genre=metadata.genre,
        duration_s=float(analysis.duration_s),
        bpm=bpm,
        grid=fitted.grid,
        key=key,
        markers=tuple(markers),
        notes=tuple(notes),
    )


def _key(key: common_pb2.Key) -> tuple[KeyFacts | None, str]:
    if not key.camelot:
        return None, "no key: the analysis has none"
    if key.confidence < MIN_KEY_CONFIDENCE:
        return None, f"no key: confidence {key.confidence:.2f} is below {MIN_KEY_CONFIDENCE}"
    tonic, mode = parse_camelot(key.camelot)
    return KeyFacts(tonic, mode, float(key.confidence)), ""


def section_label(section: common_pb2.Section) -> str:
    """The section's letter and function where known: "B chorus", "A'" or "intro"."""
    function = section_function_name(section.function)
    parts = [section.letter, "" if function == "unknown" else function]
    return " ".join(p for p in parts if p) or "section"


def _section_at(analysis: common_pb2.SongAnalysis, time_s: float) -> str:
    """Label of the section playing at `time_s` (the one starting there, at a boundary)."""
    current = ""
    for section in analysis.sections:
        if section.start_s <= time_s + _SAME_TIME_S:
            current = section_label(section)
    return current


def _section_cues(analysis: common_pb2.SongAnalysis) -> list[Marker]:
    return [Marker(s.start_s, section_label(s), "section") for s in analysis.sections]


def _best(analysis: common_pb2.SongAnalysis, kind: int) -> float | None:
    """Time of the best cue of `kind` (module docstring), None when there is none."""
    cues = [c for c in analysis.cue_points if c.kind == kind]
    if not cues:
        return None
    if kind == common_pb2.CUE_KIND_ENTRY:
        return min(cues, key=lambda c: (-c.phrase_bars, c.time_s)).time_s
    return max(cues, key=lambda c: (c.phrase_bars, c.time_s)).time_s


def _hot_cues(
    analysis: common_pb2.SongAnalysis, entry_s: float | None, exit_s: float | None
) -> tuple[list[Marker], str]:
    end = analysis.duration_s - _END_MARGIN_S
    planned_in = entry_s if entry_s is not None and 0.0 < entry_s < end else None
    planned_out = exit_s if exit_s is not None and 0.0 < exit_s < end else None
    entry = planned_in if planned_in is not None else _best(analysis, common_pb2.CUE_KIND_ENTRY)
    exit_ = planned_out if planned_out is not None else _best(analysis, common_pb2.CUE_KIND_EXIT)
    out = []
    if entry is not None:
        name = "in: " + (_section_at(analysis, entry) or "entry")
        out.append(Marker(entry, name, "entry", ENTRY_HOT_CUE))
    if exit_ is not None:
        name = "out: " + (_section_at(analysis, exit_) or "exit")
        out.append(Marker(exit_, name, "exit", EXIT_HOT_CUE))
    note = "" if out else "no hot cues: the analysis has no cue points"
    return out, note


__all__ = [
    "ENTRY_HOT_CUE",
    "EXIT_HOT_CUE",
    "MIN_KEY_CONFIDENCE",
    "KeyFacts",
    "KeyNotation",
    "Marker",
    "MarkerKind",
    "Note",
    "NoteTopic",
    "TrackFacts",
    "section_label",
    "track_facts",
]
