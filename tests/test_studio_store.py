"""The Studio's SQL store, against both backends: SQLite in a temporary folder and a real
PostgreSQL server (tests/postgres_server.py), one fresh database per test.

The PostgreSQL cases start a server, so they are marked slow (left out of `make test-fast`)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, inspect, select, table, text
from sqlalchemy.exc import IntegrityError

from segue.studio.model import Answer, Clip, Invite, Triplet, TripletKind
from segue.studio.schema import invites, metadata
from segue.studio.sql_store import MIGRATIONS, SqlStore, make_engine
from segue.studio.store import AlreadyExistsError, InviteRefusedError, Login, StoreError

pytest_plugins = ["postgres_server"]

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
TOKEN = "a" * 64
TABLES = {"invites", "annotators", "sessions", "logins", "items", "plays", "answers",
          "listening_pages", "listening_plays", "listening_answers", "seam_ratings"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'studio.db'}"
    database_url: str = request.getfixturevalue("postgres_database")
    return database_url


@pytest.fixture
def store(url: str) -> Iterator[SqlStore]:
    opened = SqlStore.open(url)
    yield opened
    opened.close()


def triplet(n: int = 0, **changes: Any) -> Triplet:
    clips = (Clip(f"song-{n}", 1.5, 8.0), Clip(f"song-{n + 1}", 20.25, 8.0),
             Clip(f"song-{n + 2}", 0.0, 7.5))
    return replace(Triplet(clips, TripletKind.RANDOM), **changes)


def invite(store: SqlStore, max_uses: int = 3, days: float = 7, token: str = TOKEN) -> Invite:
    return store.create_invite("pilot", token, T0 + timedelta(days=days), max_uses, T0)


def joined_session(store: SqlStore, token: str = TOKEN) -> tuple[str, str]:
    """(annotator id, session id) of a fresh join."""
    if store.invite(token) is None:
        invite(store, token=token)
    annotator, session = store.join(token, 10, T0)
    return annotator.id, session.id


def count(url: str, table_name: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            query = select(func.count()).select_from(table(table_name))
            return int(conn.execute(query).scalar_one())
    finally:
        engine.dispose()


# ---- migrations ------------------------------------------------------------------------------
def test_migrations_create_the_schema_from_empty_and_match_the_tables(url: str) -> None:
    SqlStore.open(url).close()
    engine = make_engine(url)
    try:
        assert TABLES | {"alembic_version"} == set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    finally:
        engine.dispose()
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert version == head == "0002"


def test_opening_again_is_a_no_op_that_keeps_the_records(url: str) -> None:
    first = SqlStore.open(url)
    made = invite(first)
    first.close()
    second = SqlStore.open(url)
    try:
        assert second.invites() == [made]
    finally:
        second.close()
    assert count(url, "alembic_version") == 1


# ---- invites and joining ---------------------------------------------------------------------
def test_join_uses_the_invite_once_and_makes_an_annotator_with_one_session(
        store: SqlStore) -> None:
    made = invite(store, max_uses=2)
    now = T0 + timedelta(hours=1)
    annotator, session = store.join(TOKEN, 12, now)
    assert store.invite(TOKEN) == Invite(made.id, "pilot", T0, made.expires_at, 2, 1)
    assert (annotator.invite_id, annotator.consented_at) == (made.id, now)
    assert store.annotators() == [annotator]
    assert (session.annotator_id, session.length, session.created_at) == (annotator.id, 12, now)
    assert session.finished_at is None
    assert store.session(session.id) == session
    assert store.sessions_of(annotator.id) == [session]
    assert len({annotator.id, session.id, made.id}) == 3
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in (annotator.id, session.id, made.id))


@pytest.mark.parametrize(("token", "max_uses", "days", "reason"), [
    ("b" * 64, 3, 7, "unknown"),
    (TOKEN, 3, -1, "expired"),
    (TOKEN, 0, 7, "used up"),
])
def test_join_refuses_with_the_reason_and_stores_nothing(
        store: SqlStore, url: str, token: str, max_uses: int, days: float, reason: str) -> None:
    invite(store, max_uses=max_uses, days=days)
    with pytest.raises(InviteRefusedError) as refused:
        store.join(token, 10, T0)
    assert refused.value.reason == reason
    assert [i.uses for i in store.invites()] == [0]
    assert store.annotators() == []
    assert count(url, "sessions") == 0


def test_an_invite_expires_at_its_expiry_time_and_is_used_up_after_max_uses(
        store: SqlStore) -> None:
    made = invite(store, max_uses=1)
    with pytest.raises(InviteRefusedError, match="expired"):
        store.join(TOKEN, 10, made.expires_at)
    store.join(TOKEN, 10, made.expires_at - timedelta(microseconds=1))
    with pytest.raises(InviteRefusedError, match="used up"):
        store.join(TOKEN, 10, T0)


def test_a_second_invite_with_the_same_token_already_exists(store: SqlStore) -> None:
    invite(store)
    with pytest.raises(AlreadyExistsError):
        invite(store)
    assert len(store.invites()) == 1


def test_concurrent_joins_never_use_an_invite_more_than_max_uses(store: SqlStore) -> None:
    max_uses, tries = 4, 12
    invite(store, max_uses=max_uses)
    start = threading.Barrier(tries)
    joined: list[str] = []
    refused: list[str] = []
    failed: list[BaseException] = []

    def one() -> None:
        start.wait()
        try:
            joined.append(store.join(TOKEN, 10, T0)[0].id)
        except InviteRefusedError as e:
            refused.append(e.reason)
        except BaseException as e:  # reported below
            failed.append(e)

    threads = [threading.Thread(target=one) for _ in range(tries)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failed == []
    assert len(joined) == max_uses
    assert refused == ["used up"] * (tries - max_uses)
    stored = store.invite(TOKEN)
    assert stored is not None and stored.uses == max_uses
    assert sorted(a.id for a in store.annotators()) == sorted(joined)


# ---- logins ----------------------------------------------------------------------------------
def test_a_login_comes_back_until_it_expires_or_is_deleted(store: SqlStore) -> None:
    login = Login("annotator", "someone", "csrf-1", T0 + timedelta(hours=2))
    store.create_login("c" * 64, login)
    store.create_login("d" * 64, Login("admin", "admin", "csrf-2", T0 + timedelta(hours=2)))
    assert store.login("c" * 64, T0) == login
    assert store.login("c" * 64, login.expires_at) is None
    assert store.login("e" * 64, T0) is None
    store.delete_login("c" * 64)
    store.delete_login("c" * 64)
    assert store.login("c" * 64, T0) is None
    assert store.login("d" * 64, T0) == Login("admin", "admin", "csrf-2", login.expires_at)


def test_a_taken_login_cookie_already_exists(store: SqlStore) -> None:
    login = Login("admin", "admin", "csrf", T0 + timedelta(hours=1))
    store.create_login("c" * 64, login)
    with pytest.raises(AlreadyExistsError):
        store.create_login("c" * 64, Login("annotator", "x", "other", login.expires_at))
    assert store.login("c" * 64, T0) == login


# ---- sessions and items ----------------------------------------------------------------------
def test_items_come_back_by_position_with_their_whole_triplet(store: SqlStore) -> None:
    _, session_id = joined_session(store)
    gold = triplet(3, kind=TripletKind.GOLD, expected_odd=2, model_odd=1, model_margin=0.125)
    made = [store.add_item(session_id, 2, gold, T0 + timedelta(seconds=2)),
            store.add_item(session_id, 0, triplet(), T0),
            store.add_item(session_id, 1, triplet(5, kind=TripletKind.ACTIVE, model_odd=0,
                                                  model_margin=-0.5), T0 + timedelta(seconds=1))]
    repeat = store.add_item(session_id, 3, triplet(kind=TripletKind.REPEAT,
                                                   repeat_of=made[1].id), T0)
    assert store.items(session_id) == [made[1], made[2], made[0], repeat]
    assert store.item(made[0].id) == made[0]
    assert made[0].triplet == gold and made[0].position == 2
    assert store.item("0" * 32) is None
    assert store.items("0" * 32) == []


def test_a_second_item_at_a_position_already_exists_and_changes_nothing(
        store: SqlStore, url: str) -> None:
    _, session_id = joined_session(store)
    first = store.add_item(session_id, 0, triplet(), T0)
    with pytest.raises(AlreadyExistsError):
        store.add_item(session_id, 0, triplet(7), T0 + timedelta(seconds=5))
    assert store.items(session_id) == [first]
    assert count(url, "items") == 1


def test_an_item_of_an_unknown_session_is_refused_but_not_as_a_duplicate(
        store: SqlStore) -> None:
    with pytest.raises(StoreError) as refused:
        store.add_item("0" * 32, 0, triplet(), T0)
    assert not isinstance(refused.value, AlreadyExistsError)


def test_finishing_a_session_keeps_the_first_finish_time(store: SqlStore) -> None:
    _, session_id = joined_session(store)
    store.finish_session(session_id, T0 + timedelta(minutes=30))
    store.finish_session(session_id, T0 + timedelta(minutes=45))
    session = store.session(session_id)
    assert session is not None and session.finished_at == T0 + timedelta(minutes=30)
    assert store.session("0" * 32) is None


# ---- plays and answers -----------------------------------------------------------------------
def test_a_replay_keeps_the_first_end_time_and_the_longest_listening(store: SqlStore) -> None:
    _, session_id = joined_session(store)
    item = store.add_item(session_id, 0, triplet(), T0)
    t1, t2, t3 = (T0 + timedelta(seconds=s) for s in (10, 20, 30))
    first = store.record_play(item.id, 1, 9.5, t1)
    assert (first.item_id, first.slot, first.listened_s, first.ended_at) == (item.id, 1, 9.5, t1)
    assert store.record_play(item.id, 1, 8.0, t2).listened_s == 9.5
    longer = store.record_play(item.id, 1, 12.0, t3)
    assert (longer.listened_s, longer.ended_at) == (12.0, t1)
    store.record_play(item.id, 0, 8.0, t2)
    assert [(p.slot, p.listened_s, p.ended_at) for p in store.plays(item.id)] == [
        (0, 8.0, t2), (1, 12.0, t1)]


def test_a_second_answer_already_exists_and_only_the_first_is_kept(
        store: SqlStore, url: str) -> None:
    annotator_id, session_id = joined_session(store)
    item = store.add_item(session_id, 0, triplet(), T0)
    first = Answer(item.id, session_id, annotator_id, 2, T0 + timedelta(seconds=40),
                   (8.0, 8.5, 7.5))
    store.record_answer(first)
    with pytest.raises(AlreadyExistsError):
        store.record_answer(Answer(item.id, session_id, annotator_id, 0,
                                   T0 + timedelta(seconds=41), (8.0, 8.5, 7.5)))
    assert store.answer(item.id) == first
    assert store.answer("0" * 32) is None
    assert count(url, "answers") == 1


def test_answered_joins_each_answer_with_its_triplet_oldest_first(store: SqlStore) -> None:
    alice, alice_session = joined_session(store)
    bob, bob_session = joined_session(store)
    gold = triplet(4, kind=TripletKind.GOLD, expected_odd=0)
    a0 = store.add_item(alice_session, 0, triplet(), T0)
    a1 = store.add_item(alice_session, 1, gold, T0 + timedelta(minutes=1))
    b0 = store.add_item(bob_session, 0, triplet(9), T0)
    store.add_item(bob_session, 1, triplet(11), T0)  # served, never answered
    late, early, middle = (T0 + timedelta(minutes=m) for m in (9, 2, 5))
    store.record_answer(Answer(a1.id, alice_session, alice, 0, late, (8.0, 8.0, 7.5)))
    store.record_answer(Answer(a0.id, alice_session, alice, 1, early, (8.0, 8.1, 7.6)))
    store.record_answer(Answer(b0.id, bob_session, bob, 2, middle, (9.0, 8.2, 7.7)))
    rows = store.answered()
    assert [(r.item_id, r.annotator_id, r.session_id, r.position, r.pick) for r in rows] == [
        (a0.id, alice, alice_session, 0, 1), (b0.id, bob, bob_session, 0, 2),
        (a1.id, alice, alice_session, 1, 0)]
    assert [r.triplet for r in rows] == [a0.triplet, b0.triplet, gold]
    assert [r.listened_s for r in rows] == [(8.0, 8.1, 7.6), (9.0, 8.2, 7.7), (8.0, 8.0, 7.5)]
    assert [(r.served_at, r.answered_at) for r in rows] == [
        (T0, early), (T0, middle), (a1.served_at, late)]


# ---- times -----------------------------------------------------------------------------------
def test_times_come_back_timezone_aware_in_utc(store: SqlStore) -> None:
    paris = timezone(timedelta(hours=2))
    local = datetime(2026, 6, 1, 14, 30, 0, 250000, tzinfo=paris)
    store.create_invite("tz", TOKEN, local + timedelta(days=1), 5, local)
    annotator, session = store.join(TOKEN, 3, local)
    item = store.add_item(session.id, 0, triplet(), local)
    store.record_play(item.id, 0, 8.0, local)
    store.record_answer(Answer(item.id, session.id, annotator.id, 1, local, (8.0, 8.0, 8.0)))
    store.finish_session(session.id, local)
    stored_session = store.session(session.id)
    answered = store.answered()[0]
    made = store.invites()[0]
    moments = [made.created_at, made.expires_at, store.annotators()[0].consented_at,
               store.items(session.id)[0].served_at, store.plays(item.id)[0].ended_at,
               answered.served_at, answered.answered_at,
               stored_session.created_at if stored_session else None,
               stored_session.finished_at if stored_session else None]
    for moment in moments:
        assert moment is not None and moment.tzinfo is UTC
    assert made.created_at == local and made.created_at.hour == 12
    assert answered.answered_at == local


def test_naive_times_are_refused(store: SqlStore) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        store.create_invite("naive", TOKEN, datetime(2030, 1, 1), 1, T0)
    assert store.invites() == []


def test_a_stored_count_of_uses_never_exceeds_max_uses(store: SqlStore, url: str) -> None:
    """The database itself refuses an invite used more than `max_uses` times."""
    made = invite(store, max_uses=1)
    engine = make_engine(url)
    try:
        with pytest.raises(IntegrityError, match=r"(?i)check"), engine.begin() as conn:
            conn.execute(invites.update().where(invites.c.id == made.id).values(uses=2))
    finally:
        engine.dispose()
    assert [i.uses for i in store.invites()] == [0]
