"""The Studio's tables (SQLAlchemy Core), for SQLite and PostgreSQL alike.

`migrations/versions/` creates and changes them in a database; a test checks that the migrated
schema is exactly this one. Times are stored as timezone-aware UTC (see `UtcDateTime`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

ID_CHARS = 32       # secrets.token_hex(16)
SHA256_CHARS = 64   # hex SHA-256 of invite tokens and login cookies

# Constraint names are fixed so that migrations can name them on every backend.
metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime, stored as UTC; naive datetimes are refused.

    PostgreSQL keeps `timestamp with time zone`; SQLite keeps naive UTC text, made aware again
    on the way out, so both backends return aware UTC datetimes.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"the Studio stores timezone-aware datetimes, not naive {value}")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect
                             ) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _id(name: str = "id") -> Column[str]:
    return Column(name, String(ID_CHARS), primary_key=True)


def _ref(name: str, target: str, *, nullable: bool = False) -> Column[str]:
    return Column(name, String(ID_CHARS), ForeignKey(target), nullable=nullable)


invites = Table(
    "invites", metadata,
    _id(),
    Column("token_sha256", String(SHA256_CHARS), nullable=False, unique=True),
    Column("label", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("max_uses", Integer, nullable=False),
    Column("uses", Integer, nullable=False),
    CheckConstraint("uses >= 0 AND uses <= max_uses", name="uses"),
)

annotators = Table(
    "annotators", metadata,
    _id(),
    _ref("invite_id", "invites.id"),
    Column("consented_at", UtcDateTime, nullable=False),
)

sessions = Table(
    "sessions", metadata,
    _id(),
    _ref("annotator_id", "annotators.id"),
    Column("length", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=True),
    Index(None, "annotator_id"),
)

logins = Table(
    "logins", metadata,
    Column("cookie_sha256", String(SHA256_CHARS), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("subject_id", String(ID_CHARS), nullable=False),
    Column("csrf_token", Text, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)


def _clip_columns(slot: int) -> list[Column[object]]:
    return [Column(f"clip{slot}_song", Text, nullable=False),
            Column(f"clip{slot}_start_s", Float, nullable=False),
            Column(f"clip{slot}_duration_s", Float, nullable=False)]


# One row per page of a session; the triplet in flat columns.
items = Table(
    "items", metadata,
    _id(),
    _ref("session_id", "sessions.id"),
    Column("position", Integer, nullable=False),
    Column("served_at", UtcDateTime, nullable=False),
    Column("kind", String(16), nullable=False),
    *_clip_columns(0), *_clip_columns(1), *_clip_columns(2),
    Column("expected_odd", Integer, nullable=True),
    Column("repeat_of", String(ID_CHARS), nullable=True),
    Column("model_odd", Integer, nullable=True),
    Column("model_margin", Float, nullable=True),
    UniqueConstraint("session_id", "position"),
)

# One row per (item, slot): a replay updates the row.
plays = Table(
    "plays", metadata,
    Column("item_id", String(ID_CHARS), ForeignKey("items.id"), primary_key=True),
    Column("slot", Integer, primary_key=True),
    Column("listened_s", Float, nullable=False),
    Column("ended_at", UtcDateTime, nullable=False),
    CheckConstraint("slot >= 0 AND slot <= 2", name="slot"),
)

# One answer per item: the item id is the key.
answers = Table(
    "answers", metadata,
    Column("item_id", String(ID_CHARS), ForeignKey("items.id"), primary_key=True),
    _ref("session_id", "sessions.id"),
    _ref("annotator_id", "annotators.id"),
    Column("pick", Integer, nullable=False),
    Column("answered_at", UtcDateTime, nullable=False),
    Column("listened0_s", Float, nullable=False),
    Column("listened1_s", Float, nullable=False),
    Column("listened2_s", Float, nullable=False),
    CheckConstraint("pick >= 0 AND pick <= 2", name="pick"),
    Index(None, "answered_at"),
)

# ---- the listening test (migration 0002) ------------------------------------------------------
def _side_columns(side: str) -> list[Column[object]]:
    return [Column(f"{side}_condition", String(16), nullable=False),
            Column(f"{side}_to_song", Text, nullable=False),
            Column(f"{side}_entry_s", Float, nullable=False),
            Column(f"{side}_duration_s", Float, nullable=False)]


# One row per listening page of an annotator: transitions A and B out of one song's exit.
listening_pages = Table(
    "listening_pages", metadata,
    _id(),
    _ref("annotator_id", "annotators.id"),
    Column("position", Integer, nullable=False),
    Column("served_at", UtcDateTime, nullable=False),
    Column("from_song", Text, nullable=False),
    Column("exit_s", Float, nullable=False),
    *_side_columns("a"), *_side_columns("b"),
    UniqueConstraint("annotator_id", "position"),
)

# One row per (page, side): a replay updates the row.
listening_plays = Table(
    "listening_plays", metadata,
    Column("page_id", String(ID_CHARS), ForeignKey("listening_pages.id"), primary_key=True),
    Column("side", Integer, primary_key=True),
    Column("listened_s", Float, nullable=False),
    Column("ended_at", UtcDateTime, nullable=False),
    CheckConstraint("side >= 0 AND side <= 1", name="side"),
)

# One answer per page: the page id is the key.
listening_answers = Table(
    "listening_answers", metadata,
    Column("page_id", String(ID_CHARS), ForeignKey("listening_pages.id"), primary_key=True),
    _ref("annotator_id", "annotators.id"),
    Column("preferred", Integer, nullable=False),
    Column("rating_a", Integer, nullable=False),
    Column("rating_b", Integer, nullable=False),
    Column("answered_at", UtcDateTime, nullable=False),
    Column("listened_a_s", Float, nullable=False),
    Column("listened_b_s", Float, nullable=False),
    CheckConstraint("preferred >= 0 AND preferred <= 1", name="preferred"),
    CheckConstraint("rating_a >= 1 AND rating_a <= 5", name="rating_a"),
    CheckConstraint("rating_b >= 1 AND rating_b <= 5", name="rating_b"),
)

# Ratings of the seams of continuous mixes: one per (mix, seam, rater).
seam_ratings = Table(
    "seam_ratings", metadata,
    Column("mix_id", String(128), primary_key=True),
    Column("seam_index", Integer, primary_key=True),
    Column("rater_id", String(ID_CHARS), primary_key=True),
    Column("rating", Integer, nullable=False),
    Column("rated_at", UtcDateTime, nullable=False),
    CheckConstraint("seam_index >= 0", name="seam_index"),
    CheckConstraint("rating >= 1 AND rating <= 5", name="rating"),
)

# The columns of `items` that hold the triplet.
TRIPLET_COLUMNS = tuple(c for c in items.columns
                        if c.name not in {"id", "session_id", "position", "served_at"})

__all__ = ["TRIPLET_COLUMNS", "UtcDateTime", "annotators", "answers", "invites", "items",
           "listening_answers", "listening_pages", "listening_plays", "logins", "metadata",
           "plays", "seam_ratings", "sessions"]
