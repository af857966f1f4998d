"""Turns a request's Filter into store conditions, rejecting malformed or contradictory ones."""

from __future__ import annotations

import math
from collections.abc import Iterable

from segue.structure.camelot import parse_camelot
from segue.v1 import matcher_pb2
from services.matcher import schema
from services.matcher.conditions import AnyOf, Condition, Match, MatchAny, Not, Range, all_of
from services.matcher.errors import InvalidArgumentError
from services.matcher.scoring import key_scores, tempo_compatible_ranges


def check_camelot(code: str, field: str) -> str:
    try:
        parse_camelot(code)
    except ValueError as e:
        raise InvalidArgumentError(field, str(e)) from e
    return code.strip().upper()


def build_filter(
    spec: matcher_pb2.Filter,
    *,
    source_tempo_bpm: float | None = None,
    source_camelot: str | None = None,
    required_song_ids: Iterable[str] = (),
    field: str = "filter",
) -> Condition | None:
    """The AND of everything `spec` asks for; None when it asks for nothing."""
    parts: list[Condition] = []
    excluded_songs = {s for s in (*spec.exclude_song_ids, *spec.played_song_ids) if s}
    required = {s for s in required_song_ids if s}
    conditions = [_condition(c, f"{field}.conditions[{i}]") for i, c in enumerate(spec.conditions)]
    required |= _required_values(spec.conditions, "song_id")
    clash = sorted(required & excluded_songs)
    if clash:
        raise InvalidArgumentError(
            f"{field}.exclude_song_ids", f"song {clash[0]!r} is both required and excluded"
        )
    excluded_artists = {a for a in spec.exclude_artists if a}
    artist_clash = sorted(_required_values(spec.conditions, "artist") & excluded_artists)
    if artist_clash:
        raise InvalidArgumentError(
            f"{field}.exclude_artists", f"artist {artist_clash[0]!r} is both required and excluded"
        )
    if excluded_songs:
        parts.append(Not(MatchAny("song_id", tuple(sorted(excluded_songs)))))
    if excluded_artists:
        parts.append(Not(MatchAny("artist", tuple(sorted(excluded_artists)))))
    if spec.HasField("tempo_range"):
        parts.append(_tempo_range(spec.tempo_range, f"{field}.tempo_range"))
    if spec.tempo_compatible:
        if source_tempo_bpm is None or source_tempo_bpm <= 0:
            raise InvalidArgumentError(
                f"{field}.tempo_compatible", "the song being left has no known tempo"
            )
        parts.append(
            AnyOf(tuple(Range("tempo_bpm", lo, hi) for lo, hi in tempo_compatible_ranges(
                source_tempo_bpm)))
        )  # fmt: skip
    if spec.key_compatible:
        if not source_camelot:
            raise InvalidArgumentError(
                f"{field}.key_compatible", "the song being left has no known key"
            )
        codes = tuple(sorted(key_scores(source_camelot)))
        parts.append(MatchAny("camelot", codes))
    parts.extend(conditions)
    if not parts:
        return None
    return all_of(*parts)


def _tempo_range(tempo: matcher_pb2.TempoRange, field: str) -> Condition:
    low, high = tempo.min_bpm, tempo.max_bpm
    for name, value in (("min_bpm", low), ("max_bpm", high)):
        if not math.isfinite(value) or value < 0:
            raise InvalidArgumentError(f"{field}.{name}", "must be a non-negative number")
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
        f"unknown field {name!r}; use one of {', '.join(schema.filterable_names())}",
    )


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
        r = spec.range
        gte = r.gte if r.HasField("gte") else None
        lte = r.lte if r.HasField("lte") else None
        for bound in (gte, lte):
            if bound is not None and not math.isfinite(bound):
                raise InvalidArgumentError(f"{field}.range", "bounds must be finite")
        if gte is not None and lte is not None and gte > lte:
            raise InvalidArgumentError(f"{field}.range", f"gte {gte} is above lte {lte}")
        if gte is None and lte is None:
            raise InvalidArgumentError(f"{field}.range", "set gte, lte or both")
        condition = Range(name, gte, lte)
    elif numeric:
        raise InvalidArgumentError(f"{field}.{kind}", f"{name!r} is numeric: use range")
    elif kind == "equals":
        value = check_camelot(spec.equals, f"{field}.equals") if name == "camelot" else spec.equals
        condition = Match(name, value)
    else:
        values = list(spec.any_of.values)
        if not values:
            raise InvalidArgumentError(f"{field}.any_of", "needs at least one value")
        if name == "camelot":
            values = [check_camelot(v, f"{field}.any_of") for v in values]
        condition = MatchAny(name, tuple(values))
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
