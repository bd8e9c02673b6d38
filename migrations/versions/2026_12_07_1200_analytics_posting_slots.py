"""AnalyticsService: a rollup per profile, platform, ISO weekday and hour of publication (UTC)
of the posts and the sum of their latest engagement, kept at ingestion like analytics_daily, so
best hours and best weekdays read at most 168 rows per platform instead of every post of the
interval (bench/analytics_reports.py: a profile with 5,000 posts).

Filled from analytics_posts (each post's latest engagement) in the migration's transaction,
which blocks ingestion while it runs (about a second for 300,000 posts).

Revision ID: 0013_analytics_posting_slots
Revises: 0012_analytics_report_indexes
Create Date: 2026-12-07 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_analytics_posting_slots"
down_revision = "0012_analytics_report_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "analytics_posting_slots",
        sa.Column("profile_id", sa.BigInteger(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("weekday", sa.SmallInteger(), nullable=False),
        sa.Column("hour", sa.SmallInteger(), nullable=False),
        sa.Column("posts", sa.BigInteger(), nullable=False),
        sa.Column("engagement", sa.BigInteger(), nullable=False),
        # The metadata's naming convention makes these ck_<table>_<name>_non_negative.
        sa.CheckConstraint("posts >= 0", name="posts_non_negative"),
        sa.CheckConstraint("engagement >= 0", name="engagement_non_negative"),
        sa.ForeignKeyConstraint(
            ["profile_id"],
            ["profiles.id"],
            name="fk_analytics_posting_slots_profile_id_profiles",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "profile_id", "platform", "weekday", "hour", name="pk_analytics_posting_slots"
        ),
    )
    op.execute(
        """
        INSERT INTO analytics_posting_slots
            (profile_id, platform, weekday, hour, posts, engagement)
        SELECT profile_id, platform,
               date_part('isodow', publish_time AT TIME ZONE 'UTC')::smallint,
               date_part('hour', publish_time AT TIME ZONE 'UTC')::smallint,
               count(*), sum(engagement)
        FROM analytics_posts
        GROUP BY 1, 2, 3, 4
        """
    )


def downgrade() -> None:
    op.drop_table("analytics_posting_slots")
