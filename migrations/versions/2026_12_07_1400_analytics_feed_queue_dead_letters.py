"""AnalyticsService content insights: the feed queue counts each post's failed handlings and
dead-letters a post after the worker's bound (MAX_FAILURES in server/analytics/insight_worker.py),
so one post that always fails no longer holds up every post queued behind it.

The claim index becomes partial, on the live rows only, and carries post_id (the claim's
second order key), so a claim reads the oldest live rows in order without a sort.

Revision ID: 0015_feed_queue_dead_letters
Revises: 0014_analytics_snapshots_no_fk
Create Date: 2026-12-07 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_feed_queue_dead_letters"
down_revision = "0014_analytics_snapshots_no_fk"
branch_labels = None
depends_on = None

TABLE = "analytics_feed_queue"
OLD_INDEX = "ix_analytics_feed_queue_enqueued_at"
CLAIM_INDEX = "ix_analytics_feed_queue_claim"


def upgrade() -> None:
    op.add_column(TABLE, sa.Column("failures", sa.Integer(), nullable=False, server_default="0"))
    op.add_column(TABLE, sa.Column("last_error", sa.String(300), nullable=True))
    op.add_column(TABLE, sa.Column("dead_lettered_at", sa.DateTime(timezone=True), nullable=True))
    op.drop_index(OLD_INDEX, table_name=TABLE)
    op.create_index(
        CLAIM_INDEX,
        TABLE,
        ["enqueued_at", "post_id"],
        postgresql_where=sa.text("dead_lettered_at IS NULL"),
    )


def downgrade() -> None:
    # Dead letters become ordinary queued rows again: the older worker claims them (and is
    # blocked by them, as it was), but no queued post is lost.
    op.drop_index(CLAIM_INDEX, table_name=TABLE)
    op.create_index(OLD_INDEX, TABLE, ["enqueued_at"])
    op.drop_column(TABLE, "dead_lettered_at")
    op.drop_column(TABLE, "last_error")
    op.drop_column(TABLE, "failures")
