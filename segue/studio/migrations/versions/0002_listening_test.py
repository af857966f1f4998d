"""The blind transition listening test: listening pages, their plays and answers, and ratings
of the seams of continuous mixes.

Revision ID: 0002
Revises: 0001
Created: 2026-02-01

Written out in full (not built from `segue.studio.schema`), like 0001.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(32)


def _time(name: str) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def _side(side: str) -> list[sa.Column[Any]]:
    return [sa.Column(f"{side}_condition", sa.String(16), nullable=False),
            sa.Column(f"{side}_to_song", sa.Text(), nullable=False),
            sa.Column(f"{side}_entry_s", sa.Float(), nullable=False),
            sa.Column(f"{side}_duration_s", sa.Float(), nullable=False)]


def upgrade() -> None:
    op.create_table(
        "listening_pages",
        sa.Column("id", ID, nullable=False),
        sa.Column("annotator_id", ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        _time("served_at"),
        sa.Column("from_song", sa.Text(), nullable=False),
        sa.Column("exit_s", sa.Float(), nullable=False),
        *_side("a"), *_side("b"),
        sa.PrimaryKeyConstraint("id", name="pk_listening_pages"),
        sa.ForeignKeyConstraint(["annotator_id"], ["annotators.id"],
                                name="fk_listening_pages_annotator_id_annotators"),
        sa.UniqueConstraint("annotator_id", "position",
                            name="uq_listening_pages_annotator_id_position"),
    )
    op.create_table(
        "listening_plays",
        sa.Column("page_id", ID, nullable=False),
        sa.Column("side", sa.Integer(), nullable=False),
        sa.Column("listened_s", sa.Float(), nullable=False),
        _time("ended_at"),
        sa.PrimaryKeyConstraint("page_id", "side", name="pk_listening_plays"),
        sa.ForeignKeyConstraint(["page_id"], ["listening_pages.id"],
                                name="fk_listening_plays_page_id_listening_pages"),
        sa.CheckConstraint("side >= 0 AND side <= 1", name="ck_listening_plays_side"),
    )
    op.create_table(
        "listening_answers",
        sa.Column("page_id", ID, nullable=False),
        sa.Column("annotator_id", ID, nullable=False),
        sa.Column("preferred", sa.Integer(), nullable=False),
        sa.Column("rating_a", sa.Integer(), nullable=False),
        sa.Column("rating_b", sa.Integer(), nullable=False),
        _time("answered_at"),
        sa.Column("listened_a_s", sa.Float(), nullable=False),
        sa.Column("listened_b_s", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("page_id", name="pk_listening_answers"),
        sa.ForeignKeyConstraint(["page_id"], ["listening_pages.id"],
                                name="fk_listening_answers_page_id_listening_pages"),
        sa.ForeignKeyConstraint(["annotator_id"], ["annotators.id"],
                                name="fk_listening_answers_annotator_id_annotators"),
        sa.CheckConstraint("preferred >= 0 AND preferred <= 1",
                           name="ck_listening_answers_preferred"),
        sa.CheckConstraint("rating_a >= 1 AND rating_a <= 5", name="ck_listening_answers_rating_a"),
        sa.CheckConstraint("rating_b >= 1 AND rating_b <= 5", name="ck_listening_answers_rating_b"),
    )
    op.create_table(
        "seam_ratings",
        sa.Column("mix_id", sa.String(128), nullable=False),
        sa.Column("seam_index", sa.Integer(), nullable=False),
        sa.Column("rater_id", ID, nullable=False),
        sa.Column("rating", sa.Integer(), nullable=False),
        _time("rated_at"),
        sa.PrimaryKeyConstraint("mix_id", "seam_index", "rater_id", name="pk_seam_ratings"),
        sa.CheckConstraint("seam_index >= 0", name="ck_seam_ratings_seam_index"),
        sa.CheckConstraint("rating >= 1 AND rating <= 5", name="ck_seam_ratings_rating"),
    )


def downgrade() -> None:
    op.drop_table("seam_ratings")
    op.drop_table("listening_answers")
    op.drop_table("listening_plays")
    op.drop_table("listening_pages")
