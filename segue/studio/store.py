"""The one storage interface of the Studio; `sql_store.SqlStore` implements it over SQLAlchemy
(SQLite embedded by default, PostgreSQL by URL for a shared deployment).

Every method is one transaction: a call either stores all it names or nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from segue.studio.listening_model import (
    AnsweredComparison,
    ListeningAnswer,
    ListeningPage,
    ListeningPlay,
    SeamRating,
    Transition,
)
from segue.studio.model import (
    Annotator,
    Answer,
    AnsweredTriplet,
    Invite,
    Item,
    Play,
    StudySession,
    Triplet,
)

LoginKind = Literal["annotator", "admin"]


class StoreError(Exception):
    """Base class of the store's refusals."""


class InviteRefusedError(StoreError):
    """An invite that cannot be used; `reason` is "unknown", "expired" or "used up"."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invite {reason}")
        self.reason = reason


class AlreadyExistsError(StoreError):
    """A record whose key is taken: a second answer to an item, a second item at a position."""


@dataclass(frozen=True)
class Login:
    """A browser's signed-in session. Only the SHA-256 of the cookie is stored."""

    kind: LoginKind
    subject_id: str          # the annotator's id, or "admin"
    csrf_token: str          # sent back with every form and POST
    expires_at: datetime


class StudioStore(Protocol):
    """What the Studio stores. Implementations raise only StoreError subclasses for refusals."""

    # ---- invites and joining ------------------------------------------------------------
    def create_invite(self, label: str, token_sha256: str, expires_at: datetime,
                      max_uses: int, now: datetime) -> Invite: ...

    def invites(self) -> list[Invite]: ...

    def invite(self, token_sha256: str) -> Invite | None:
        """The invite whose token hashes to this, whatever its state, or None."""
        ...

    def join(self, token_sha256: str, session_length: int, now: datetime
             ) -> tuple[Annotator, StudySession]:
        """Uses the invite once and creates an annotator (consented now) with one session.

        Raises InviteRefusedError when the invite is unknown, expired at `now`, or used up.
        """
        ...

    # ---- browser logins -----------------------------------------------------------------
    def create_login(self, cookie_sha256: str, login: Login) -> None: ...

    def login(self, cookie_sha256: str, now: datetime) -> Login | None:
        """The login whose cookie hashes to this, or None (unknown or expired at `now`)."""
        ...

    def delete_login(self, cookie_sha256: str) -> None: ...

    # ---- sessions and their pages -------------------------------------------------------
    def session(self, session_id: str) -> StudySession | None: ...

    def sessions_of(self, annotator_id: str) -> list[StudySession]: ...

    def finish_session(self, session_id: str, now: datetime) -> None: ...

    def add_item(self, session_id: str, position: int, triplet: Triplet, now: datetime
                 ) -> Item:
        """Raises AlreadyExistsError when the session already has an item at `position`."""
        ...

    def item(self, item_id: str) -> Item | None: ...

    def items(self, session_id: str) -> list[Item]:
        """The session's items by position."""
        ...

    # ---- listening and answers ----------------------------------------------------------
    def record_play(self, item_id: str, slot: int, listened_s: float, now: datetime) -> Play:
        """Records that clip `slot` played to its end; a replay keeps the first end time and
        the longest listening time."""
        ...

    def plays(self, item_id: str) -> list[Play]: ...

    def record_answer(self, answer: Answer) -> None:
        """Raises AlreadyExistsError when the item is answered already (nothing is stored twice)."""
        ...

    def answer(self, item_id: str) -> Answer | None: ...

    def answered(self) -> list[AnsweredTriplet]:
        """Every answer with its triplet, oldest first."""
        ...

    def annotators(self) -> list[Annotator]: ...

    def close(self) -> None: ...

    # =====================================================================================
    # ---- the blind transition listening test (migration 0002) ---------------------------
    # =====================================================================================
    def add_listening_page(self, annotator_id: str, position: int,
                           sides: tuple[Transition, Transition], now: datetime
                           ) -> ListeningPage:
        """Raises AlreadyExistsError when the annotator has a listening page at `position`."""
        ...

    def listening_page(self, page_id: str) -> ListeningPage | None: ...

    def listening_pages(self, annotator_id: str) -> list[ListeningPage]:
        """The annotator's listening pages by position."""
        ...

    def record_listening_play(self, page_id: str, side: int, listened_s: float,
                              now: datetime) -> ListeningPlay:
        """Records that side 0 (A) or 1 (B) played to its end; a replay keeps the first end
        time and the longest listening time."""
        ...

    def listening_plays(self, page_id: str) -> list[ListeningPlay]: ...

    def record_listening_answer(self, answer: ListeningAnswer) -> None:
        """Raises AlreadyExistsError when the page is answered already."""
        ...

    def listening_answer(self, page_id: str) -> ListeningAnswer | None: ...

    def answered_comparisons(self) -> list[AnsweredComparison]:
        """Every listening answer with its page, oldest first."""
        ...

    def record_seam_rating(self, rating: SeamRating) -> None:
        """Stores a 1-to-5 rating of one seam of a continuous mix. Raises AlreadyExistsError
        when this rater rated this seam of this mix already (nothing is stored twice)."""
        ...

    def seam_ratings(self) -> list[SeamRating]:
        """Every seam rating, oldest first."""
        ...


__all__ = ["AlreadyExistsError", "InviteRefusedError", "Login", "LoginKind", "StoreError",
           "StudioStore"]
