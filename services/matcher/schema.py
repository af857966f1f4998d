"""The matcher's payload schema, declared once: every field a song or segment point carries.

Each field says what it holds, which points carry it, whether Qdrant indexes it (an index of
the field's own type), whether clients may name it in a filter, whether committing a song
version copies it from the song point onto the song's segments, whether results show it, and
whether NextSegment reads it from every candidate segment when scoring. Every field list the
matcher uses (indexes, filters, copies, reads) is derived here; tests hold the payloads the
library writes to this declaration.

Every index costs time on each write, and every payload value costs time on each write and
each read (qdrant-edge converts it from and to Python), so fields are indexed only when a
filter starts from them and copied onto segments only when segment filters or scoring read
them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

# Keys of a keyword map (SongMetadata.extra): what filters name as "<map>.<key>", so plain
# names only (a Qdrant JSON path would read "[", "*", "." or spaces as syntax).
MAP_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAP_KEY_GRAMMAR = "1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'"


class ValueType(Enum):
    """What a payload value holds. The three scalar types are also Qdrant's index types."""

    KEYWORD = "keyword"  # a string matched exactly
    FLOAT = "float"
    INTEGER = "integer"
    KEYWORD_MAP = "keyword_map"  # an object of strings; filters name its keys "<field>.<key>"
    OBJECT = "object"  # structured, read whole, never filtered
    LIST = "list"  # a JSON array, read whole, never filtered
    PROTO_BASE64 = "proto_base64"  # a serialized protobuf message as base64 text

    @property
    def scalar(self) -> bool:
        return self in (ValueType.KEYWORD, ValueType.FLOAT, ValueType.INTEGER)

    @property
    def numeric(self) -> bool:
        return self in (ValueType.FLOAT, ValueType.INTEGER)


class Holder(Enum):
    """Which points carry a field."""

    SONG = "song"  # the song point (and its segments too when the field is copied to them)
    SEGMENT = "segment"  # segment points only
    EACH = "each"  # every point, each with its own value


@dataclass(frozen=True)
class PayloadField:
    """One payload field. `indexed` builds a Qdrant index of the field's own (scalar) type;
    `filterable` lets clients name it in a PayloadCondition; `copied_to_segments` copies a
    song point's value onto its segments at commit; `metadata` maps it to SongMetadata;
    `shown` reads it for results (metadata, tempo, key of candidates); `scored` reads it from
    each candidate segment in NextSegment (SegmentFacts)."""

    name: str
    type: ValueType
    holder: Holder
    doc: str
    indexed: bool = False
    filterable: bool = False
    copied_to_segments: bool = False
    metadata: bool = False
    shown: bool = False
    scored: bool = False

    def __post_init__(self) -> None:
        if self.indexed and not self.type.scalar:
            raise ValueError(f"{self.name}: only keyword, float and integer fields are indexed")
        if self.filterable and not (self.type.scalar or self.type is ValueType.KEYWORD_MAP):
            raise ValueError(f"{self.name}: a {self.type.value} field cannot be filtered on")
        if self.copied_to_segments and self.holder is not Holder.SONG:
            raise ValueError(f"{self.name}: only song fields are copied onto segments")

    @property
    def on_songs(self) -> bool:
        """A song point carries it."""
        return self.holder is not Holder.SEGMENT

    @property
    def on_segments(self) -> bool:
        """A committed segment point carries it (its own or a copy of its song's)."""
        return self.holder is not Holder.SONG or self.copied_to_segments


_KEYWORD, _FLOAT, _INTEGER = ValueType.KEYWORD, ValueType.FLOAT, ValueType.INTEGER
_SONG, _SEGMENT, _EACH = Holder.SONG, Holder.SEGMENT, Holder.EACH


def _metadata(
    name: str, doc: str, *, filterable: bool = True, value_type: ValueType = _KEYWORD
) -> PayloadField:
    """A SongMetadata field, shown in results. A filterable one is copied onto segments (so
    that segment searches can filter on it) and indexed unless clients choose its keys."""
    return PayloadField(
        name, value_type, _SONG, doc, indexed=filterable and value_type.scalar,
        filterable=filterable, copied_to_segments=filterable, metadata=True, shown=True,
    )  # fmt: skip


FIELDS: tuple[PayloadField, ...] = (
    PayloadField("kind", _KEYWORD, _EACH,
                 '"song" or "segment"; a segment gets it when committed', indexed=True),
    PayloadField("song_id", _KEYWORD, _EACH,
                 "the song's id", indexed=True, filterable=True, scored=True),
    # Only ever matched together with song_id, whose index already narrows a filter to one
    # song's points: no index of its own.
    PayloadField("generation", _KEYWORD, _EACH,
                 "content hash of the song version the point belongs to", scored=True),
    PayloadField("state", _KEYWORD, _EACH,
                 '"pending" while a version is written, then "live"', indexed=True, scored=True),
    PayloadField("model_name", _KEYWORD, _SONG,
                 "name of the model that made the vectors"),
    PayloadField("model_version", _KEYWORD, _SONG,
                 "vectors of different versions are never compared",
                 indexed=True, copied_to_segments=True, scored=True),
    PayloadField("duration_s", _FLOAT, _SONG,
                 "length of the analysed audio, seconds"),
    PayloadField("tempo_bpm", _FLOAT, _SONG,
                 "global tempo, beats per minute; absent when unknown",
                 indexed=True, filterable=True, copied_to_segments=True, shown=True, scored=True),
    PayloadField("camelot", _KEYWORD, _SONG,
                 'Camelot code of the key ("8B"); absent when unknown',
                 indexed=True, filterable=True, copied_to_segments=True, shown=True, scored=True),
    PayloadField("key", ValueType.OBJECT, _SONG,
                 "tonic, mode, name and confidence of the key; absent when unknown", shown=True),
    PayloadField("loudness_lufs", _FLOAT, _SONG,
                 "integrated loudness, LUFS"),
    PayloadField("energy", _FLOAT, _EACH,
                 "0 to 1: a segment's own, or a song's mean over its segments",
                 indexed=True, filterable=True, scored=True),
    PayloadField("segment_count", _INTEGER, _SONG,
                 "number of segments of the stored version"),
    PayloadField("segments", ValueType.LIST, _SONG,
                 "[start_s, end_s, energy, section_letter] per segment, in song order"),
    PayloadField("analysis", ValueType.PROTO_BASE64, _SONG,
                 "the SongAnalysis given to UpsertSong without its feel and segments (kept as "
                 "vectors and in `segments`); absent for songs stored before it was kept"),
    _metadata("title", "SongMetadata.title"),
    _metadata("artist", "SongMetadata.artist"),
    _metadata("album", "SongMetadata.album"),
    _metadata("genre", "SongMetadata.genre"),
    _metadata("uri", "SongMetadata.uri: where the audio lives", filterable=False),
    _metadata("extra", "SongMetadata.extra: the client's own keys and values",
              value_type=ValueType.KEYWORD_MAP),
    PayloadField("segment_index", _INTEGER, _SEGMENT,
                 "0-based position in the song", scored=True),
    PayloadField("start_s", _FLOAT, _SEGMENT,
                 "where the segment starts, seconds", scored=True),
    PayloadField("end_s", _FLOAT, _SEGMENT,
                 "where the segment ends, seconds", scored=True),
    # Not for clients: PlanPlaylist enters songs in their first half.
    PayloadField("start_frac", _FLOAT, _SEGMENT,
                 "start_s as a fraction of the song's duration", indexed=True),
    PayloadField("section_letter", _KEYWORD, _SEGMENT,
                 "letter of the section the segment starts in", indexed=True, filterable=True),
)  # fmt: skip

BY_NAME = {f.name: f for f in FIELDS}
if len(BY_NAME) != len(FIELDS):
    raise ValueError("a payload field is declared twice")

# Payload indexes to create, with their type.
PAYLOAD_INDEXES: tuple[tuple[str, ValueType], ...] = tuple(
    (f.name, f.type) for f in FIELDS if f.indexed
)
# Fields a client's PayloadCondition may name: keywords take equals/any_of, numbers a range,
# and a keyword map's keys ("extra.<name>") take equals/any_of.
FILTERABLE_KEYWORDS = frozenset(f.name for f in FIELDS if f.filterable and f.type is _KEYWORD)
FILTERABLE_NUMBERS = frozenset(f.name for f in FIELDS if f.filterable and f.type.numeric)
FILTERABLE_MAPS = frozenset(
    f.name for f in FIELDS if f.filterable and f.type is ValueType.KEYWORD_MAP
)
# Filterable fields song points lack: SimilarSongs, which searches song points, refuses them.
FILTERABLE_ON_SEGMENTS_ONLY = frozenset(f.name for f in FIELDS if f.filterable and not f.on_songs)
# Song fields committing copies onto each segment of the version.
COPIED_TO_SEGMENTS = tuple(f.name for f in FIELDS if f.copied_to_segments)
# SongMetadata fields, stored one payload field each.
METADATA_FIELDS = tuple(f.name for f in FIELDS if f.metadata)
# Song fields read to show a result (its metadata, tempo and key).
SHOWN_IN_RESULTS = tuple(f.name for f in FIELDS if f.shown)
# Segment fields NextSegment reads from every candidate.
SCORED_SEGMENT_FIELDS = tuple(f.name for f in FIELDS if f.scored)


def filterable_map_of(name: str) -> str | None:
    """The keyword map a filter field such as "extra.mood" names a key of (the key matching
    MAP_KEY); None otherwise."""
    head, dot, key = name.partition(".")
    return head if dot and head in FILTERABLE_MAPS and MAP_KEY.fullmatch(key) else None


def filterable_names() -> list[str]:
    """Every field name a filter accepts; a map's keys as "<map>.<name>"."""
    return sorted(FILTERABLE_KEYWORDS | FILTERABLE_NUMBERS) + [
        f"{m}.<name>" for m in sorted(FILTERABLE_MAPS)
    ]
