"""The listening test's records: blind comparisons of two transitions, and seam ratings.

A listening page shows two transitions, A and B, out of the same song at the same exit, each
made under one `Condition`; the annotator says which sounds more seamless and rates each
1 to 5. Seam ratings are 1-to-5 ratings of one seam (transition) of a continuous mix, made by
any page that plays whole mixes. Times are UTC datetimes; durations are seconds.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

SIDES = "AB"
MIN_RATING, MAX_RATING = 1, 5


class Condition(enum.StrEnum):
    """How a transition of a listening page was made (never shown to the annotator)."""

    SEGUE = "segue"          # the matcher's best next segment, rendered by Segue's mixer
    CROSSFADE = "crossfade"  # the same pair as a plain linear crossfade, same lengths
    RANDOM = "random"        # a random next song, rendered by Segue's mixer


@dataclass(frozen=True)
class Transition:
    """Leaving `from_song` at `exit_s` into `to_song` at `entry_s`, made under `condition`;
    `duration_s` is the length of the rendered audio."""

    condition: Condition
    from_song: str
    exit_s: float
    to_song: str
    entry_s: float
    duration_s: float


@dataclass(frozen=True)
class ListeningPage:
    """Page `position` (0-based) of an annotator's listening test: transitions A and B."""

    id: str
    annotator_id: str
    position: int
    sides: tuple[Transition, Transition]
    served_at: datetime


@dataclass(frozen=True)
class ListeningPlay:
    """The browser reported that side 0 (A) or 1 (B) of a page played to its end."""

    page_id: str
    side: int
    listened_s: float
    ended_at: datetime


@dataclass(frozen=True)
class ListeningAnswer:
    """Which side sounds more seamless (0: A, 1: B) and each side's rating (1 to 5)."""

    page_id: str
    annotator_id: str
    preferred: int
    ratings: tuple[int, int]
    answered_at: datetime
    listened_s: tuple[float, float]


@dataclass(frozen=True)
class AnsweredComparison:
    """An answer with its page: the unit the results read."""

    page: ListeningPage
    answer: ListeningAnswer


@dataclass(frozen=True)
class SeamRating:
    """A 1-to-5 rating of seam `seam_index` (0-based) of mix `mix_id` by `rater_id` (the
    login's subject: an annotator's id, or "admin")."""

    mix_id: str
    seam_index: int
    rating: int
    rater_id: str
    rated_at: datetime


__all__ = ["MAX_RATING", "MIN_RATING", "SIDES", "AnsweredComparison", "Condition",
           "ListeningAnswer", "ListeningPage", "ListeningPlay", "SeamRating", "Transition"]
