"""A backend-neutral filter language that each store translates to its own Qdrant types.

Keeping the matcher's logic in these small value types is what lets the same code run on the
embedded engine and on a Qdrant server.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Match:
    """A keyword or integer field equals a value."""

    key: str
    value: str | int


@dataclass(frozen=True)
class MatchAny:
    """A keyword field equals one of several values."""

    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Range:
    """A numeric field lies in [gte, lte]; None bounds are open. Points without it fail."""

    key: str
    gte: float | None = None
    lte: float | None = None


@dataclass(frozen=True)
class AllOf:
    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    condition: Condition


Condition = Match | MatchAny | Range | AllOf | AnyOf | Not


def all_of(*conditions: Condition | None) -> Condition:
    """AND of the given conditions, skipping None; a single one is returned as is."""
    kept = tuple(c for c in conditions if c is not None)
    if len(kept) == 1:
        return kept[0]
    return AllOf(kept)


def matches(condition: Condition, payload: dict[str, object]) -> bool:
    """The reference meaning of a condition, evaluated in Python on one payload (tests hold
    both stores' translations to it)."""
    if isinstance(condition, Match):
        return _lookup(payload, condition.key) == condition.value
    if isinstance(condition, MatchAny):
        return _lookup(payload, condition.key) in condition.values
    if isinstance(condition, Range):
        value = _lookup(payload, condition.key)
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        low_ok = condition.gte is None or value >= condition.gte
        return low_ok and (condition.lte is None or value <= condition.lte)
    if isinstance(condition, AllOf):
        return all(matches(c, payload) for c in condition.conditions)
    if isinstance(condition, AnyOf):
        return any(matches(c, payload) for c in condition.conditions)
    return not matches(condition.condition, payload)


def _lookup(payload: dict[str, object], key: str) -> object:
    value: object = payload
    for part in key.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value
