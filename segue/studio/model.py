"""The Studio's records: what is stored, independent of how (see `store.py`).

Times are UTC datetimes; durations are seconds. Ids are opaque strings made by the store.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class TripletKind(enum.StrEnum):
    """Why a triplet was shown."""

    RANDOM = "random"   # three songs drawn uniformly
    ACTIVE = "active"   # the songs where the current model's margin is smallest
    GOLD = "gold"       # two clips from one song: the other song is the known odd one out
    REPEAT = "repeat"   # an earlier triplet of this session again, reordered


@dataclass(frozen=True)
class Clip:
    """`duration_s` seconds of `song_id` from `start_s`."""

    song_id: str
    start_s: float
    duration_s: float


@dataclass(frozen=True)
class Triplet:
    """Three clips from songs of the library, in the order the page shows them.

    `expected_odd` is the slot (0..2) of the known odd one out for gold triplets, else None.
    `repeat_of` is the id of the item this one repeats (REPEAT only), else None.
    `model_odd` and `model_margin` are the model's own answer and its margin (cosine-distance
    units) when the triplet was made, or None where the library had no feel vectors.
    """

    clips: tuple[Clip, Clip, Clip]
    kind: TripletKind
    expected_odd: int | None = None
    repeat_of: str | None = None
    model_odd: int | None = None
    model_margin: float | None = None


@dataclass(frozen=True)
class Invite:
    """An invite link: only the SHA-256 of its token is stored."""

    id: str
    label: str
    created_at: datetime
    expires_at: datetime
    max_uses: int
    uses: int


@dataclass(frozen=True)
class Annotator:
    """An anonymous annotator: the only personal data the Studio keeps is this random id."""

    id: str
    invite_id: str
    consented_at: datetime


@dataclass(frozen=True)
class StudySession:
    """One annotator's run of `length` triplet pages."""

    id: str
    annotator_id: str
    length: int
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class Item:
    """Page `position` (0-based) of a session: one triplet, served at `served_at`."""

    id: str
    session_id: str
    position: int
    triplet: Triplet
    served_at: datetime


@dataclass(frozen=True)
class Play:
    """The browser reported that clip `slot` of an item played to its end."""

    item_id: str
    slot: int
    listened_s: float
    ended_at: datetime


@dataclass(frozen=True)
class Answer:
    """The annotator's pick (slot 0..2) of the odd one out on an item."""

    item_id: str
    session_id: str
    annotator_id: str
    pick: int
    answered_at: datetime
    listened_s: tuple[float, float, float]


@dataclass(frozen=True)
class AnsweredTriplet:
    """An answer joined with its item and triplet: the unit exports and QC read."""

    annotator_id: str
    session_id: str
    item_id: str
    position: int
    triplet: Triplet
    pick: int
    served_at: datetime
    answered_at: datetime
    listened_s: tuple[float, float, float]


__all__ = [
    "Annotator",
    "Answer",
    "AnsweredTriplet",
    "Clip",
    "Invite",
    "Item",
    "Play",
    "StudySession",
    "Triplet",
    "TripletKind",
]
