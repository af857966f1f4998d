"""`StudioStore` over SQLAlchemy Core: SQLite embedded (`sqlite:///path/studio.db`) or PostgreSQL
(`postgresql+psycopg://user@host/db`) for a shared deployment.

Every method is one transaction. Keys are the database's to keep: a second answer to an item,
a second item at a position or a taken login cookie fail on a unique constraint, reported as
AlreadyExistsError. Joining spends an invite with one conditional UPDATE, so concurrent joins
never use it more than `max_uses` times.

On SQLite, SQLAlchemy emits BEGIN itself (the sqlite3 module's own transaction handling leaves
SELECTs and DDL outside transactions), and methods that write begin with BEGIN IMMEDIATE:
writers queue on the busy timeout instead of failing when a read turns into a write.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    event,
    insert,
    select,
    text,
    update,
)
from sqlalchemy import delete as sql_delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql.expression import case

from segue.studio.listening_model import (
    AnsweredComparison,
    Condition,
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
    Clip,
    Invite,
    Item,
    Play,
    StudySession,
    Triplet,
    TripletKind,
)
from segue.studio.schema import (
    TRIPLET_COLUMNS,
    annotators,
    answers,
    invites,
    items,
    listening_answers,
    listening_pages,
    listening_plays,
    logins,
    plays,
    seam_ratings,
    sessions,
)
from segue.studio.store import (
    AlreadyExistsError,
    InviteRefusedError,
    Login,
    LoginKind,
    StoreError,
)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
WRITE_OPTION = "segue_studio_write"
SQLITE_BUSY_TIMEOUT_S = 30.0
# Holds concurrent upgrades of one PostgreSQL database apart (pg_advisory_xact_lock).
MIGRATION_LOCK_KEY = 0x5E6E_5700
_PG_UNIQUE_VIOLATION = "23505"
_SQLITE_DUPLICATE = frozenset({"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"})

Row = RowMapping


def new_id() -> str:
    return secrets.token_hex(16)


def _utc(moment: datetime) -> datetime:
    """`moment` in UTC, as the store gives it back (naive datetimes are refused)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"the Studio stores timezone-aware datetimes, not naive {moment}")
    return moment.astimezone(UTC)


# ---- the engine ------------------------------------------------------------------------------
def _sqlite_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN (`_sqlite_begin`)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    immediate = connection.get_execution_options().get(WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: str) -> Engine:
    """An engine for the Studio: SQLite with WAL, foreign keys and real transactions."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"check_same_thread": False,
                                              "timeout": SQLITE_BUSY_TIMEOUT_S})
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def upgrade(engine: Engine) -> None:
    """Runs the migrations to head in one transaction (nothing to do when at head)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    with engine.execution_options(**{WRITE_OPTION: True}).begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": MIGRATION_LOCK_KEY})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


# ---- rows and records ------------------------------------------------------------------------
def _is_duplicate(error: IntegrityError) -> bool:
    """Whether the database refused a taken key (not a missing reference or a failed check)."""
    sqlstate = getattr(error.orig, "sqlstate", None)
    if sqlstate is not None:
        return bool(sqlstate == _PG_UNIQUE_VIOLATION)
    return getattr(error.orig, "sqlite_errorname", "") in _SQLITE_DUPLICATE


def _refusal(error: IntegrityError, what: str) -> StoreError:
    if _is_duplicate(error):
        return AlreadyExistsError(f"{what} exists already")
    return StoreError(f"{what} refused by the database: {error.orig}")


def _login_kind(value: str) -> LoginKind:
    for kind in get_args(LoginKind):
        if kind == value:
            return kind  # type: ignore[no-any-return]
    raise StoreError(f"unknown login kind {value!r} in the database")


def _triplet_values(triplet: Triplet) -> dict[str, object]:
    values: dict[str, object] = {
        "kind": triplet.kind.value, "expected_odd": triplet.expected_odd,
        "repeat_of": triplet.repeat_of, "model_odd": triplet.model_odd,
        "model_margin": triplet.model_margin,
    }
    for slot, clip in enumerate(triplet.clips):
        values[f"clip{slot}_song"] = clip.song_id
        values[f"clip{slot}_start_s"] = clip.start_s
        values[f"clip{slot}_duration_s"] = clip.duration_s
    return values


def _clip(row: Row, slot: int) -> Clip:
    return Clip(row[f"clip{slot}_song"], row[f"clip{slot}_start_s"],
                row[f"clip{slot}_duration_s"])


def _triplet(row: Row) -> Triplet:
    return Triplet((_clip(row, 0), _clip(row, 1), _clip(row, 2)), TripletKind(row["kind"]),
                   expected_odd=row["expected_odd"], repeat_of=row["repeat_of"],
                   model_odd=row["model_odd"], model_margin=row["model_margin"])


def _invite(row: Row) -> Invite:
    return Invite(row["id"], row["label"], row["created_at"], row["expires_at"],
                  row["max_uses"], row["uses"])


def _session(row: Row) -> StudySession:
    return StudySession(row["id"], row["annotator_id"], row["length"], row["created_at"],
                        row["finished_at"])


def _item(row: Row) -> Item:
    return Item(row["id"], row["session_id"], row["position"], _triplet(row), row["served_at"])


def _play(row: Row) -> Play:
    return Play(row["item_id"], row["slot"], row["listened_s"], row["ended_at"])


def _listened(row: Row) -> tuple[float, float, float]:
    return (row["listened0_s"], row["listened1_s"], row["listened2_s"])


def _answer(row: Row) -> Answer:
    return Answer(row["item_id"], row["session_id"], row["annotator_id"], row["pick"],
                  row["answered_at"], _listened(row))


def _answered(row: Row) -> AnsweredTriplet:
    return AnsweredTriplet(row["annotator_id"], row["session_id"], row["item_id"],
                           row["position"], _triplet(row), row["pick"], row["served_at"],
                           row["answered_at"], _listened(row))


# ---- the store -------------------------------------------------------------------------------
class SqlStore:
    """The Studio's records in a SQL database (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        """Over an engine made by `make_engine` whose database is at head; see `open`."""
        self._engine = engine
        self._writer = engine.execution_options(**{WRITE_OPTION: True})

    @classmethod
    def open(cls, url: str) -> SqlStore:
        """The store at `url`, its migrations run to head first."""
        engine = make_engine(url)
        try:
            upgrade(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    def _read(self) -> AbstractContextManager[Connection]:
        return self._engine.begin()

    def _write(self) -> AbstractContextManager[Connection]:
        return self._writer.begin()

    # ---- invites and joining --------------------------------------------------------------
    def create_invite(self, label: str, token_sha256: str, expires_at: datetime,
                      max_uses: int, now: datetime) -> Invite:
        invite = Invite(new_id(), label, _utc(now), _utc(expires_at), max_uses, 0)
        try:
            with self._write() as conn:
                conn.execute(insert(invites).values(
                    id=invite.id, token_sha256=token_sha256, label=label,
                    created_at=invite.created_at, expires_at=invite.expires_at,
                    max_uses=max_uses, uses=0))
        except IntegrityError as e:
            raise _refusal(e, "an invite with this token") from e
        return invite

    def invites(self) -> list[Invite]:
        with self._read() as conn:
            rows = conn.execute(select(invites).order_by(invites.c.created_at, invites.c.id))
            return [_invite(row) for row in rows.mappings()]

    def invite(self, token_sha256: str) -> Invite | None:
        with self._read() as conn:
            row = conn.execute(select(invites).where(
                invites.c.token_sha256 == token_sha256)).mappings().first()
            return None if row is None else _invite(row)

    def join(self, token_sha256: str, session_length: int, now: datetime
             ) -> tuple[Annotator, StudySession]:
        now = _utc(now)
        with self._write() as conn:
            row = conn.execute(select(invites.c.id, invites.c.expires_at).where(
                invites.c.token_sha256 == token_sha256)).mappings().first()
            if row is None:
                raise InviteRefusedError("unknown")
            spent = conn.execute(update(invites).where(
                invites.c.id == row["id"], invites.c.uses < invites.c.max_uses,
                invites.c.expires_at > now).values(uses=invites.c.uses + 1))
            if spent.rowcount != 1:
                raise InviteRefusedError("expired" if row["expires_at"] <= now else "used up")
            annotator = Annotator(new_id(), row["id"], now)
            session = StudySession(new_id(), annotator.id, session_length, now, None)
            conn.execute(insert(annotators).values(
                id=annotator.id, invite_id=annotator.invite_id, consented_at=now))
            conn.execute(insert(sessions).values(
                id=session.id, annotator_id=annotator.id, length=session_length,
                created_at=now, finished_at=None))
        return annotator, session

    # ---- browser logins -------------------------------------------------------------------
    def create_login(self, cookie_sha256: str, login: Login) -> None:
        try:
            with self._write() as conn:
                conn.execute(insert(logins).values(
                    cookie_sha256=cookie_sha256, kind=login.kind, subject_id=login.subject_id,
                    csrf_token=login.csrf_token, expires_at=login.expires_at))
        except IntegrityError as e:
            raise _refusal(e, "a login with this cookie") from e

    def login(self, cookie_sha256: str, now: datetime) -> Login | None:
        with self._read() as conn:
            row = conn.execute(select(logins).where(
                logins.c.cookie_sha256 == cookie_sha256,
                logins.c.expires_at > now)).mappings().first()
        if row is None:
            return None
        return Login(_login_kind(row["kind"]), row["subject_id"], row["csrf_token"],
                     row["expires_at"])

    def delete_login(self, cookie_sha256: str) -> None:
        with self._write() as conn:
            conn.execute(sql_delete(logins).where(logins.c.cookie_sha256 == cookie_sha256))

    # ---- sessions and their pages ---------------------------------------------------------
    def session(self, session_id: str) -> StudySession | None:
        with self._read() as conn:
            row = conn.execute(select(sessions).where(
                sessions.c.id == session_id)).mappings().first()
            return None if row is None else _session(row)

    def sessions_of(self, annotator_id: str) -> list[StudySession]:
        with self._read() as conn:
            rows = conn.execute(select(sessions).where(
                sessions.c.annotator_id == annotator_id).order_by(
                sessions.c.created_at, sessions.c.id))
            return [_session(row) for row in rows.mappings()]

    def finish_session(self, session_id: str, now: datetime) -> None:
        """Marks the session finished at `now`; a session finished already keeps its time."""
        with self._write() as conn:
            conn.execute(update(sessions).where(
                sessions.c.id == session_id,
                sessions.c.finished_at.is_(None)).values(finished_at=now))

    def add_item(self, session_id: str, position: int, triplet: Triplet, now: datetime
                 ) -> Item:
        item = Item(new_id(), session_id, position, triplet, _utc(now))
        try:
            with self._write() as conn:
                conn.execute(insert(items).values(
                    id=item.id, session_id=session_id, position=position,
                    served_at=item.served_at, **_triplet_values(triplet)))
        except IntegrityError as e:
            raise _refusal(e, f"the item at position {position} of session {session_id}") from e
        return item

    def item(self, item_id: str) -> Item | None:
        with self._read() as conn:
            row = conn.execute(select(items).where(items.c.id == item_id)).mappings().first()
            return None if row is None else _item(row)

    def items(self, session_id: str) -> list[Item]:
        with self._read() as conn:
            rows = conn.execute(select(items).where(
                items.c.session_id == session_id).order_by(items.c.position))
            return [_item(row) for row in rows.mappings()]

    # ---- listening and answers ------------------------------------------------------------
    def record_play(self, item_id: str, slot: int, listened_s: float, now: datetime) -> Play:
        try:
            with self._write() as conn:
                conn.execute(_upsert_play(conn, item_id, slot, listened_s, now))
                row = conn.execute(select(plays).where(
                    plays.c.item_id == item_id, plays.c.slot == slot)).mappings().one()
                return _play(row)
        except IntegrityError as e:
            raise _refusal(e, f"the play of slot {slot} of item {item_id}") from e

    def plays(self, item_id: str) -> list[Play]:
        with self._read() as conn:
            rows = conn.execute(select(plays).where(
                plays.c.item_id == item_id).order_by(plays.c.slot))
            return [_play(row) for row in rows.mappings()]

    def record_answer(self, answer: Answer) -> None:
        listened0, listened1, listened2 = answer.listened_s
        try:
            with self._write() as conn:
                conn.execute(insert(answers).values(
                    item_id=answer.item_id, session_id=answer.session_id,
                    annotator_id=answer.annotator_id, pick=answer.pick,
                    answered_at=answer.answered_at, listened0_s=listened0,
                    listened1_s=listened1, listened2_s=listened2))
        except IntegrityError as e:
            raise _refusal(e, f"the answer to item {answer.item_id}") from e

    def answer(self, item_id: str) -> Answer | None:
        with self._read() as conn:
            row = conn.execute(select(answers).where(
                answers.c.item_id == item_id)).mappings().first()
            return None if row is None else _answer(row)

    def answered(self) -> list[AnsweredTriplet]:
        query = (select(answers, items.c.position, items.c.served_at, *TRIPLET_COLUMNS)
                 .join(items, items.c.id == answers.c.item_id)
                 .order_by(answers.c.answered_at, answers.c.session_id, items.c.position))
        with self._read() as conn:
            return [_answered(row) for row in conn.execute(query).mappings()]

    def annotators(self) -> list[Annotator]:
        with self._read() as conn:
            rows = conn.execute(select(annotators).order_by(
                annotators.c.consented_at, annotators.c.id))
            return [Annotator(r["id"], r["invite_id"], r["consented_at"])
                    for r in rows.mappings()]

    def close(self) -> None:
        self._engine.dispose()

    # =======================================================================================
    # ---- the blind transition listening test (migration 0002) -----------------------------
    # =======================================================================================
    def add_listening_page(self, annotator_id: str, position: int,
                           sides: tuple[Transition, Transition], now: datetime
                           ) -> ListeningPage:
        a, b = sides
        if a.from_song != b.from_song or a.exit_s != b.exit_s:
            raise StoreError("both sides of a listening page leave the same song at one exit")
        page = ListeningPage(new_id(), annotator_id, position, sides, _utc(now))
        try:
            with self._write() as conn:
                conn.execute(insert(listening_pages).values(
                    id=page.id, annotator_id=annotator_id, position=position,
                    served_at=page.served_at, from_song=a.from_song, exit_s=a.exit_s,
                    **_side_values("a", a), **_side_values("b", b)))
        except IntegrityError as e:
            raise _refusal(e, f"the listening page at position {position} of annotator "
                              f"{annotator_id}") from e
        return page

    def listening_page(self, page_id: str) -> ListeningPage | None:
        with self._read() as conn:
            row = conn.execute(select(listening_pages).where(
                listening_pages.c.id == page_id)).mappings().first()
            return None if row is None else _listening_page(row)

    def listening_pages(self, annotator_id: str) -> list[ListeningPage]:
        with self._read() as conn:
            rows = conn.execute(select(listening_pages).where(
                listening_pages.c.annotator_id == annotator_id).order_by(
                listening_pages.c.position))
            return [_listening_page(row) for row in rows.mappings()]

    def record_listening_play(self, page_id: str, side: int, listened_s: float,
                              now: datetime) -> ListeningPlay:
        values = {"page_id": page_id, "side": side, "listened_s": listened_s,
                  "ended_at": _utc(now)}
        try:
            with self._write() as conn:
                stmt = (sqlite.insert(listening_plays) if conn.dialect.name == "sqlite"
                        else postgresql.insert(listening_plays)).values(values)
                longest = case((stmt.excluded.listened_s > listening_plays.c.listened_s,
                                stmt.excluded.listened_s), else_=listening_plays.c.listened_s)
                conn.execute(stmt.on_conflict_do_update(
                    index_elements=[listening_plays.c.page_id, listening_plays.c.side],
                    set_={"listened_s": longest}))
                row = conn.execute(select(listening_plays).where(
                    listening_plays.c.page_id == page_id,
                    listening_plays.c.side == side)).mappings().one()
                return _listening_play(row)
        except IntegrityError as e:
            raise _refusal(e, f"the play of side {side} of listening page {page_id}") from e

    def listening_plays(self, page_id: str) -> list[ListeningPlay]:
        with self._read() as conn:
            rows = conn.execute(select(listening_plays).where(
                listening_plays.c.page_id == page_id).order_by(listening_plays.c.side))
            return [_listening_play(row) for row in rows.mappings()]

    def record_listening_answer(self, answer: ListeningAnswer) -> None:
        try:
            with self._write() as conn:
                conn.execute(insert(listening_answers).values(
                    page_id=answer.page_id, annotator_id=answer.annotator_id,
                    preferred=answer.preferred, rating_a=answer.ratings[0],
                    rating_b=answer.ratings[1], answered_at=_utc(answer.answered_at),
                    listened_a_s=answer.listened_s[0], listened_b_s=answer.listened_s[1]))
        except IntegrityError as e:
            raise _refusal(e, f"the answer to listening page {answer.page_id}") from e

    def listening_answer(self, page_id: str) -> ListeningAnswer | None:
        with self._read() as conn:
            row = conn.execute(select(listening_answers).where(
                listening_answers.c.page_id == page_id)).mappings().first()
            return None if row is None else _listening_answer(row)

    def answered_comparisons(self) -> list[AnsweredComparison]:
        answer_columns = [c.label(f"answer_{c.name}") for c in listening_answers.columns]
        query = (select(listening_pages, *answer_columns)
                 .join(listening_answers, listening_answers.c.page_id == listening_pages.c.id)
                 .order_by(listening_answers.c.answered_at, listening_pages.c.annotator_id,
                           listening_pages.c.position))
        with self._read() as conn:
            found = []
            for row in conn.execute(query).mappings():
                answer = {c.name: row[f"answer_{c.name}"] for c in listening_answers.columns}
                found.append(AnsweredComparison(_listening_page(row), _listening_answer(answer)))
            return found

    def record_seam_rating(self, rating: SeamRating) -> None:
        try:
            with self._write() as conn:
                conn.execute(insert(seam_ratings).values(
                    mix_id=rating.mix_id, seam_index=rating.seam_index,
                    rater_id=rating.rater_id, rating=rating.rating,
                    rated_at=_utc(rating.rated_at)))
        except IntegrityError as e:
            raise _refusal(e, f"the rating of seam {rating.seam_index} of mix {rating.mix_id} "
                              f"by {rating.rater_id}") from e

    def seam_ratings(self) -> list[SeamRating]:
        with self._read() as conn:
            rows = conn.execute(select(seam_ratings).order_by(
                seam_ratings.c.rated_at, seam_ratings.c.mix_id, seam_ratings.c.seam_index,
                seam_ratings.c.rater_id))
            return [SeamRating(r["mix_id"], r["seam_index"], r["rating"], r["rater_id"],
                               r["rated_at"]) for r in rows.mappings()]


def _side_values(side: str, transition: Transition) -> dict[str, object]:
    return {f"{side}_condition": transition.condition.value,
            f"{side}_to_song": transition.to_song, f"{side}_entry_s": transition.entry_s,
            f"{side}_duration_s": transition.duration_s}


def _transition(row: Row, side: str) -> Transition:
    return Transition(Condition(row[f"{side}_condition"]), row["from_song"], row["exit_s"],
                      row[f"{side}_to_song"], row[f"{side}_entry_s"], row[f"{side}_duration_s"])


def _listening_page(row: Row) -> ListeningPage:
    return ListeningPage(row["id"], row["annotator_id"], row["position"],
                         (_transition(row, "a"), _transition(row, "b")), row["served_at"])


def _listening_play(row: Row) -> ListeningPlay:
    return ListeningPlay(row["page_id"], row["side"], row["listened_s"], row["ended_at"])


def _listening_answer(row: Mapping[Any, Any]) -> ListeningAnswer:
    return ListeningAnswer(row["page_id"], row["annotator_id"], row["preferred"],
                           (row["rating_a"], row["rating_b"]), row["answered_at"],
                           (row["listened_a_s"], row["listened_b_s"]))


def _upsert_play(conn: Connection, item_id: str, slot: int, listened_s: float,
                 now: datetime) -> sqlite.Insert | postgresql.Insert:
    """INSERT of a play that, on a replay, keeps the first end time and the longest listening."""
    values = {"item_id": item_id, "slot": slot, "listened_s": listened_s, "ended_at": now}
    stmt = (sqlite.insert(plays) if conn.dialect.name == "sqlite"
            else postgresql.insert(plays)).values(values)
    longest = case((stmt.excluded.listened_s > plays.c.listened_s, stmt.excluded.listened_s),
                   else_=plays.c.listened_s)
    return stmt.on_conflict_do_update(index_elements=[plays.c.item_id, plays.c.slot],
                                      set_={"listened_s": longest})


__all__ = ["MIGRATIONS", "SqlStore", "make_engine", "new_id", "upgrade"]
