"""The Studio's first schema: invites, annotators, sessions, logins, items, plays, answers.

Revision ID: 0001
Revises:
Created: 2026-01-01

Written out in full (not built from `segue.studio.schema`), so that later changes to the
tables need a new revision; tests check that head matches the tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(32)
SHA256 = sa.String(64)


def _time(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _clip(slot: int) -> list[sa.Column[Any]]:
    return [sa.Column(f"clip{slot}_song", sa.Text(), nullable=False),
            sa.Column(f"clip{slot}_start_s", sa.Float(), nullable=False),
            sa.Column(f"clip{slot}_duration_s", sa.Float(), nullable=False)]


def _people() -> None:
    op.create_table(
        "invites",
        sa.Column("id", ID, nullable=False),
        sa.Column("token_sha256", SHA256, nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        _time("created_at"),
        _time("expires_at"),
        sa.Column("max_uses", sa.Integer(), nullable=False),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_invites"),
        sa.UniqueConstraint("token_sha256", name="uq_invites_token_sha256"),
        sa.CheckConstraint("uses >= 0 AND uses <= max_uses", name="ck_invites_uses"),
    )
    op.create_table(
        "annotators",
        sa.Column("id", ID, nullable=False),
        sa.Column("invite_id", ID, nullable=False),
        _time("consented_at"),
        sa.PrimaryKeyConstraint("id", name="pk_annotators"),
        sa.ForeignKeyConstraint(["invite_id"], ["invites.id"],
                                name="fk_annotators_invite_id_invites"),
    )
    op.create_table(
        "logins",
        sa.Column("cookie_sha256", SHA256, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subject_id", ID, nullable=False),
        sa.Column("csrf_token", sa.Text(), nullable=False),
        _time("expires_at"),
        sa.PrimaryKeyConstraint("cookie_sha256", name="pk_logins"),
    )


def _sessions_and_items() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", ID, nullable=False),
        sa.Column("annotator_id", ID, nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        _time("created_at"),
        _time("finished_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
        sa.ForeignKeyConstraint(["annotator_id"], ["annotators.id"],
                                name="fk_sessions_annotator_id_annotators"),
    )
    op.create_index("ix_sessions_annotator_id", "sessions", ["annotator_id"])
    op.create_table(
        "items",
        sa.Column("id", ID, nullable=False),
        sa.Column("session_id", ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        _time("served_at"),
        sa.Column("kind", sa.String(16), nullable=False),
        *_clip(0), *_clip(1), *_clip(2),
        sa.Column("expected_odd", sa.Integer(), nullable=True),
        sa.Column("repeat_of", ID, nullable=True),
        sa.Column("model_odd", sa.Integer(), nullable=True),
        sa.Column("model_margin", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_items"),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"],
                                name="fk_items_session_id_sessions"),
        sa.UniqueConstraint("session_id", "position", name="uq_items_session_id_position"),
    )


def _plays_and_answers() -> None:
    op.create_table(
        "plays",
        sa.Column("item_id", ID, nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("listened_s", sa.Float(), nullable=False),
        _time("ended_at"),
        sa.PrimaryKeyConstraint("item_id", "slot", name="pk_plays"),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name="fk_plays_item_id_items"),
        sa.CheckConstraint("slot >= 0 AND slot <= 2", name="ck_plays_slot"),
    )
    op.create_table(
        "answers",
        sa.Column("item_id", ID, nullable=False),
        sa.Column("session_id", ID, nullable=False),
        sa.Column("annotator_id", ID, nullable=False),
        sa.Column("pick", sa.Integer(), nullable=False),
        _time("answered_at"),
        sa.Column("listened0_s", sa.Float(), nullable=False),
        sa.Column("listened1_s", sa.Float(), nullable=False),
        sa.Column("listened2_s", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("item_id", name="pk_answers"),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name="fk_answers_item_id_items"),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"],
                                name="fk_answers_session_id_sessions"),
        sa.ForeignKeyConstraint(["annotator_id"], ["annotators.id"],
                                name="fk_answers_annotator_id_annotators"),
        sa.CheckConstraint("pick >= 0 AND pick <= 2", name="ck_answers_pick"),
    )
    op.create_index("ix_answers_answered_at", "answers", ["answered_at"])


def upgrade() -> None:
    _people()
    _sessions_and_items()
    _plays_and_answers()


def downgrade() -> None:
    op.drop_table("answers")
    op.drop_table("plays")
    op.drop_table("items")
    op.drop_table("sessions")
    op.drop_table("logins")
    op.drop_table("annotators")
    op.drop_table("invites")
