"""Turns a request's Filter into store conditions, rejecting malformed or contradictory ones.

A filter is bounded before any of it is read: at most MAX_CONDITIONS conditions and
MAX_FILTER_VALUES values in all (excluded and played song ids, excluded artists and any_of
values together), each value at most MAX_TEXT_LENGTH characters; song ids have the song-id
charset; a field is one the schema declares filterable, or "extra.<name>" with a name of
1 to 64 characters of A-Z, a-z, 0-9, "_" and "-"; numbers are finite and within range.
"""

from __future__ import annotations

from collections.abc import Iterable

from segue.v1 import matcher_pb2
from services.matcher import schema
from services.matcher.conditions import AnyOf, Condition, Match, MatchAny, Not, Range, all_of
from services.matcher.errors import InvalidArgumentError, shown
from services.matcher.scoring import key_scores, tempo_compatible_ranges
from services.matcher.validation import (
    MAX_BPM,
    check_camelot,
    check_count,
    check_number,
    check_optional_number,
    check_song_id,
    check_text,
)

__all__ = ["MAX_CONDITIONS", "MAX_FILTER_VALUES", "build_filter", "check_camelot"]

MAX_CONDITIONS = 32
MAX_FILTER_VALUES = 1_000
# Bounds of a NumericRange condition.
MAX_RANGE_BOUND = 1e9


def check_filter_size(spec: matcher_pb2.Filter, field: str = "filter") -> None:
    """Counts what the filter holds before anything in it is read."""
    check_count(f"{field}.conditions", len(spec.conditions), MAX_CONDITIONS)
    total = len(spec.exclude_song_ids) + len(spec.played_song_ids) + len(spec.exclude_artists)
    total += sum(len(c.any_of.values) for c in spec.conditions)
    if total > MAX_FILTER_VALUES:
        raise InvalidArgumentError(
            field,
            f"holds {total} values (song ids, artists and any_of values together), at most "
            f"{MAX_FILTER_VALUES} are allowed",
        )


def _excluded_songs(spec: matcher_pb2.Filter, field: str) -> set[str]:
    out: set[str] = set()
    for name in ("exclude_song_ids", "played_song_ids"):
        for i, song_id in enumerate(getattr(spec, name)):
            if song_id:  # empty entries are ignored
                check_song_id(song_id, f"{field}.{name}[{i}]")
                out.add(song_id)
    return out


def _excluded_artists(spec: matcher_pb2.Filter, field: str) -> set[str]:
    for i, artist in enumerate(spec.exclude_artists):
        check_text(artist, f"{field}.exclude_artists[{i}]")
    return {a for a in spec.exclude_artists if a}


def build_filter(
    spec: matcher_pb2.Filter,
    *,
    source_tempo_bpm: float | None = None,
    source_camelot: str | None = None,
    required_song_ids: Iterable[str] = (),
    field: str = "filter",
) -> Condition | None:
    """The AND of everything `spec` asks for; None when it asks for nothing."""
    check_filter_size(spec, field)
    parts: list[Condition] = []
    excluded_songs = _excluded_songs(spec, field)
    required = {s for s in required_song_ids if s}
    conditions = [_condition(c, f"{field}.conditions[{i}]") for i, c in enumerate(spec.conditions)]
    required |= _required_values(spec.conditions, "song_id")
    clash = sorted(required & excluded_songs)
    if clash:
        raise InvalidArgumentError(
            f"{field}.exclude_song_ids", f"song {shown(clash[0])} is both required and excluded"
        )
    excluded_artists = _excluded_artists(spec, field)
    artist_clash = sorted(_required_values(spec.conditions, "artist") & excluded_artists)
    if artist_clash:
        raise InvalidArgumentError(
            f"{field}.exclude_artists",
            f"artist {shown(artist_clash[0])} is both required and excluded",
        )
    if excluded_songs:
        parts.append(Not(MatchAny("song_id", tuple(sorted(excluded_songs)))))
    if excluded_artists:
        parts.append(Not(MatchAny("artist", tuple(sorted(excluded_artists)))))
    if spec.HasField("tempo_range"):
        parts.append(_tempo_range(spec.tempo_range, f"{field}.tempo_range"))
    parts.extend(_compatible(spec, source_tempo_bpm, source_camelot, field))
    parts.extend(conditions)
    if not parts:
        return None
    return all_of(*parts)


def _compatible(
    spec: matcher_pb2.Filter,
    source_tempo_bpm: float | None,
    source_camelot: str | None,
    field: str,
) -> list[Condition]:
    """The tempo_compatible and key_compatible parts."""
    parts: list[Condition] = []
    if spec.tempo_compatible:
        if source_tempo_bpm is None or source_tempo_bpm <= 0:
            raise InvalidArgumentError(
                f"{field}.tempo_compatible", "the song being left has no known tempo"
            )
        ranges = tempo_compatible_ranges(source_tempo_bpm)
        parts.append(AnyOf(tuple(Range("tempo_bpm", lo, hi) for lo, hi in ranges)))
    if spec.key_compatible:
        if not source_camelot:
            raise InvalidArgumentError(
                f"{field}.key_compatible", "the song being left has no known key"
            )
        codes = tuple(sorted(key_scores(source_camelot)))
        parts.append(MatchAny("camelot", codes))
    return parts


def _tempo_range(tempo: matcher_pb2.TempoRange, field: str) -> Condition:
    """Bounds 0 (open) or 1 to MAX_BPM."""
    low = check_optional_number(tempo.min_bpm, f"{field}.min_bpm", 0.0, MAX_BPM)
    high = check_optional_number(tempo.max_bpm, f"{field}.max_bpm", 0.0, MAX_BPM)
    if low == 0 and high == 0:
        raise InvalidArgumentError(field, "set min_bpm, max_bpm or both")
    if high > 0 and low > high:
        raise InvalidArgumentError(field, f"min_bpm {low} is above max_bpm {high}")
    return Range("tempo_bpm", gte=low if low > 0 else None, lte=high if high > 0 else None)


def _check_field(name: str, field: str) -> str:
    """A field clients may filter on (schema: filterable); else INVALID_ARGUMENT."""
    if name in schema.FILTERABLE_KEYWORDS or name in schema.FILTERABLE_NUMBERS:
        return name
    if schema.filterable_map_of(name) is not None:
        return name
    raise InvalidArgumentError(
        f"{field}.field",
        f"unknown field {shown(name)}; use one of {', '.join(schema.filterable_names())} "
        f"(<name>: {schema.MAP_KEY_GRAMMAR})",
    )


def _keyword(name: str, value: str, field: str) -> str:
    """A value compared with a keyword field, checked as that field's values are."""
    if name == "camelot":
        return check_camelot(value, field)
    if name == "song_id":
        check_song_id(value, field)
    else:
        check_text(value, field)
    return value


def _range(spec: matcher_pb2.NumericRange, field: str) -> tuple[float | None, float | None]:
    bounds: list[float | None] = []
    for name in ("gte", "lte"):
        if spec.HasField(name):
            value = getattr(spec, name)
            bounds.append(check_number(value, f"{field}.{name}", -MAX_RANGE_BOUND, MAX_RANGE_BOUND))
        else:
            bounds.append(None)
    gte, lte = bounds
    if gte is not None and lte is not None and gte > lte:
        raise InvalidArgumentError(field, f"gte {gte} is above lte {lte}")
    if gte is None and lte is None:
        raise InvalidArgumentError(field, "set gte, lte or both")
    return gte, lte


def _condition(spec: matcher_pb2.PayloadCondition, field: str) -> Condition:
    name = _check_field(spec.field, field)
    numeric = name in schema.FILTERABLE_NUMBERS
    kind = spec.WhichOneof("match")
    condition: Condition
    if kind is None:
        raise InvalidArgumentError(field, "set one of equals, range or any_of")
    if kind == "range":
        if not numeric:
            raise InvalidArgumentError(f"{field}.range", f"{name!r} is not a numeric field")
        condition = Range(name, *_range(spec.range, f"{field}.range"))
    elif numeric:
        raise InvalidArgumentError(f"{field}.{kind}", f"{name!r} is numeric: use range")
    elif kind == "equals":
        condition = Match(name, _keyword(name, spec.equals, f"{field}.equals"))
    else:
        values = spec.any_of.values
        if not values:
            raise InvalidArgumentError(f"{field}.any_of", "needs at least one value")
        condition = MatchAny(
            name, tuple(_keyword(name, v, f"{field}.any_of[{i}]") for i, v in enumerate(values))
        )
    return Not(condition) if spec.negate else condition


def _required_values(conditions: Iterable[matcher_pb2.PayloadCondition], name: str) -> set[str]:
    """Values a positive equals/any_of-of-one condition requires for a keyword field."""
    out: set[str] = set()
    for c in conditions:
        if c.field != name or c.negate:
            continue
        if c.WhichOneof("match") == "equals":
            out.add(c.equals)
        elif c.WhichOneof("match") == "any_of" and len(c.any_of.values) == 1:
            out.add(c.any_of.values[0])
    return out
